//! Values for comparing what came through the gateway with what came
//! straight from PostgreSQL, byte for byte and whatever the type.

use std::error::Error;

use bytes::BytesMut;
use tokio_postgres::Row;
use tokio_postgres::types::{FromSql, IsNull, ToSql, Type, to_sql_checked};

type BoxError = Box<dyn Error + Sync + Send>;

/// A column value exactly as the server sent it (binary format), of any
/// type; `None` is NULL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Raw(pub Option<Vec<u8>>);

impl<'a> FromSql<'a> for Raw {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        Ok(Raw(Some(raw.to_vec())))
    }

    fn from_sql_null(_: &Type) -> Result<Self, BoxError> {
        Ok(Raw(None))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A row as its column types and raw values.
pub type RawRow = (Vec<Type>, Vec<Raw>);

/// Every value of `row`, raw, with the column types.
pub fn raw_row(row: &Row) -> RawRow {
    let types = row.columns().iter().map(|c| c.type_().clone()).collect();
    let values = (0..row.len()).map(|i| row.get::<_, Raw>(i)).collect();
    (types, values)
}

/// Every row of `rows`, raw.
pub fn raw_rows(rows: &[Row]) -> Vec<RawRow> {
    rows.iter().map(raw_row).collect()
}

/// A parameter sent in the text format, for any type: what psql and most
/// drivers do, and the only way to send e.g. `numeric` without a Rust
/// decimal type. tokio-postgres then marks this parameter's format as text
/// in Bind while others stay binary.
#[derive(Debug, Clone)]
pub struct Text(pub String);

impl ToSql for Text {
    fn to_sql(&self, _: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        out.extend_from_slice(self.0.as_bytes());
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    fn encode_format(&self, _: &Type) -> tokio_postgres::types::Format {
        tokio_postgres::types::Format::Text
    }

    to_sql_checked!();
}

/// Where two long texts first differ, for failure messages that do not
/// print megabytes: `None` when they are equal.
pub fn first_difference(a: &str, b: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let (la, lb): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    for (i, (x, y)) in la.iter().zip(&lb).enumerate() {
        if x != y {
            return Some(format!("line {}: {x:?} != {y:?}", i + 1));
        }
    }
    Some(format!(
        "{} lines vs {} lines ({} vs {} bytes)",
        la.len(),
        lb.len(),
        a.len(),
        b.len()
    ))
}
