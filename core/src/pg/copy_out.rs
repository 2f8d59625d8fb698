//! `COPY … TO STDOUT`: which columns its rows have, and how its rows are
//! split into fields, so that column masking rules apply to COPY as they
//! do to query results.
//!
//! COPY names no columns on the wire: a CopyOutResponse gives only a
//! count and formats. The statement does ([`copy_sources`]): `COPY t (a,
//! b) TO STDOUT` lists them; `COPY t TO STDOUT` means all of `t`'s
//! columns in order, which the target's catalog gives
//! ([`super::catalog`]); `COPY (SELECT …) TO STDOUT` cannot be attributed
//! without running the query, so where column rules exist its every field
//! is masked as a column of unknown origin (fail closed).
//!
//! PostgreSQL sends one CopyData message per row when copying out (and
//! the header and trailer of the binary format as messages of their own).
//! [`split`] splits one such row into its fields by the statement's
//! format, delimiter, quote and escape; [`encode_field`] writes a masked
//! value back in the same format.

use super::wire::Reader;

/// The data format of a COPY, with the options that shape its rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyFormat {
    /// PostgreSQL's text format: `delimiter`-separated, backslash escapes,
    /// NULL written as `null`.
    Text {
        /// The field delimiter (default tab).
        delimiter: u8,
        /// How NULL is written (default `\N`).
        null: Vec<u8>,
    },
    /// CSV: `delimiter`-separated, fields optionally quoted with `quote`,
    /// a quote inside doubled (or preceded by `escape`).
    Csv {
        /// The field delimiter (default `,`).
        delimiter: u8,
        /// The quote character (default `"`).
        quote: u8,
        /// The escape character inside quotes (default: the quote).
        escape: u8,
        /// How NULL is written (default: an empty unquoted field).
        null: Vec<u8>,
    },
    /// The binary format.
    Binary,
}

impl CopyFormat {
    /// The field delimiter (binary rows have none: 0).
    pub fn delimiter(&self) -> u8 {
        match self {
            CopyFormat::Text { delimiter, .. } | CopyFormat::Csv { delimiter, .. } => *delimiter,
            CopyFormat::Binary => 0,
        }
    }
}

/// What a `COPY … TO STDOUT` statement copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopySource {
    /// The table (`(schema, name)`, schema empty when unqualified), or
    /// `None` for `COPY (query)`.
    pub relation: Option<(String, String)>,
    /// The column list, if the statement has one.
    pub columns: Option<Vec<String>>,
    /// The data format.
    pub format: CopyFormat,
    /// Whether the first row is a header (text and CSV).
    pub header: bool,
}

/// The `COPY … TO STDOUT` statements of a query string, in order; `None`
/// when it cannot be parsed (the caller fails closed). Cheap for strings
/// that do not mention `copy`.
pub fn copy_sources(sql: &str) -> Option<Vec<CopySource>> {
    if !sql
        .as_bytes()
        .windows(4)
        .any(|w| w.eq_ignore_ascii_case(b"copy"))
    {
        return Some(Vec::new());
    }
    use pg_query::NodeEnum;
    let parsed = pg_query::parse(sql, 0).ok()?;
    let mut out = Vec::new();
    for raw in &parsed.protobuf.stmts {
        let Some(NodeEnum::CopyStmt(copy)) = raw.stmt.as_ref().and_then(|s| s.node.as_ref()) else {
            continue;
        };
        if copy.is_from || copy.is_program || !copy.filename.is_empty() {
            continue;
        }
        let relation = copy
            .relation
            .as_ref()
            .filter(|_| copy.query.is_none())
            .map(|r| (r.schemaname.clone(), r.relname.clone()));
        let columns: Option<Vec<String>> = if copy.attlist.is_empty() {
            None
        } else {
            copy.attlist
                .iter()
                .map(|n| match n.node.as_ref() {
                    Some(NodeEnum::String(s)) => Some(s.sval.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()
        };
        let (format, header) = options(&copy.options)?;
        out.push(CopySource {
            relation,
            columns,
            format,
            header,
        });
    }
    Some(out)
}

/// The format and header flag of a COPY's options; `None` for an option
/// value this cannot read (the caller fails closed).
fn options(options: &[pg_query::protobuf::Node]) -> Option<(CopyFormat, bool)> {
    use pg_query::NodeEnum;
    let mut format = "text".to_owned();
    let (mut delimiter, mut null, mut quote, mut escape) = (None, None, None, None);
    let mut header = false;
    for option in options {
        let Some(NodeEnum::DefElem(d)) = option.node.as_ref() else {
            return None;
        };
        let arg = d.arg.as_ref().and_then(|a| a.node.as_ref());
        let text = match arg {
            Some(NodeEnum::String(s)) => Some(s.sval.clone()),
            Some(NodeEnum::Boolean(b)) => Some(if b.boolval { "true" } else { "false" }.into()),
            Some(NodeEnum::Integer(i)) => Some(i.ival.to_string()),
            _ => None,
        };
        match d.defname.as_str() {
            "format" => format = text?.to_ascii_lowercase(),
            "delimiter" => delimiter = Some(single_byte(&text?)?),
            "null" => null = Some(text?.into_bytes()),
            "quote" => quote = Some(single_byte(&text?)?),
            "escape" => escape = Some(single_byte(&text?)?),
            // `HEADER` alone has no argument; `HEADER MATCH` is for COPY FROM.
            "header" => {
                header = text
                    .is_none_or(|t| matches!(t.to_ascii_lowercase().as_str(), "true" | "on" | "1"))
            }
            _ => {}
        }
    }
    let format = match format.as_str() {
        "text" => CopyFormat::Text {
            delimiter: delimiter.unwrap_or(b'\t'),
            null: null.unwrap_or_else(|| b"\\N".to_vec()),
        },
        "csv" => {
            let quote = quote.unwrap_or(b'"');
            CopyFormat::Csv {
                delimiter: delimiter.unwrap_or(b','),
                quote,
                escape: escape.unwrap_or(quote),
                null: null.unwrap_or_default(),
            }
        }
        "binary" => CopyFormat::Binary,
        _ => return None,
    };
    Some((format, header))
}

fn single_byte(s: &str) -> Option<u8> {
    match s.as_bytes() {
        [b] => Some(*b),
        _ => None,
    }
}

/// One field of a row: where its bytes are in the row, and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Its bytes in the row, as written (escaped or quoted).
    pub raw: std::ops::Range<usize>,
    /// The value, unescaped; `None` for NULL.
    pub value: Option<Vec<u8>>,
}

/// Splits one row (a CopyData body) into its fields. Text and CSV rows end
/// with a newline; binary rows are a field count and length-prefixed
/// values. `None` when `row` is not one whole row in `format` (or is the
/// binary format's header or trailer).
pub fn split(row: &[u8], format: &CopyFormat) -> Option<Vec<Field>> {
    match format {
        CopyFormat::Text { delimiter, null } => split_text(row, *delimiter, null),
        CopyFormat::Csv {
            delimiter,
            quote,
            escape,
            null,
        } => split_csv(row, *delimiter, *quote, *escape, null),
        CopyFormat::Binary => split_binary(row),
    }
}

fn split_text(row: &[u8], delimiter: u8, null: &[u8]) -> Option<Vec<Field>> {
    let line = row
        .strip_suffix(b"\r\n")
        .or_else(|| row.strip_suffix(b"\n"))?;
    let mut fields = Vec::new();
    let mut start = 0;
    let mut i = 0;
    let mut value = Vec::new();
    loop {
        let byte = line.get(i).copied();
        match byte {
            Some(b'\\') => {
                let next = *line.get(i + 1)?;
                value.push(match next {
                    b'n' => b'\n',
                    b'r' => b'\r',
                    b't' => b'\t',
                    b'b' => 8,
                    b'f' => 12,
                    b'v' => 11,
                    other => other,
                });
                i += 2;
            }
            Some(b) if b != delimiter => {
                value.push(b);
                i += 1;
            }
            _ => {
                let raw = start..i;
                let is_null = line.get(raw.clone()) == Some(null);
                let taken = std::mem::take(&mut value);
                fields.push(Field {
                    raw,
                    value: (!is_null).then_some(taken),
                });
                if byte.is_none() {
                    return Some(fields);
                }
                i += 1;
                start = i;
            }
        }
    }
}

fn split_csv(row: &[u8], delimiter: u8, quote: u8, escape: u8, null: &[u8]) -> Option<Vec<Field>> {
    let line = row
        .strip_suffix(b"\r\n")
        .or_else(|| row.strip_suffix(b"\n"))?;
    let mut fields = Vec::new();
    let mut i = 0;
    loop {
        let start = i;
        let mut value = Vec::new();
        let mut quoted = false;
        if line.get(i) == Some(&quote) {
            quoted = true;
            i += 1;
            loop {
                let b = *line.get(i)?;
                if b == escape && line.get(i + 1) == Some(&quote) {
                    value.push(quote);
                    i += 2;
                } else if b == escape && escape != quote && line.get(i + 1) == Some(&escape) {
                    value.push(escape);
                    i += 2;
                } else if b == quote {
                    i += 1;
                    break;
                } else {
                    value.push(b);
                    i += 1;
                }
            }
        } else {
            while let Some(&b) = line.get(i) {
                if b == delimiter {
                    break;
                }
                value.push(b);
                i += 1;
            }
        }
        let raw = start..i;
        let is_null = !quoted && value == null;
        fields.push(Field {
            raw,
            value: (!is_null).then_some(value),
        });
        match line.get(i) {
            None => return Some(fields),
            Some(&b) if b == delimiter => i += 1,
            // Bytes after a closing quote: not a row this can read.
            Some(_) => return None,
        }
    }
}

fn split_binary(row: &[u8]) -> Option<Vec<Field>> {
    let mut r = Reader::new(row);
    let n = r.i16()?;
    let n = usize::try_from(n).ok()?;
    let mut fields = Vec::with_capacity(n.min(row.len() / 4));
    for _ in 0..n {
        let start = row.len() - r.remaining().len();
        let value = r.value()?;
        let end = row.len() - r.remaining().len();
        fields.push(Field {
            raw: start..end,
            value: value.map(<[u8]>::to_vec),
        });
    }
    r.is_empty().then_some(fields)
}

/// Appends `value` (`None`: NULL) as a field in `format`.
pub fn encode_field(out: &mut Vec<u8>, value: Option<&[u8]>, format: &CopyFormat) {
    match (format, value) {
        (CopyFormat::Text { null, .. }, None) | (CopyFormat::Csv { null, .. }, None) => {
            out.extend_from_slice(null)
        }
        (CopyFormat::Text { delimiter, .. }, Some(v)) => {
            for &b in v {
                match b {
                    b'\\' => out.extend_from_slice(b"\\\\"),
                    b'\n' => out.extend_from_slice(b"\\n"),
                    b'\r' => out.extend_from_slice(b"\\r"),
                    b'\t' => out.extend_from_slice(b"\\t"),
                    b if b == *delimiter => out.extend_from_slice(&[b'\\', b]),
                    b => out.push(b),
                }
            }
        }
        (
            CopyFormat::Csv {
                delimiter,
                quote,
                escape,
                null,
            },
            Some(v),
        ) => {
            // Quoted only where needed, as PostgreSQL writes it.
            let needs_quotes = v == null.as_slice()
                || v.iter()
                    .any(|b| b == delimiter || b == quote || *b == b'\n' || *b == b'\r');
            if !needs_quotes {
                out.extend_from_slice(v);
                return;
            }
            out.push(*quote);
            for &b in v {
                if b == *quote || b == *escape {
                    out.push(*escape);
                }
                out.push(b);
            }
            out.push(*quote);
        }
        (CopyFormat::Binary, None) => out.extend_from_slice(&(-1i32).to_be_bytes()),
        (CopyFormat::Binary, Some(v)) => {
            out.extend_from_slice(&(v.len() as i32).to_be_bytes());
            out.extend_from_slice(v);
        }
    }
}

/// The row terminator a text or CSV `row` used (binary rows have none).
pub fn line_end(row: &[u8]) -> &'static [u8] {
    if row.ends_with(b"\r\n") {
        b"\r\n"
    } else if row.ends_with(b"\n") {
        b"\n"
    } else {
        b""
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    fn text() -> CopyFormat {
        CopyFormat::Text {
            delimiter: b'\t',
            null: b"\\N".to_vec(),
        }
    }

    fn csv() -> CopyFormat {
        CopyFormat::Csv {
            delimiter: b',',
            quote: b'"',
            escape: b'"',
            null: Vec::new(),
        }
    }

    fn values(row: &[u8], f: &CopyFormat) -> Vec<Option<String>> {
        split(row, f)
            .unwrap()
            .into_iter()
            .map(|f| f.value.map(|v| String::from_utf8(v).unwrap()))
            .collect()
    }

    #[test]
    fn statements_name_their_columns_and_formats() {
        let s = copy_sources(
            "select 1; COPY public.customers (name, ssn) TO STDOUT WITH (FORMAT csv, HEADER); \
             copy orders to stdout; COPY (select 1) TO STDOUT (FORMAT binary); \
             COPY t FROM STDIN; COPY t TO '/tmp/x'",
        )
        .unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(
            s[0].relation,
            Some(("public".to_owned(), "customers".to_owned()))
        );
        assert_eq!(s[0].columns, Some(vec!["name".into(), "ssn".into()]));
        assert_eq!((s[0].format.clone(), s[0].header), (csv(), true));
        assert_eq!(s[1].relation, Some((String::new(), "orders".to_owned())));
        assert_eq!((s[1].columns.clone(), s[1].format.clone()), (None, text()));
        assert_eq!(
            (s[2].relation.clone(), s[2].format.clone()),
            (None, CopyFormat::Binary)
        );
        // Old-style options, a custom delimiter and NULL.
        let s = copy_sources("copy t to stdout with delimiter '|' null 'NIL' csv header").unwrap();
        assert_eq!(
            s[0].format,
            CopyFormat::Csv {
                delimiter: b'|',
                quote: b'"',
                escape: b'"',
                null: b"NIL".to_vec()
            }
        );
        assert!(s[0].header);
        assert_eq!(copy_sources("select 'no copies'").unwrap(), vec![]);
        assert_eq!(copy_sources("copy (((").map(|s| s.len()), None);
    }

    #[test]
    fn text_rows_split_on_unescaped_delimiters() {
        assert_eq!(
            values(b"1\ta\\tb\t\\N\t\n", &text()),
            vec![
                Some("1".into()),
                Some("a\tb".into()),
                None,
                Some(String::new())
            ]
        );
        assert_eq!(split(b"no newline", &text()), None);
        assert_eq!(split(b"dangling\\\n", &text()), None);
    }

    #[test]
    fn csv_rows_split_on_delimiters_outside_quotes() {
        assert_eq!(
            values(b"1,\"a,\"\"b\"\"\nc\",,\"\"\r\n", &csv()),
            vec![
                Some("1".into()),
                Some("a,\"b\"\nc".into()),
                None,
                Some(String::new())
            ]
        );
        assert_eq!(split(b"\"open\n", &csv()), None);
        assert_eq!(split(b"\"x\"y\n", &csv()), None);
    }

    #[test]
    fn binary_rows_split_into_length_prefixed_values() {
        let mut row = 2i16.to_be_bytes().to_vec();
        encode_field(&mut row, Some(b"abc"), &CopyFormat::Binary);
        encode_field(&mut row, None, &CopyFormat::Binary);
        let fields = split(&row, &CopyFormat::Binary).unwrap();
        assert_eq!(fields[0].value.as_deref(), Some(&b"abc"[..]));
        assert_eq!(fields[1].value, None);
        assert_eq!(split(&row[..row.len() - 1], &CopyFormat::Binary), None);
        // The trailer (-1) is not a row.
        assert_eq!(split(&(-1i16).to_be_bytes(), &CopyFormat::Binary), None);
    }

    #[test]
    fn encoded_fields_split_back_to_the_same_values() {
        let tricky = b"a\tb\\c\nd,\"e\"".to_vec();
        for f in [text(), csv()] {
            let mut row = Vec::new();
            encode_field(&mut row, Some(&tricky), &f);
            row.push(if f == text() { b'\t' } else { b',' });
            encode_field(&mut row, None, &f);
            row.push(b'\n');
            let got = split(&row, &f).unwrap();
            assert_eq!(got[0].value.as_deref(), Some(&tricky[..]), "{f:?}");
            assert_eq!(got[1].value, None, "{f:?}");
        }
    }
}
