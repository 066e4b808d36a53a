//! The man page and shell completions, generated from the clap definition itself so they
//! never drift from the command line. The package build calls `oqs-edge cli-docs DIR`.

use std::path::Path;

use clap_complete::Shell;

/// What the package installs, by file name: `oqs-edge.8` and `oqs-edge-COMMAND.8`,
/// `oqs-edge.bash`, `_oqs-edge` (zsh), `oqs-edge.fish`.
pub fn write(command: clap::Command, dir: &Path) -> Result<(), String> {
    let io = |what: &str, e: std::io::Error| format!("{what} in {}: {e}", dir.display());
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create the directory", e))?;

    // One page per command, as git does: oqs-edge(8) lists them, oqs-edge-check(8) … hold
    // their options. The top page also says what clap does not know (files, exit codes).
    let mut built = command.clone().disable_help_subcommand(true);
    built.build();
    let mut pages = vec![(built.clone(), EXTRA)];
    pages.extend(
        built
            .get_subcommands()
            .filter(|s| !s.is_hide_set())
            .map(|s| (s.clone(), "")),
    );
    for (command, extra) in pages {
        let man = clap_mangen::Man::new(command)
            .section("8")
            .manual("System Administration")
            .source(concat!("oqs-edge ", env!("CARGO_PKG_VERSION")));
        let name = man.get_filename();
        let mut page = Vec::new();
        man.render(&mut page)
            .map_err(|e| io(&format!("cannot render {name}"), e))?;
        page.extend_from_slice(extra.as_bytes());
        std::fs::write(dir.join(&name), page)
            .map_err(|e| io(&format!("cannot write {name}"), e))?;
    }

    // clap_complete would offer the hidden commands too: complete only what --help shows.
    let shown = clap::Command::new("oqs-edge").version(env!("OQS_EDGE_VERSION"));
    let shown = command
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .fold(shown, |c, s| c.subcommand(s.clone()));
    for (shell, name) in [
        (Shell::Bash, "oqs-edge.bash"),
        (Shell::Zsh, "_oqs-edge"),
        (Shell::Fish, "oqs-edge.fish"),
    ] {
        let mut command = shown.clone();
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut command, "oqs-edge", &mut out);
        std::fs::write(dir.join(name), out).map_err(|e| io(&format!("cannot write {name}"), e))?;
    }
    Ok(())
}

/// What clap does not know: files, the units, exit codes, where to read more.
const EXTRA: &str = r#".SH FILES
.TP
\fI/etc/oqs-edge/config.yaml\fR
The config. \fBoqs-edge check\fR says what to fill in or fix.
.TP
\fI/var/lib/oqs-edge/ruleset.nft\fR
The last applied firewall, loaded at boot by \fBoqs-edge-early.service\fR.
.TP
\fI/run/oqs-edge/control.sock\fR
The control socket behind \fBstatus\fR and \fBreload\fR (members of the \fBoqs-edge\fR group may use it).
.SH EXIT STATUS
0 success; 1 the daemon could not apply, or \fBstatus\fR is degraded; 2 the config is invalid; 3 the daemon is not running.
.SH SEE ALSO
\fBsystemctl\fR(1), \fBjournalctl\fR(1) (\fBjournalctl \-u oqs-edge OQS_EVENT=tunnel\-state\fR), \fBnft\fR(8),
/usr/share/doc/oqs-edge/README.md
"#;
