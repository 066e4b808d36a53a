//! YAML text → [`model::Config`], reporting as many problems as one reading can find.
//!
//! serde-saphyr stops at the first structural error. Bad scalars never stop it (see
//! [`super::scalar`]); an unknown key does, so the loader repairs the text the way a compiler
//! recovers — a misspelt key is read as its nearest known key, any other unknown key is skipped —
//! and reads again. Every repair is reported as an error, so a repaired file is never valid.

use std::collections::HashSet;

use serde_saphyr::{DuplicateKeyPolicy, Options};

use super::diagnostic::Diagnostic;
use super::model;
use super::scalar::{self, closest, Loc};
use super::validate;

/// More repairs than this and the file is too far from a config to be worth reading on.
const MAX_REPAIRS: usize = 32;

/// What one reading found.
pub struct Parsed {
    /// The config, when the file could be read as one (perhaps after repairs).
    pub config: Option<model::Config>,
    /// Every problem found while reading.
    pub found: Vec<Diagnostic>,
    /// Where values failed to parse: placeholders stand there.
    pub unparsed: HashSet<Loc>,
    /// The keys renamed by repairs: locations found in the repaired text are mapped back to
    /// the operator's text with [`Parsed::original`].
    pub renamed: Vec<Renamed>,
}

/// A key the loader renamed to read on (`adress` → `address`).
#[derive(Clone, Copy, Debug)]
pub struct Renamed {
    line: u32,
    column: u32,
    /// Length in characters of the key as written, and as repaired.
    written: u32,
    repaired: u32,
}

impl Parsed {
    /// Where a location in the repaired text is in the text as written: on a line whose key
    /// was renamed, what follows the key moves by the difference in length.
    pub fn original(&self, loc: Loc) -> Loc {
        self.renamed
            .iter()
            .filter(|r| r.line == loc.line && loc.column > r.column)
            .fold(loc, |loc, r| {
                let column = if loc.column >= r.column + r.repaired {
                    loc.column - r.repaired + r.written
                } else {
                    // Inside the key: its start.
                    r.column
                };
                Loc { column, ..loc }
            })
    }
}

/// Read the config, reporting as many problems as one reading can find.
pub fn parse(source: &str) -> Parsed {
    let mut text = source.to_owned();
    let mut found: Vec<Diagnostic> = Vec::new();
    let mut repaired_lines: Vec<u32> = Vec::new();
    let mut unparsed = HashSet::new();
    let mut renamed = Vec::new();
    loop {
        let result = read(&text);
        for problem in scalar::take_problems() {
            unparsed.insert(problem.loc);
            let d = if problem.placeholder {
                validate::fill_in(&text, problem.loc, &problem.message)
            } else {
                Diagnostic {
                    hint: problem.hint,
                    ..Diagnostic::error(problem.loc, problem.message)
                }
            };
            if !found.contains(&d) {
                found.push(d);
            }
        }
        let error = match result {
            Ok(config) => {
                return Parsed {
                    config: Some(config),
                    found,
                    unparsed,
                    renamed,
                }
            }
            Err(error) => error,
        };
        let loc = error.location().map(Loc::from_saphyr).unwrap_or_default();
        if repaired_lines.contains(&loc.line) {
            // A consequence of our own repair (e.g. the key it restored is now a duplicate):
            // what we reported for this line already says what to fix.
            return Parsed {
                config: None,
                found,
                unparsed,
                renamed,
            };
        }
        let message = strip_position(&error.without_snippet().to_string());
        match unknown_key(&message) {
            Some((key, expected)) if repaired_lines.len() < MAX_REPAIRS => {
                let suggestion = closest(&key, expected.iter().map(String::as_str));
                let mut d = Diagnostic::error(loc, format!("unknown key `{key}`"));
                d.hint = Some(match suggestion {
                    Some(near) => format!("did you mean `{near}`?"),
                    None => format!("keys allowed here: {}", expected.join(", ")),
                });
                found.push(d);
                let repaired = match suggestion {
                    Some(near) => rename_key(&text, loc, &key, near),
                    None => blank_block(&text, loc),
                };
                match repaired {
                    Some(repaired) => {
                        text = repaired;
                        repaired_lines.push(loc.line);
                        if let Some(near) = suggestion {
                            renamed.push(Renamed {
                                line: loc.line,
                                column: loc.column,
                                written: key.chars().count() as u32,
                                repaired: near.chars().count() as u32,
                            });
                        }
                    }
                    None => {
                        return Parsed {
                            config: None,
                            found,
                            unparsed,
                            renamed,
                        }
                    }
                }
            }
            _ => {
                found.push(explain(&text, loc, &message));
                return Parsed {
                    config: None,
                    found,
                    unparsed,
                    renamed,
                };
            }
        }
    }
}

fn read(text: &str) -> Result<model::Config, serde_saphyr::Error> {
    let mut options = Options::default();
    options.duplicate_keys = DuplicateKeyPolicy::Error;
    serde_saphyr::from_str_with_options(text, options)
}

/// serde-saphyr appends " at line N, column M"; the location is reported separately.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => message[..at].to_owned(),
        _ => message.to_owned(),
    }
}

/// `unknown field `x`, expected one of a, b` → ("x", [a, b]).
fn unknown_key(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (key, rest) = rest.split_once('`')?;
    let expected = rest
        .trim_start_matches(", ")
        .trim_start_matches("expected one of ")
        .trim_start_matches("expected ")
        .trim_start_matches("there are no fields");
    let expected = expected
        .split([',', ' '])
        .map(|w| w.trim_matches('`'))
        .filter(|w| !w.is_empty() && *w != "or")
        .map(str::to_owned)
        .collect();
    Some((key.to_owned(), expected))
}

/// A structural error, reworded where serde's words are not an operator's.
fn explain(text: &str, loc: Loc, message: &str) -> Diagnostic {
    if message.contains("found a tab") || message.contains("tabs disallowed") {
        return Diagnostic::error(
            first_tab_from(text, loc).unwrap_or(loc),
            "a tab in the indentation",
        )
        .hint("indent with spaces; YAML does not allow tabs for indentation");
    }
    let blank = text
        .lines()
        .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'));
    if blank {
        return Diagnostic::error(Loc::default(), "the config file is empty")
            .hint("start from an example in config/ (e.g. config/lab.yaml); a config begins with `version: 1`");
    }
    if message.starts_with("expected string scalar") {
        return Diagnostic::error(loc, "expected a single value here, not a list or a section")
            .hint("write one value after the key, e.g. `key: value`");
    }
    if message.starts_with("multiple YAML documents") {
        return Diagnostic::error(loc, "a second YAML document: a config file holds one")
            .hint("delete the `---` line and what follows, or merge it into the first document");
    }
    let d = Diagnostic::error(loc, message);
    if let Some(key) = message
        .strip_prefix("missing field `")
        .and_then(|r| r.split('`').next())
    {
        return Diagnostic::error(loc, format!("missing key `{key}` in this section")).hint(
            format!("add `{key}:` here (see config/oqs-edge.schema.json or README)"),
        );
    }
    if message.contains("duplicate mapping key") {
        let key = message
            .trim_start_matches("duplicate mapping key: ")
            .split(',')
            .next()
            .unwrap_or_default();
        return Diagnostic::error(loc, format!("duplicate key `{key}`"))
            .hint("each key may appear once per section; delete one of them");
    }
    if message.starts_with("expected sequence") {
        return d.hint("this key takes a list: `[a, b]` or one `- item` per line");
    }
    if message.starts_with("expected mapping") || message.contains("expected struct") {
        return d.hint("this key takes a section of `key: value` lines, indented under it");
    }
    d
}

/// The parser may blame the token before a tab; point at the tab itself.
fn first_tab_from(text: &str, loc: Loc) -> Option<Loc> {
    text.split('\n')
        .enumerate()
        .skip(loc.line.checked_sub(1)? as usize)
        .find_map(|(i, line)| {
            let column = line.chars().position(|c| c == '\t')?;
            Some(Loc {
                line: i as u32 + 1,
                column: column as u32 + 1,
            })
        })
}

/// Replace the key at `loc` (which must read `key`) by `with`.
fn rename_key(text: &str, loc: Loc, key: &str, with: &str) -> Option<String> {
    edit_line(text, loc.line, |line| {
        let start = char_to_byte(line, loc.column)?;
        line[start..]
            .starts_with(key)
            .then(|| format!("{}{with}{}", &line[..start], &line[start + key.len()..]))
    })
}

/// Blank the key at `loc` and the lines nested under it, keeping line numbers. Only for a key
/// that starts its line (block style); anything else is not repaired.
fn blank_block(text: &str, loc: Loc) -> Option<String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let index = loc.line.checked_sub(1)? as usize;
    let line = lines.get(index)?;
    let indent = line.len() - line.trim_start().len();
    if char_to_byte(line, loc.column)? != indent {
        return None;
    }
    let mut out: Vec<&str> = lines.clone();
    out[index] = "";
    for (i, next) in lines.iter().enumerate().skip(index + 1) {
        let next_indent = next.len() - next.trim_start().len();
        if next.trim().is_empty() || next.trim_start().starts_with('#') || next_indent > indent {
            out[i] = "";
        } else {
            break;
        }
    }
    Some(out.join("\n"))
}

fn edit_line(text: &str, line: u32, edit: impl FnOnce(&str) -> Option<String>) -> Option<String> {
    let mut lines: Vec<String> = text.split('\n').map(str::to_owned).collect();
    let index = line.checked_sub(1)? as usize;
    let new = edit(lines.get(index)?)?;
    lines[index] = new;
    Some(lines.join("\n"))
}

fn char_to_byte(line: &str, column: u32) -> Option<usize> {
    let skip = column.checked_sub(1)? as usize;
    match line.char_indices().nth(skip) {
        Some((byte, _)) => Some(byte),
        None if line.chars().count() == skip => Some(line.len()),
        None => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_message_is_understood() {
        let (key, expected) =
            unknown_key("unknown field `adress`, expected one of `name`, `address`").unwrap();
        assert_eq!(key, "adress");
        assert_eq!(expected, ["name", "address"]);
    }

    #[test]
    fn blanking_keeps_line_numbers_and_nested_lines() {
        let text = "a:\n  junk:\n    x: 1\n  b: 2\n";
        let out = blank_block(text, Loc { line: 2, column: 3 }).unwrap();
        assert_eq!(out, "a:\n\n\n  b: 2\n");
    }

    #[test]
    fn positions_are_stripped() {
        assert_eq!(
            strip_position("invalid u32 at line 1, column 10"),
            "invalid u32"
        );
    }
}
