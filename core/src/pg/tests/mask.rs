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

/// A DataRow: the same field count and length-prefixed values as a
/// binary COPY row.
fn data_row(values: &[Option<&[u8]>]) -> Vec<u8> {
    encode::frame(b'D', |b| b.extend_from_slice(&binary_row(values)))
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
    // customers is (id, name, ssn) in the catalog; ssn has a column rule.
    let line = format!("1\t{EMAIL}\t{SSN_VALUE}\n");
    let rows = copy_out(&mut h, "copy customers to stdout", 0, 3, &[line.as_bytes()]);
    assert_eq!(rows, vec![b"1\t****\t****\n".to_vec()]);
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

/// Runs `sql` as a COPY TO STDOUT whose target answers with `format`
/// (0 text, 1 binary), `columns` columns and these data messages; the
/// data messages the client received.
fn copy_out(h: &mut Harness, sql: &str, format: u8, columns: i16, data: &[&[u8]]) -> Vec<Vec<u8>> {
    h.to_client.clear();
    h.client(&query(sql), 1000);
    let mut server = encode::frame(b'H', |b| {
        b.push(format);
        b.extend_from_slice(&columns.to_be_bytes());
        for _ in 0..columns {
            b.extend_from_slice(&i16::from(format).to_be_bytes());
        }
    })
    .bytes()
    .to_vec();
    for d in data {
        server.extend_from_slice(encode::frame(b'd', |b| b.extend_from_slice(d)).bytes());
    }
    server.extend_from_slice(encode::frame(b'c', |_| {}).bytes());
    server.extend(tail(&format!("COPY {}", data.len())));
    h.upstream(&server, 1000);
    let bytes = bytes::Bytes::from(h.to_client.clone());
    let frames: Vec<_> = frame::split(&bytes).collect();
    let n: usize = frames.iter().map(|f| f.bytes().len()).sum();
    assert_eq!(n, h.to_client.len(), "the rewritten frames must parse");
    frames
        .iter()
        .filter(|f| f.tag() == b'd')
        .map(|f| f.body().to_vec())
        .collect()
}

/// A binary COPY row.
fn binary_row(values: &[Option<&[u8]>]) -> Vec<u8> {
    let mut row = (values.len() as i16).to_be_bytes().to_vec();
    for v in values {
        match v {
            Some(v) => {
                row.extend_from_slice(&(v.len() as i32).to_be_bytes());
                row.extend_from_slice(v);
            }
            None => row.extend_from_slice(&(-1i32).to_be_bytes()),
        }
    }
    row
}

#[test]
fn copy_rows_get_their_column_rules_in_every_format() {
    let mut h = Harness::new(true);
    h.open_with(Some(masker()));

    // A column list, CSV with a header: the header passes, ssn is masked
    // by its rule, a quoted comma stays as it was.
    let rows = copy_out(
        &mut h,
        "COPY public.customers (ssn, name) TO STDOUT WITH (FORMAT csv, HEADER)",
        0,
        2,
        &[
            b"ssn,name\n",
            format!("{SSN_VALUE},\"Doe, Jane\"\n").as_bytes(),
        ],
    );
    assert_eq!(
        rows,
        vec![b"ssn,name\n".to_vec(), b"****,\"Doe, Jane\"\n".to_vec()]
    );

    // A custom delimiter and NULL; a NULL stays NULL.
    let rows = copy_out(
        &mut h,
        "copy customers to stdout with (delimiter '|', null 'NIL')",
        0,
        3,
        &[format!("2|NIL|{SSN_VALUE}\n").as_bytes(), b"3|Al|NIL\n"],
    );
    assert_eq!(rows, vec![b"2|NIL|****\n".to_vec(), b"3|Al|NIL\n".to_vec()]);

    // Binary: the header and trailer pass, ssn becomes NULL (its type is
    // not on the wire), an e-mail in a text field is masked in place.
    // PostgreSQL sends the header in one message with the first row.
    let mut header = b"PGCOPY\n\xff\r\n\0".to_vec();
    header.extend_from_slice(&[0; 8]);
    let row = binary_row(&[
        Some(&[0, 0, 0, 1]),
        Some(EMAIL.as_bytes()),
        Some(SSN_VALUE.as_bytes()),
    ]);
    let first = [header.clone(), row.clone()].concat();
    let rows = copy_out(
        &mut h,
        "copy customers to stdout (format binary)",
        1,
        3,
        &[&first, &row, &[0xff, 0xff]],
    );
    let masked = binary_row(&[Some(&[0, 0, 0, 1]), Some(b"****"), None]);
    let masked_first = [header.clone(), masked.clone()].concat();
    assert_eq!(rows, vec![masked_first, masked, vec![0xff, 0xff]]);

    // A table without masked columns: only the detectors.
    let line = format!("7\t{EMAIL}\n");
    let rows = copy_out(&mut h, "copy orders to stdout", 0, 2, &[line.as_bytes()]);
    assert_eq!(rows, vec![b"7\t****\n".to_vec()]);

    // Fail closed where the columns are not known: a query, a table the
    // catalog did not have at login.
    for sql in [
        "copy (select ssn, id from customers) to stdout",
        "copy created_later to stdout",
    ] {
        let line = format!("{SSN_VALUE}\t1\n");
        let rows = copy_out(&mut h, sql, 0, 2, &[line.as_bytes()]);
        assert_eq!(rows, vec![b"\\N\t\\N\n".to_vec()], "{sql}");
    }

    // Extended protocol: the COPY prepared with Parse.
    h.to_client.clear();
    h.client(&parse_bind_execute("copy customers to stdout"), 1000);
    let mut server = Vec::new();
    for tag in [b'1', b'2'] {
        server.extend_from_slice(encode::frame(tag, |_| {}).bytes());
    }
    server.extend_from_slice(
        encode::frame(b'H', |b| {
            b.push(0);
            b.extend_from_slice(&3i16.to_be_bytes());
            b.extend_from_slice(&[0; 6]);
        })
        .bytes(),
    );
    let line = format!("1\tx\t{SSN_VALUE}\n");
    server.extend_from_slice(encode::frame(b'd', |b| b.extend_from_slice(line.as_bytes())).bytes());
    server.extend_from_slice(encode::frame(b'c', |_| {}).bytes());
    server.extend(tail("COPY 1"));
    h.upstream(&server, 1000);
    assert!(
        String::from_utf8_lossy(&h.to_client).contains("1\tx\t****\n"),
        "{:?}",
        String::from_utf8_lossy(&h.to_client)
    );
    assert_nothing_sensitive_recorded(&h);
}

/// Parse, Bind, Execute and Sync of `sql`, unnamed.
fn parse_bind_execute(sql: &str) -> Vec<u8> {
    let mut out = encode::frame(b'P', |b| {
        b.push(0);
        b.extend_from_slice(sql.as_bytes());
        b.push(0);
        b.extend_from_slice(&0i16.to_be_bytes());
    })
    .bytes()
    .to_vec();
    out.extend_from_slice(
        encode::frame(b'B', |b| {
            b.extend_from_slice(&[0, 0]);
            b.extend_from_slice(&[0; 6]);
        })
        .bytes(),
    );
    out.extend_from_slice(
        encode::frame(b'E', |b| {
            b.push(0);
            b.extend_from_slice(&0i32.to_be_bytes());
        })
        .bytes(),
    );
    out.extend_from_slice(encode::frame(b'S', |_| {}).bytes());
    out
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
