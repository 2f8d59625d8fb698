//! Masking through the whole session: what the client receives and what is
//! recorded, for simple and extended queries, COPY and error details.

use std::sync::Arc;

use super::session::{Harness, query};
use crate::event::Body;
use crate::mask::{ColumnRule, Detector, MaskRules, Masker, Strategy};
use crate::pg::{backend, encode, frame};

const CARD: &str = "4111 1111 1111 1111";
const EMAIL: &str = "jane.doe@example.com";
const SSN_VALUE: &str = "078-05-1120";

fn masker() -> Arc<Masker> {
    let rules = MaskRules {
        columns: vec![ColumnRule {
            pattern: "ssn".into(),
            strategy: Strategy::Redact,
        }],
        detectors: vec![
            (Detector::CardNumber, Strategy::Partial { keep_last: 4 }),
            (Detector::Email, Strategy::Redact),
        ],
        dictionaries: vec![],
    };
    Arc::new(Masker::new(rules, b"a gateway secret of some length").unwrap())
}

fn row_description(cols: &[(&str, u32, i16)]) -> Vec<u8> {
    let cols: Vec<_> = cols.iter().map(|&(n, oid, f)| (n, 0, 0, oid, f)).collect();
    row_description_from(&cols)
}

/// Columns with their origin: (name, table OID, column number, type, format).
fn row_description_from(cols: &[(&str, u32, i16, u32, i16)]) -> Vec<u8> {
    encode::frame(b'T', |b| {
        b.extend_from_slice(&(cols.len() as i16).to_be_bytes());
        for (name, table, column, oid, format) in cols {
            b.extend_from_slice(name.as_bytes());
            b.push(0);
            b.extend_from_slice(&table.to_be_bytes());
            b.extend_from_slice(&column.to_be_bytes());
            b.extend_from_slice(&oid.to_be_bytes());
            b.extend_from_slice(&(-1i16).to_be_bytes());
            b.extend_from_slice(&(-1i32).to_be_bytes());
            b.extend_from_slice(&format.to_be_bytes());
        }
    })
    .bytes()
    .to_vec()
}

fn data_row(values: &[Option<&[u8]>]) -> Vec<u8> {
    encode::frame(b'D', |b| {
        b.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
    })
    .bytes()
    .to_vec()
}

fn tail(tag: &str) -> Vec<u8> {
    let mut out = encode::frame(b'C', |b| {
        b.extend_from_slice(tag.as_bytes());
        b.push(0)
    })
    .bytes()
    .to_vec();
    out.extend_from_slice(encode::ready_for_query(b'I').bytes());
    out
}

/// The DataRow values the client received.
fn client_rows(bytes: &[u8]) -> Vec<Vec<Option<String>>> {
    let bytes = bytes::Bytes::copy_from_slice(bytes);
    frame::split(&bytes)
        .filter_map(|f| match backend::Message::parse(&f).unwrap() {
            backend::Message::DataRow(values) => Some(
                values
                    .iter()
                    .map(|v| v.map(|v| String::from_utf8_lossy(v).into_owned()))
                    .collect(),
            ),
            _ => None,
        })
        .collect()
}

fn assert_nothing_sensitive_recorded(h: &Harness) {
    for raw in &h.raw_events {
        for secret in [CARD, EMAIL, SSN_VALUE] {
            assert!(
                !raw.windows(secret.len()).any(|w| w == secret.as_bytes()),
                "{secret} reached the recording"
            );
        }
    }
}

#[test]
fn simple_query_rows_are_masked_for_the_client_and_the_recording() {
    let mut h = Harness::new(true);
    h.open_with(Some(masker()));
    h.client(&query("select * from customers"), 1000);
    let mut server = row_description(&[("note", 25, 0), ("ssn", 25, 0), ("id", 23, 0)]);
    let note = format!("card {CARD}, mail {EMAIL}");
    server.extend(data_row(&[
        Some(note.as_bytes()),
        Some(SSN_VALUE.as_bytes()),
        Some(b"7"),
    ]));
    server.extend(data_row(&[Some(b"nothing here"), None, Some(b"8")]));
    server.extend(tail("SELECT 2"));
    // Split reads: frames are masked whole whatever the read boundaries.
    h.upstream(&server, 7);
    let rows = client_rows(&h.to_client);
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0][0].as_deref(), Some("card ****1111, mail ****"));
    assert_eq!(rows[0][1].as_deref(), Some("****"));
    assert_eq!(rows[0][2].as_deref(), Some("7"));
    assert_eq!(
        rows[1],
        vec![Some("nothing here".into()), None, Some("8".into())]
    );
    let masked: Vec<_> = h
        .bodies
        .iter()
        .filter_map(|b| match b {
            Body::Masked(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert!(!masked.is_empty());
    let hits: u32 = masked.iter().flat_map(|m| &m.hits).map(|h| h.count).sum();
    assert_eq!(hits, 3, "{masked:?}");
    assert!(
        masked
            .iter()
            .flat_map(|m| &m.hits)
            .any(|h| h.column == "ssn")
    );
    assert_nothing_sensitive_recorded(&h);
}

#[test]
fn extended_protocol_uses_the_described_statement_and_bind_formats() {
    let mut h = Harness::new(true);
    h.open_with(Some(masker()));
    // Prepare (Parse + Describe S + Sync), then execute with binary results.
    let mut prep = encode::frame(b'P', |b| b.extend_from_slice(b"s1\0select\0\0\0"))
        .bytes()
        .to_vec();
    prep.extend_from_slice(encode::frame(b'D', |b| b.extend_from_slice(b"Ss1\0")).bytes());
    prep.extend_from_slice(encode::frame(b'S', |_| {}).bytes());
    h.client(&prep, 1000);
    let mut answer = encode::frame(b'1', |_| {}).bytes().to_vec();
    answer.extend_from_slice(
        encode::frame(b't', |b| b.extend_from_slice(&0i16.to_be_bytes())).bytes(),
    );
    answer.extend(row_description(&[("email", 1043, 0), ("ssn", 23, 0)]));
    answer.extend_from_slice(encode::ready_for_query(b'I').bytes());
    h.upstream(&answer, 1000);
    let mut exec = encode::frame(b'B', |b| {
        b.extend_from_slice(b"\0s1\0\0\0\0\0");
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&1i16.to_be_bytes());
    })
    .bytes()
    .to_vec();
    exec.extend_from_slice(encode::frame(b'E', |b| b.extend_from_slice(b"\0\0\0\0\0")).bytes());
    exec.extend_from_slice(encode::frame(b'S', |_| {}).bytes());
    h.client(&exec, 1000);
    h.to_client.clear();
    let mut rows = encode::frame(b'2', |_| {}).bytes().to_vec();
    // Binary varchar is its text; a binary int4 under a column rule
    // becomes NULL.
    rows.extend(data_row(&[Some(EMAIL.as_bytes()), Some(&[0, 0, 0, 5])]));
    rows.extend(tail("SELECT 1"));
    h.upstream(&rows, 1000);
    let got = client_rows(&h.to_client);
    assert_eq!(got, vec![vec![Some("****".into()), None]]);
    assert_nothing_sensitive_recorded(&h);
}

#[test]
fn copy_out_and_error_details_are_masked() {
    let mut h = Harness::new(true);
    h.open_with(Some(masker()));
    h.client(&query("copy customers to stdout"), 1000);
    let mut server = encode::frame(b'H', |b| {
        b.push(0);
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&0i16.to_be_bytes());
    })
    .bytes()
    .to_vec();
    let line = format!("1\t{EMAIL}\n");
    server.extend_from_slice(encode::frame(b'd', |b| b.extend_from_slice(line.as_bytes())).bytes());
    server.extend_from_slice(encode::frame(b'c', |_| {}).bytes());
    server.extend(tail("COPY 1"));
    h.upstream(&server, 1000);
    assert!(String::from_utf8_lossy(&h.to_client).contains("1\t****\n"));
    h.client(&query("insert into customers values (1)"), 1000);
    let detail = format!("Key (email)=({EMAIL}) already exists.");
    let mut err = encode::frame(b'E', |b| {
        for (code, v) in [
            (b'S', "ERROR"),
            (b'C', "23505"),
            (b'M', "duplicate key"),
            (b'D', detail.as_str()),
        ] {
            b.push(code);
            b.extend_from_slice(v.as_bytes());
            b.push(0);
        }
        b.push(0);
    })
    .bytes()
    .to_vec();
    err.extend_from_slice(encode::ready_for_query(b'I').bytes());
    h.upstream(&err, 1000);
    let text = String::from_utf8_lossy(&h.to_client);
    assert!(
        text.contains("Key (email)=(****) already exists."),
        "{text}"
    );
    // The rewritten frames still parse: lengths were fixed.
    let bytes = bytes::Bytes::from(h.to_client.clone());
    let n: usize = frame::split(&bytes).map(|f| f.bytes().len()).sum();
    assert_eq!(n, h.to_client.len());
    assert_nothing_sensitive_recorded(&h);
}

#[test]
fn without_rules_frames_pass_untouched() {
    let mut h = Harness::new(true);
    h.open();
    h.client(&query("select"), 1000);
    let mut server = row_description(&[("email", 25, 0)]);
    server.extend(data_row(&[Some(EMAIL.as_bytes())]));
    server.extend(tail("SELECT 1"));
    h.upstream(&server, 1000);
    assert_eq!(h.to_client, server);
}

/// A notice in a client encoding other than UTF-8 (LATIN1 `é` is one byte,
/// 0xE9) is masked all the same; so is a notice whose field list is cut.
#[test]
fn notices_that_are_not_utf8_are_masked() {
    let mut h = Harness::new(true);
    h.open_with(Some(masker()));
    h.client(&query("do $$ … $$"), 1000);
    let message = [b"caf\xe9 ".as_slice(), EMAIL.as_bytes()].concat();
    let mut server = encode::frame(b'N', |b| {
        for (code, v) in [(b'S', b"NOTICE".as_slice()), (b'M', &message)] {
            b.push(code);
            b.extend_from_slice(v);
            b.push(0);
        }
        b.push(0);
    })
    .bytes()
    .to_vec();
    // No terminating NUL after the last field.
    server.extend_from_slice(
        encode::frame(b'N', |b| {
            b.push(b'M');
            b.extend_from_slice(EMAIL.as_bytes());
        })
        .bytes(),
    );
    server.extend(tail("DO"));
    h.upstream(&server, 1000);
    let text = String::from_utf8_lossy(&h.to_client);
    assert!(text.contains("caf\u{fffd} ****\0"), "{text}");
    assert!(!text.contains(EMAIL), "{text}");
    let bytes = bytes::Bytes::from(h.to_client.clone());
    let n: usize = frame::split(&bytes).map(|f| f.bytes().len()).sum();
    assert_eq!(n, h.to_client.len());
    assert_nothing_sensitive_recorded(&h);
}

#[test]
fn notification_payloads_are_masked() {
    let mut h = Harness::new(true);
    h.open_with(Some(masker()));
    let payload = format!("customer {EMAIL} changed");
    let server = encode::frame(b'A', |b| {
        b.extend_from_slice(&42i32.to_be_bytes());
        b.extend_from_slice(b"events\0");
        b.extend_from_slice(payload.as_bytes());
        b.push(0);
    })
    .bytes()
    .to_vec();
    h.upstream(&server, 1000);
    let text = String::from_utf8_lossy(&h.to_client);
    assert!(text.contains("customer **** changed"), "{text}");
    assert_nothing_sensitive_recorded(&h);
}

#[test]
fn an_alias_does_not_hide_a_column_from_its_rule() {
    let mut h = Harness::new(true);
    h.open_with(Some(masker()));
    h.client(
        &query("select ssn as x, id as ssn_free from customers"),
        1000,
    );
    // x is customers.ssn (table 16384, column 3) under another name.
    let mut server = row_description_from(&[("x", 16384, 3, 25, 0), ("ssn_free", 16384, 1, 23, 0)]);
    server.extend(data_row(&[Some(SSN_VALUE.as_bytes()), Some(b"1")]));
    server.extend(tail("SELECT 1"));
    h.upstream(&server, 1000);
    assert_eq!(
        client_rows(&h.to_client),
        vec![vec![Some("****".into()), Some("1".into())]]
    );
    assert_nothing_sensitive_recorded(&h);
}
