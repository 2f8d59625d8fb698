//! Column rules: case-insensitive globs over `table.column` or the bare
//! column name.

/// One compiled column pattern.
#[derive(Debug, Clone)]
pub(super) struct ColumnGlob {
    /// Lower-cased glob for the table, when the pattern has a `.`.
    table: Option<Box<[u8]>>,
    /// Lower-cased glob for the column.
    column: Box<[u8]>,
}

impl ColumnGlob {
    pub(super) fn new(pattern: &str) -> ColumnGlob {
        let lower = pattern.to_ascii_lowercase().into_bytes();
        match lower.iter().rposition(|&b| b == b'.') {
            Some(dot) => {
                let (table, column) = lower.split_at(dot);
                ColumnGlob {
                    table: Some(table.into()),
                    column: column.get(1..).unwrap_or_default().into(),
                }
            }
            None => ColumnGlob {
                table: None,
                column: lower.into(),
            },
        }
    }

    /// Whether a column of `table` (when known) named `column` matches.
    pub(super) fn matches(&self, table: Option<&str>, column: &str) -> bool {
        if !glob(&self.column, column.as_bytes()) {
            return false;
        }
        match (&self.table, table) {
            (None, _) => true,
            (Some(t), Some(table)) => glob(t, table.as_bytes()),
            // An unknown table matches only a table part of all stars.
            (Some(t), None) => t.iter().all(|&b| b == b'*'),
        }
    }
}

/// Glob match, `*` any run and `?` one byte, ASCII case-insensitive
/// (`pattern` is already lower case). Linear backtracking on the last star.
pub(super) fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    loop {
        match (pattern.get(p), text.get(t)) {
            (Some(b'*'), _) => {
                star = Some((p, t));
                p += 1;
            }
            (Some(&pc), Some(&tc)) if pc == b'?' || pc == tc.to_ascii_lowercase() => {
                p += 1;
                t += 1;
            }
            (None, None) => return true,
            _ => match star {
                Some((sp, st)) if st < text.len() => {
                    star = Some((sp, st + 1));
                    p = sp + 1;
                    t = st + 1;
                }
                _ => return false,
            },
        }
    }
}
