//! Problems found in a config file, and how they are shown: `FILE:LINE:COL: message`, the line,
//! a caret under the place at fault, and a fix when there is one.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;
use unicode_width::{UnicodeWidthChar as _, UnicodeWidthStr as _};

use super::scalar::Loc;
pub use crate::severity::Severity;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Where the key or value at fault is; `None` when the problem is the file as a whole.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub loc: Option<Loc>,
    /// The config key at fault, e.g. `segments[1].address`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub message: String,
    /// What to do about it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            loc: (loc != Loc::default()).then_some(loc),
            key: None,
            message: message.into(),
            hint: None,
        }
    }
    pub fn warning(loc: Loc, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(loc, message)
        }
    }
    pub fn key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Everything `check` found in one file.
#[derive(Debug, Serialize)]
pub struct Report {
    pub file: String,
    pub valid: bool,
    pub errors: usize,
    pub warnings: usize,
    pub diagnostics: Vec<Diagnostic>,
}

impl Report {
    pub fn new(file: &Path, mut diagnostics: Vec<Diagnostic>) -> Self {
        diagnostics.sort_by_key(|d| (d.loc.unwrap_or_default(), d.severity));
        diagnostics.dedup();
        let errors = diagnostics.iter().filter(|d| d.is_error()).count();
        Report {
            file: file.display().to_string(),
            valid: errors == 0,
            errors,
            warnings: diagnostics.len() - errors,
            diagnostics,
        }
    }

    /// The report as an operator reads it in a terminal.
    pub fn render(&self, source: &str) -> String {
        let lines: Vec<&str> = source.lines().collect();
        let mut out = String::new();
        for d in &self.diagnostics {
            let label = match d.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            let key = d
                .key
                .as_deref()
                .map(|k| format!(" [{k}]"))
                .unwrap_or_default();
            match d.loc {
                Some(loc) => {
                    let _ = writeln!(
                        out,
                        "{}:{}:{}: {label}: {}{key}",
                        self.file, loc.line, loc.column, d.message
                    );
                    if let Some(text) = lines.get(loc.line as usize - 1) {
                        render_snippet(&mut out, loc, text);
                    }
                }
                None => {
                    let _ = writeln!(out, "{}: {label}: {}{key}", self.file, d.message);
                }
            }
            if let Some(hint) = &d.hint {
                let _ = writeln!(out, "      = fix: {hint}");
            }
        }
        let _ = match (self.errors, self.warnings) {
            (0, 0) => writeln!(out, "{}: OK", self.file),
            (0, w) => writeln!(out, "{}: OK with {w} warning{}", self.file, plural(w)),
            (e, w) => writeln!(
                out,
                "{}: {e} error{} and {w} warning{}; nothing was changed",
                self.file,
                plural(e),
                plural(w)
            ),
        };
        out
    }
}

fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The line, then a caret run under the token that starts at the column.
fn render_snippet(out: &mut String, loc: Loc, text: &str) {
    let number = loc.line.to_string();
    let gutter = " ".repeat(number.len());
    let start = loc.column.saturating_sub(1) as usize;
    let token: String = text
        .chars()
        .skip(start)
        .take_while(|c| !c.is_whitespace() && !matches!(c, ',' | ']' | '}' | '#'))
        .collect();
    // Columns as a terminal shows them: a Japanese character takes two.
    let width = token.trim_end_matches(':').width().max(1);
    // Keep tabs as tabs so the caret lines up under them.
    let pad: String = text
        .chars()
        .take(start)
        .map(|c| match c {
            '\t' => "\t".to_owned(),
            c => " ".repeat(c.width().unwrap_or(0)),
        })
        .collect();
    let _ = writeln!(out, " {number} | {text}");
    let _ = writeln!(out, " {gutter} | {pad}{}", "^".repeat(width));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_spans_wide_characters() {
        let report = Report::new(
            Path::new("c.yaml"),
            vec![Diagnostic::error(Loc { line: 1, column: 8 }, "bad")],
        );
        // 薬局 (the 8th character) is four terminal columns wide, and so is the caret under
        // it; 名前 before it pads as four columns.
        let text = report.render("名前: x  薬局\n");
        let caret = format!("   | {}^^^^\n", " ".repeat(9));
        assert!(
            text.contains(&format!(" 1 | 名前: x  薬局\n{caret}")),
            "{text}"
        );
    }

    #[test]
    fn caret_underlines_the_token() {
        let report = Report::new(
            Path::new("c.yaml"),
            vec![Diagnostic::error(
                Loc {
                    line: 2,
                    column: 14,
                },
                "bad",
            )
            .hint("fix it")],
        );
        let text = report.render("a: 1\n    address: 10.0.0.300/24  # x\n");
        assert_eq!(
            text,
            "c.yaml:2:14: error: bad\n 2 |     address: 10.0.0.300/24  # x\n   |              ^^^^^^^^^^^^^\n      = fix: fix it\nc.yaml: 1 error and 0 warnings; nothing was changed\n"
        );
    }
}
