//! Config errors: every problem of a file at once, each with file:line:column and the key.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigIssue {
    /// 1-based line, 0 when the problem has no place in the file.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Dotted key, e.g. `site[1].origins`.
    pub key: String,
    pub message: String,
}

/// Everything wrong with one config file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}", render(path, issues))]
    Invalid {
        path: PathBuf,
        issues: Vec<ConfigIssue>,
    },
}

fn render(path: &Path, issues: &[ConfigIssue]) -> String {
    let mut out = String::new();
    for (i, issue) in issues.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&format!("{}:{issue}", path.display()));
    }
    out
}

impl fmt::Display for ConfigIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: ", self.line, self.column)?;
        } else {
            write!(f, " ")?;
        }
        if self.key.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "`{}`: {}", self.key, self.message)
        }
    }
}

/// Collects issues while a file is converted into checked types.
pub(crate) struct Issues<'a> {
    source: &'a str,
    pub(crate) list: Vec<ConfigIssue>,
}

impl<'a> Issues<'a> {
    pub(crate) fn new(source: &'a str) -> Self {
        Self {
            source,
            list: Vec::new(),
        }
    }

    /// Records a problem at the byte range `span` of the source.
    pub(crate) fn at(
        &mut self,
        span: Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) {
        let (line, column) = line_column(self.source, span.start);
        self.list.push(ConfigIssue {
            line,
            column,
            key: key.into(),
            message: message.into(),
        });
    }
}

/// The dotted key whose line holds byte `offset`: the nearest `[table]` header above and the
/// `key =` of the line, e.g. `server.max_connections`. Empty when the line holds no key.
pub(crate) fn key_at(source: &str, offset: usize) -> String {
    let offset = offset.min(source.len());
    let line_start = source[..offset].rfind('\n').map_or(0, |p| p + 1);
    let line_end = source[offset..]
        .find('\n')
        .map_or(source.len(), |p| offset + p);
    let key = source[line_start..line_end]
        .split_once('=')
        .map(|(k, _)| k.trim().trim_matches('"').to_owned())
        .unwrap_or_default();
    let table = source[..line_start]
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| l.starts_with('['))
        .map(|l| l.trim_matches(|c| c == '[' || c == ']').trim().to_owned());
    match (table, key.is_empty()) {
        (_, true) => String::new(),
        (Some(table), false) => format!("{table}.{key}"),
        (None, false) => key,
    }
}

/// 1-based line and column of byte `offset` in `source`.
pub(crate) fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = &source.as_bytes()[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |p| p + 1);
    let column = source[line_start..offset].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_column_counts_from_one() {
        let src = "a = 1\nbb = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        assert_eq!(line_column(src, 9), (2, 4));
        assert_eq!(line_column(src, 999), (3, 1));
    }

    #[test]
    fn key_at_names_table_and_key() {
        let src = "top = 1\n[server]\nhttps = \"x\"\n\n[[site]]\nhost = 3\n";
        assert_eq!(key_at(src, 2), "top");
        assert_eq!(key_at(src, src.find("\"x").unwrap()), "server.https");
        assert_eq!(key_at(src, src.find("3").unwrap()), "site.host");
        assert_eq!(key_at(src, src.find("[[").unwrap()), "");
    }
}
