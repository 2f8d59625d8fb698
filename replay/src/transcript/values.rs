//! Column values and bind parameters as a transcript shows them.

use serde::Serialize;

use super::types::decode_binary;
use crate::text::hex;

/// One value of a row or a parameter.
///
/// In JSON: `null`, a string (text format), or
/// `{"binary": "\\x…", "text": "…"}` (`text` only for the types
/// [`decode_binary`] knows); a value the gateway masked is
/// `{"masked": true, "value": …}` around one of those.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A text-format value. Bytes that are not UTF-8 (a client encoding
    /// other than UTF-8) are replaced by U+FFFD.
    Text(String),
    /// A binary-format value.
    Binary {
        /// The bytes in hex with a `\x` prefix.
        binary: String,
        /// What they mean, when the type is known and common.
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// A value the gateway masked before it left (the recording's
    /// `Masked` event names the cell): the inner value is what the client
    /// received, i.e. already masked (`****1111`, `tok_…`, or NULL for a
    /// column rule with the `null` strategy or a non-text binary value).
    #[serde(serialize_with = "masked_json")]
    Masked(Box<Value>),
}

/// `{"masked": true, "value": …}`.
fn masked_json<S: serde::Serializer>(value: &Value, s: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeStruct as _;
    let mut st = s.serialize_struct("Masked", 2)?;
    st.serialize_field("masked", &true)?;
    st.serialize_field("value", value)?;
    st.end()
}

impl Value {
    /// Decodes a wire value of format `format` (0 text, anything else
    /// binary) and type `type_oid` (0: unknown).
    pub fn decode(raw: Option<&[u8]>, format: i16, type_oid: u32) -> Value {
        match raw {
            None => Value::Null,
            Some(bytes) if format == 0 => Value::Text(String::from_utf8_lossy(bytes).into_owned()),
            Some(bytes) => Value::Binary {
                binary: hex(bytes),
                text: decode_binary(type_oid, bytes),
            },
        }
    }

    /// This value, marked as masked by the gateway (once).
    pub fn into_masked(self) -> Value {
        match self {
            Value::Masked(_) => self,
            other => Value::Masked(Box::new(other)),
        }
    }

    /// Whether the gateway masked this value.
    pub fn is_masked(&self) -> bool {
        matches!(self, Value::Masked(_))
    }

    /// The value as the client received it, without the masked mark.
    pub fn unmarked(&self) -> &Value {
        match self {
            Value::Masked(inner) => inner.unmarked(),
            other => other,
        }
    }

    /// The value as a table cell shows it: text as is, NULL empty (as psql
    /// does by default), binary as its meaning if known, else in hex. A
    /// masked value shows its masked form; the renderer adds the mark.
    pub fn cell(&self) -> &str {
        match self {
            Value::Masked(inner) => inner.cell(),
            Value::Null => "",
            Value::Text(s) => s,
            Value::Binary {
                text: Some(text), ..
            } => text,
            Value::Binary { binary, .. } => binary,
        }
    }
}

/// A Bind parameter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Param {
    /// `text` or `binary`.
    pub format: &'static str,
    /// The parameter's type OID, when the client gave it at Parse or the
    /// target described the statement (0: unknown).
    pub type_oid: u32,
    /// The value.
    pub value: Value,
    /// The bytes as sent, to decode again once the type is known.
    #[serde(skip)]
    raw: Option<Vec<u8>>,
    #[serde(skip)]
    format_code: i16,
}

impl Param {
    /// Decodes parameter `raw` sent in format `format` with type `type_oid`
    /// (0: unknown).
    pub fn decode(raw: Option<&[u8]>, format: i16, type_oid: u32) -> Param {
        Param {
            format: if format == 0 { "text" } else { "binary" },
            type_oid,
            value: Value::decode(raw, format, type_oid),
            raw: raw.filter(|_| format != 0).map(<[u8]>::to_vec),
            format_code: format,
        }
    }

    /// Learns the parameter's type (from a ParameterDescription that came
    /// after the Bind was read) and decodes a binary value again.
    pub(crate) fn set_type(&mut self, type_oid: u32) {
        if self.type_oid != 0 || type_oid == 0 {
            return;
        }
        self.type_oid = type_oid;
        if let Some(raw) = &self.raw {
            self.value = Value::decode(Some(raw), self.format_code, type_oid);
        }
    }

    /// The parameter as SQL would write it: `'42'` (quotes doubled),
    /// `NULL`, or `'\x0000002a' (binary)`.
    pub fn literal(&self) -> String {
        literal(&self.value)
    }
}

fn literal(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::Text(s) => format!("'{}'", s.replace('\'', "''")),
        Value::Binary {
            text: Some(text), ..
        } => format!("'{}' (binary)", text.replace('\'', "''")),
        Value::Binary { binary, .. } => format!("'{binary}' (binary)"),
        Value::Masked(inner) => literal(inner),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_and_quotes() {
        assert_eq!(Param::decode(Some(b"42"), 0, 0).literal(), "'42'");
        assert_eq!(Param::decode(Some(b"O'Hara"), 0, 0).literal(), "'O''Hara'");
        assert_eq!(Param::decode(None, 1, 0).literal(), "NULL");
        let mut p = Param::decode(Some(&[0, 0, 0, 42]), 1, 0);
        assert_eq!(p.literal(), "'\\x0000002a' (binary)");
        p.set_type(23);
        assert_eq!(p.literal(), "'42' (binary)");
        assert_eq!(
            Value::decode(Some(b"\xff"), 0, 25),
            Value::Text("\u{fffd}".into())
        );
        assert_eq!(
            serde_json::to_string(&[
                Value::Null,
                Value::Text("a".into()),
                Value::decode(Some(&[1]), 1, 0),
                Value::decode(Some(&[1]), 1, 16),
            ])
            .unwrap(),
            r#"[null,"a",{"binary":"\\x01"},{"binary":"\\x01","text":"t"}]"#
        );
    }
}
