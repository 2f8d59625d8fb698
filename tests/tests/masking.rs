//! Masking end to end: a target with masking rules (card numbers kept to
//! their last four digits, e-mail addresses as deterministic tokens, US
//! SSNs redacted, an `ssn` and a `*.pin` column rule, a case-insensitive
//! dictionary term) in front of a table created directly on the cluster.
//! Through the gateway, psql (text results, COPY TO STDOUT as text and CSV,
//! an error DETAIL, NOTICE messages — one in LATIN1, not UTF-8) and
//! tokio-postgres (binary results, a prepared statement executed again and
//! again, a pipelined batch, a value far larger than one read, a unique
//! violation) see masked values and the values nothing matched intact —
//! the order number that fails the Luhn check above all.
//!
//! Then the gateway stops and the whole store directory is scanned byte by
//! byte, and every stored event again after decoding (fjall compresses
//! journal entries of 4 KiB and more with lz4, so the file scan alone
//! cannot see inside those): no original sensitive value is anywhere, nor
//! in the gateway's log. No SQL the test sends through the gateway carries
//! one (checked), so there is no client input to allow for. The `Masked`
//! events name the right rules, columns, counts and cells, and
//! `gatehouse-replay show` marks the masked cells, COPY lines and error
//! fields.
//!
//! Needs the binaries: `cargo build --workspace --bins` first.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use bytes::Bytes;
use futures_util::TryStreamExt;
use futures_util::future::try_join4;
use gatehouse_core::event::{Body, Direction, Event, Masked};
use gatehouse_core::pg::{backend, frame};
use gatehouse_store::Reader;
use gatehouse_tests::command::{render, run};
use gatehouse_tests::grant::decode_claims;
use gatehouse_tests::{Gateway, GatewayOptions, GrantArgs, PgCluster, Psql, User};
use tokio_postgres::Row;

const SECRET_ENV: &str = "GATEHOUSE_TEST_MASK_SECRET";

/// The `orders` target's masking section.
const MASKING: &str = r#"
token_secret_env = "GATEHOUSE_TEST_MASK_SECRET"
detectors = { card_number = "partial", email = "token", us_ssn = "redact" }

[[columns]]
pattern = "ssn"
strategy = "redact"

[[columns]]
pattern = "*.pin"
strategy = "redact"

[[dictionaries]]
terms = ["Initech"]
case_insensitive = true
strategy = "redact"
"#;

/// Run directly on the cluster as `app`, never through the gateway.
const SETUP: &str = "
create table customers (
    id int primary key,
    name text not null,
    email text unique,
    card text,
    order_no text,
    ssn text,
    pin int,
    company varchar(40),
    notes text
);
insert into customers values
    (1, 'Alice Example', 'alice@example.com', '4111 1111 1111 1111', '4111111111111112',
     '123-45-6789', 73519264, 'Initech',
     'paid with 5555555555554444, cc bob.jones@corp.example.org, ssn 234-56-7890, '
     || 'order 4111111111111112, account INITECH-west'),
    (2, 'Bob Jones', 'bob.jones@corp.example.org', '378282246310005', '1234567890123',
     '234-56-7890', 86420135, 'initech', 'no sensitive data here'),
    (3, 'Carol', 'carol@example.net', null, '5555555555554445', null, null, 'Globex',
     'prefers phone');
";

/// Every original sensitive value of the table, lower case (the dictionary
/// term is searched for in any case). The order numbers fail the Luhn
/// check and are not sensitive.
const SENSITIVE: &[&str] = &[
    "4111 1111 1111 1111",
    "4111111111111111",
    "5555555555554444",
    "378282246310005",
    "alice@example.com",
    "bob.jones@corp.example.org",
    "carol@example.net",
    "123-45-6789",
    "234-56-7890",
    "73519264",
    "86420135",
    "initech",
];

/// The pins in their binary (int4) form.
const PINS: [i32; 2] = [73519264, 86420135];

/// Row 1's notes as the client must see them.
const NOTES_1: &str =
    "paid with ****4444, cc <tok2>, ssn ****, order 4111111111111112, account ****-west";

const SELECT_ALL: &str =
    "select id, name, email, card, order_no, ssn, pin, company, notes from customers order by id";
const SELECT_ONE: &str = "select email, card, pin, notes from customers where id = $1";
const SELECT_OTHER: &str = "select ssn, pin, company, order_no from customers where id = $1";
const SELECT_NOTES: &str = "select notes, name from customers order by id";
const SELECT_MANY: &str = "select repeat(notes, 2000) as many from customers where id = $1";
const DUPLICATE_1: &str =
    "insert into customers (id, name, email) select 99, 'dup', email from customers where id = 1";
const DUPLICATE_3: &str =
    "insert into customers (id, name, email) select 98, 'dup', email from customers where id = 3";
const NOTICE_2: &str =
    "do $$ begin raise notice 'contact %', (select email from customers where id = 2); end $$";
/// A notice with a character that is not UTF-8 once in LATIN1.
const NOTICE_LATIN1: &str = "do $$ begin raise notice 'caf% %', chr(233), \
                             (select email from customers where id = 1); end $$";
const COPY_COLUMNS: &str = "customers (id, name, email, card, order_no, ssn, company, notes)";
/// A COPY of a query: its columns are not known, so with column rules
/// configured every field is masked (fail closed).
const COPY_QUERY: &str = "copy (select id, ssn from customers order by id) to stdout";
/// Binary COPY of the whole table (columns from the catalog).
const COPY_BINARY: &str = "copy customers to stdout (format binary)";

/// Every SQL text the test sends through the gateway.
fn client_sql() -> Vec<String> {
    let mut sql: Vec<String> = [
        SELECT_ALL,
        SELECT_ONE,
        SELECT_OTHER,
        SELECT_NOTES,
        SELECT_MANY,
        DUPLICATE_1,
        DUPLICATE_3,
        NOTICE_2,
        NOTICE_LATIN1,
        "set client_encoding = 'LATIN1'",
        "select count(*) from customers",
        "select 'still here'",
    ]
    .map(str::to_owned)
    .into();
    sql.push(copy_text());
    sql.push(copy_csv());
    sql.push(COPY_QUERY.to_owned());
    sql.push(COPY_BINARY.to_owned());
    sql
}

fn copy_text() -> String {
    format!("copy {COPY_COLUMNS} to stdout")
}

fn copy_csv() -> String {
    format!("copy {COPY_COLUMNS} to stdout with (format csv)")
}

/// The table as the client must see it, `|`-separated as `psql -A`
/// prints it; `pin` is what a masked pin looks like (`****` as text, NULL
/// — empty here — as binary).
fn expected_table(pin: &str) -> Vec<String> {
    vec![
        format!("1|Alice Example|<tok1>|****1111|4111111111111112|****|{pin}|****|{NOTES_1}"),
        format!("2|Bob Jones|<tok2>|****0005|1234567890123|****|{pin}|****|no sensitive data here"),
        "3|Carol|<tok3>||5555555555554445|||Globex|prefers phone".to_owned(),
    ]
}

/// Replaces each distinct `tok_…` token by `<tokN>`, numbered in order of
/// first appearance over the whole test: the same value must give the
/// same token in every result, protocol and session.
#[derive(Default)]
struct Tokens(Vec<String>);

impl Tokens {
    const LEN: usize = 4 + 22;

    fn normalize(&mut self, s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        let mut rest = s;
        while let Some(i) = rest.find("tok_") {
            let (before, from) = rest.split_at(i);
            out.push_str(before);
            let token = from.get(..Self::LEN).filter(|t| {
                t[4..]
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
            match token {
                Some(token) => {
                    let n = match self.0.iter().position(|t| t == token) {
                        Some(n) => n,
                        None => {
                            self.0.push(token.to_owned());
                            self.0.len() - 1
                        }
                    };
                    out.push_str(&format!("<tok{}>", n + 1));
                    rest = &from[Self::LEN..];
                }
                None => {
                    out.push_str("tok_");
                    rest = &from[4..];
                }
            }
        }
        out.push_str(rest);
        out
    }
}

fn cell<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// A row of [`SELECT_ALL`] through tokio-postgres, `|`-separated.
fn binary_row(r: &Row) -> String {
    [
        r.get::<_, i32>(0).to_string(),
        r.get::<_, String>(1),
        cell(r.get::<_, Option<String>>(2)),
        cell(r.get::<_, Option<String>>(3)),
        cell(r.get::<_, Option<String>>(4)),
        cell(r.get::<_, Option<String>>(5)),
        cell(r.get::<_, Option<i32>>(6)),
        cell(r.get::<_, Option<String>>(7)),
        cell(r.get::<_, Option<String>>(8)),
    ]
    .join("|")
}

/// A row of [`SELECT_ONE`], `|`-separated.
fn one_row(r: &Row) -> String {
    [
        cell(r.get::<_, Option<String>>(0)),
        cell(r.get::<_, Option<String>>(1)),
        cell(r.get::<_, Option<i32>>(2)),
        cell(r.get::<_, Option<String>>(3)),
    ]
    .join("|")
}

fn expected_one(id: i32) -> &'static str {
    match id {
        1 => {
            "<tok1>|****1111||paid with ****4444, cc <tok2>, ssn ****, order 4111111111111112, account ****-west"
        }
        2 => "<tok2>|****0005||no sensitive data here",
        _ => "<tok3>|||prefers phone",
    }
}

fn grant(gw: &Gateway, purpose: &str) -> (String, String) {
    let token = gw.grant(&GrantArgs {
        purpose: purpose.to_owned(),
        ..GrantArgs::default()
    });
    let jti = decode_claims(&token).expect("a JWT")["jti"]
        .as_str()
        .expect("jti")
        .to_owned();
    (token, jti)
}

#[tokio::test]
async fn masked_for_the_client_and_in_the_store() {
    let pg = PgCluster::start();
    let mut gw = Gateway::start(&pg, {
        let mut options = GatewayOptions::default().with_masking("orders", MASKING);
        options.env.push((
            SECRET_ENV.to_owned(),
            "masking-test-secret-0123456789abcdef".to_owned(),
        ));
        options
    });
    pg.client(User::App)
        .await
        .batch_execute(SETUP)
        .await
        .expect("create and fill the table directly");
    for sql in client_sql() {
        let lower = sql.to_lowercase();
        for value in SENSITIVE {
            assert!(
                !lower.contains(value),
                "client SQL carries {value:?}: {sql}"
            );
        }
    }
    let mut tokens = Tokens::default();

    // ---- psql: text results ----
    let (psql_token, psql_jti) = grant(&gw, "masking: psql select");
    let out = Psql::new(gw.conn_string(&psql_token))
        .command(SELECT_ALL)
        .run();
    let seen: Vec<String> = out
        .assert_success()
        .lines()
        .map(|l| tokens.normalize(l))
        .collect();
    assert_eq!(seen, expected_table("****"), "{out}");
    assert_eq!(tokens.0.len(), 3, "one token per address: {:?}", tokens.0);

    // ---- tokio-postgres: binary results, prepared, pipelined ----
    let (driver_token, driver_jti) = grant(&gw, "masking: driver");
    let (client, conn) = gw.connect(&driver_token).await;
    let rows = client.query(SELECT_ALL, &[]).await.expect("binary select");
    let seen: Vec<String> = rows
        .iter()
        .map(|r| tokens.normalize(&binary_row(r)))
        .collect();
    assert_eq!(seen, expected_table(""), "binary results");

    let one = client.prepare(SELECT_ONE).await.expect("prepare");
    for id in [1, 2, 3, 1, 2, 3] {
        let row = client.query_one(&one, &[&id]).await.expect("execute");
        assert_eq!(
            tokens.normalize(&one_row(&row)),
            expected_one(id),
            "id {id}"
        );
    }

    // Four queries in flight at once: two of them prepare on the way, so
    // Parse/Describe/Sync and Bind/Execute/Sync of different shapes
    // interleave on the wire.
    let (a, b, c, d) = try_join4(
        client.query(&one, &[&2i32]),
        client.query(SELECT_OTHER, &[&1i32]),
        client.query(SELECT_NOTES, &[]),
        client.query(&one, &[&1i32]),
    )
    .await
    .expect("pipelined batch");
    assert_eq!(tokens.normalize(&one_row(&a[0])), expected_one(2));
    let other: Vec<String> = b
        .iter()
        .map(|r| {
            [
                cell(r.get::<_, Option<String>>(0)),
                cell(r.get::<_, Option<i32>>(1)),
                cell(r.get::<_, Option<String>>(2)),
                cell(r.get::<_, Option<String>>(3)),
            ]
            .join("|")
        })
        .collect();
    assert_eq!(other, ["****||****|4111111111111112"]);
    let notes: Vec<String> = c
        .iter()
        .map(|r| {
            tokens.normalize(&format!(
                "{}|{}",
                r.get::<_, String>(0),
                r.get::<_, String>(1)
            ))
        })
        .collect();
    assert_eq!(
        notes,
        [
            format!("{NOTES_1}|Alice Example"),
            "no sensitive data here|Bob Jones".to_owned(),
            "prefers phone|Carol".to_owned(),
        ]
    );
    assert_eq!(tokens.normalize(&one_row(&d[0])), expected_one(1));

    // A value of some 240 kB: many reads, one DataRow.
    let many: String = client
        .query_one(SELECT_MANY, &[&1i32])
        .await
        .expect("a large value")
        .get(0);
    assert!(
        tokens.normalize(&many) == NOTES_1.repeat(2000),
        "the large value is not masked as 2000 copies of row 1's notes ({} bytes)",
        many.len()
    );

    // A unique violation: PostgreSQL quotes the duplicate e-mail address
    // in DETAIL.
    let err = client
        .execute(DUPLICATE_1, &[])
        .await
        .expect_err("a duplicate e-mail address");
    let db = err.as_db_error().expect("a server error");
    assert_eq!(db.code().code(), "23505");
    assert_eq!(
        tokens.normalize(db.detail().expect("a DETAIL")),
        "Key (email)=(<tok1>) already exists."
    );
    let count: i64 = client
        .query_one("select count(*) from customers", &[])
        .await
        .expect("the session goes on")
        .get(0);
    assert_eq!(count, 3);

    // Binary COPY of the whole table: the columns under a rule (ssn, pin)
    // come out NULL, e-mail addresses in text columns are masked in place.
    let stream = client.copy_out(COPY_BINARY).await.expect("binary COPY");
    let chunks: Vec<bytes::Bytes> = stream.try_collect().await.expect("binary COPY data");
    let data = chunks.concat();
    let rows = binary_copy_rows(&data);
    assert_eq!(rows.len(), 3, "{rows:?}");
    for row in &rows {
        assert_eq!(row.len(), 9, "{row:?}");
        assert_eq!((&row[5], &row[6]), (&None, &None), "ssn and pin: {row:?}");
    }
    assert_eq!(
        rows[0][2]
            .as_deref()
            .map(|e| tokens.normalize(&String::from_utf8_lossy(e))),
        Some("<tok1>".to_owned())
    );
    let found = sensitive_in(&data);
    assert!(found.is_empty(), "binary COPY sent {found:?}");
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(10), conn).await;

    // ---- psql: COPY TO STDOUT, text and CSV ----
    let (copy_token, copy_jti) = grant(&gw, "masking: copy");
    let out = Psql::new(gw.conn_string(&copy_token))
        .command(copy_text())
        .command(copy_csv())
        .command(COPY_QUERY)
        .run();
    let seen: Vec<String> = out
        .assert_success()
        .lines()
        .map(|l| tokens.normalize(l))
        .collect();
    let copy_expected = [
        format!("1\tAlice Example\t<tok1>\t****1111\t4111111111111112\t****\t****\t{NOTES_1}"),
        "2\tBob Jones\t<tok2>\t****0005\t1234567890123\t****\t****\tno sensitive data here"
            .to_owned(),
        "3\tCarol\t<tok3>\t\\N\t5555555555554445\t\\N\tGlobex\tprefers phone".to_owned(),
        format!("1,Alice Example,<tok1>,****1111,4111111111111112,****,****,\"{NOTES_1}\""),
        "2,Bob Jones,<tok2>,****0005,1234567890123,****,****,no sensitive data here".to_owned(),
        "3,Carol,<tok3>,,5555555555554445,,Globex,prefers phone".to_owned(),
        "\\N\t\\N".to_owned(),
        "\\N\t\\N".to_owned(),
        "\\N\t\\N".to_owned(),
    ];
    assert_eq!(seen, copy_expected, "{out}");

    // ---- psql: a NOTICE's message and an error's DETAIL ----
    let (errors_token, errors_jti) = grant(&gw, "masking: errors");
    let out = Psql::new(gw.conn_string(&errors_token))
        .arg("-v")
        .arg("ON_ERROR_STOP=0")
        .command(NOTICE_2)
        .command(DUPLICATE_3)
        .command("select 'still here'")
        // Messages that are not UTF-8 are masked too.
        .command("set client_encoding = 'LATIN1'")
        .command(NOTICE_LATIN1)
        .run();
    assert!(out.stdout.contains("still here"), "{out}");
    let stderr = tokens.normalize(&out.stderr);
    for expected in [
        "NOTICE:  contact <tok2>",
        "NOTICE:  caf\u{fffd} <tok1>",
        "ERROR:  duplicate key value violates unique constraint \"customers_email_key\"",
        "DETAIL:  Key (email)=(<tok3>) already exists.",
    ] {
        assert!(stderr.contains(expected), "{expected:?} missing: {out}");
    }
    assert_eq!(tokens.0.len(), 3, "tokens: {:?}", tokens.0);

    // ---- nothing unmasked anywhere in the store ----
    gw.stop();
    let log_found = sensitive_in(gw.log().as_bytes());
    assert!(log_found.is_empty(), "the gateway logged {log_found:?}");
    let store = gw.store_dir();
    scan_store_files(&store);
    {
        let reader = Reader::open(&store).expect("open the store");
        scan_store_events(&reader);

        // ---- the Masked events ----
        let psql_events = events_of(&reader, &psql_jti);
        check_select_masked(&psql_events);
        let errors_events = events_of(&reader, &errors_jti);
        check_error_masked(&errors_events);
        let copy_hits = hits(&events_of(&reader, &copy_jti));
        // Each of the two table COPYs, by column: the ssn column by its
        // rule (Carol's is NULL), cards, e-mail addresses and the
        // dictionary term by the detectors, in their columns and in row
        // 1's notes. The COPY of a query: its 5 non-NULL fields as of
        // unknown origin.
        assert_eq!(
            copy_hits,
            BTreeMap::from([
                (("column:<unknown>".into(), "copy".into()), 5),
                (("column:ssn".into(), "ssn".into()), 4),
                (("detector:card_number".into(), "card".into()), 4),
                (("detector:card_number".into(), "notes".into()), 2),
                (("detector:email".into(), "email".into()), 6),
                (("detector:email".into(), "notes".into()), 2),
                (("detector:us_ssn".into(), "notes".into()), 2),
                (("dictionary:0".into(), "company".into()), 4),
                (("dictionary:0".into(), "notes".into()), 2),
            ]),
            "{copy_hits:?}"
        );
        let driver_hits = hits(&events_of(&reader, &driver_jti));
        assert_eq!(
            driver_hits.get(&("column:*.pin".to_owned(), "pin".to_owned())),
            // SELECT_ALL 2, SELECT_ONE 4 (ids 1 and 2 twice each) and 2 in
            // the batch, SELECT_OTHER 1, the binary COPY 2.
            Some(&11),
            "{driver_hits:?}"
        );
        assert_eq!(
            driver_hits.get(&("detector:email".to_owned(), "error:detail".to_owned())),
            Some(&1),
            "{driver_hits:?}"
        );
    }

    // ---- gatehouse-replay show marks what was masked ----
    check_replay(
        &store,
        &psql_jti,
        &copy_jti,
        &errors_jti,
        &driver_jti,
        &mut tokens,
    );
}

/// The rows of a binary COPY stream: each field's bytes, `None` for NULL.
fn binary_copy_rows(data: &[u8]) -> Vec<Vec<Option<Vec<u8>>>> {
    assert!(
        data.starts_with(b"PGCOPY\n\xff\r\n\0"),
        "no binary COPY header"
    );
    let ext = u32::from_be_bytes(data[15..19].try_into().unwrap()) as usize;
    let mut at = 19 + ext;
    let mut rows = Vec::new();
    loop {
        let n = i16::from_be_bytes(data[at..at + 2].try_into().unwrap());
        at += 2;
        if n == -1 {
            assert_eq!(at, data.len(), "bytes after the trailer");
            return rows;
        }
        let mut row = Vec::new();
        for _ in 0..n {
            let len = i32::from_be_bytes(data[at..at + 4].try_into().unwrap());
            at += 4;
            if len < 0 {
                row.push(None);
            } else {
                row.push(Some(data[at..at + len as usize].to_vec()));
                at += len as usize;
            }
        }
        rows.push(row);
    }
}

// ---- the store scan ----

/// Every file under `dir`.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The sensitive values found in `bytes`: as text in any case, and the
/// pins in binary form.
fn sensitive_in(bytes: &[u8]) -> Vec<String> {
    let lower = bytes.to_ascii_lowercase();
    let mut found: Vec<String> = SENSITIVE
        .iter()
        .filter(|v| contains(&lower, v.as_bytes()))
        .map(|v| (*v).to_owned())
        .collect();
    found.extend(
        PINS.iter()
            .filter(|p| contains(bytes, &p.to_be_bytes()))
            .map(|p| format!("pin {p} in binary")),
    );
    found
}

/// Scans every file of the store directory, byte for byte. The control:
/// values that were not masked are found, so the scan does see recorded
/// frames.
fn scan_store_files(store: &Path) {
    let files = files_under(store);
    assert!(!files.is_empty(), "no files in {}", store.display());
    let mut total = 0usize;
    let mut control = false;
    for path in &files {
        let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        total += bytes.len();
        let found: Vec<String> = sensitive_in(&bytes)
            .into_iter()
            // Four bytes of a pin could occur in any binary file by chance;
            // as text, and in the decoded events, they cannot.
            .filter(|f| !f.ends_with("in binary"))
            .collect();
        assert!(
            found.is_empty(),
            "{} holds unmasked values: {found:?}",
            path.display()
        );
        control |= contains(&bytes, b"4111111111111112") && contains(&bytes, b"Alice Example");
    }
    assert!(
        control,
        "the unmasked order number and name are in no file of {} ({} files, {total} bytes): \
         the scan would not see recorded frames",
        store.display(),
        files.len()
    );
}

/// Scans every stored event of every session: its stored bytes (the
/// value fjall returns, decompressed) and, decoded, the bytes of every
/// Frame event and the debug form of every other event.
fn scan_store_events(reader: &Reader) {
    let mut events = 0;
    let mut frames = 0;
    let mut control = false;
    for summary in reader.sessions() {
        let summary = summary.expect("session summary");
        assert!(
            sensitive_in(format!("{summary:?}").as_bytes()).is_empty(),
            "{summary:?}"
        );
        for raw in reader.raw_events(summary.id) {
            let raw = raw.expect("stored event");
            events += 1;
            let found = sensitive_in(&raw.value);
            assert!(
                found.is_empty(),
                "event {} #{} holds {found:?}",
                summary.id,
                raw.seq
            );
        }
        for event in reader.events(summary.id) {
            let event = event.expect("event");
            let found = match &event.body {
                Body::Frame(f) => {
                    frames += 1;
                    control |= contains(&f.bytes, b"4111111111111112");
                    sensitive_in(&f.bytes)
                }
                other => sensitive_in(format!("{other:?}").as_bytes()),
            };
            assert!(
                found.is_empty(),
                "event {} #{} holds {found:?}: {:?}",
                summary.id,
                event.seq,
                event.body
            );
        }
    }
    assert!(
        events > 0 && frames > 0 && control,
        "{events} events, {frames} frames"
    );
}

// ---- the Masked events ----

/// The events of the one session grant `jti` opened.
fn events_of(reader: &Reader, jti: &str) -> Vec<Event> {
    let ids: Vec<_> = reader
        .sessions()
        .map(|s| s.expect("summary"))
        .filter(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
        .map(|s| s.id)
        .collect();
    assert_eq!(ids.len(), 1, "sessions of {jti}: {ids:?}");
    reader.events(ids[0]).map(|e| e.expect("event")).collect()
}

/// Each `Masked` event with the `Frame` event right after it, which must
/// go to the client.
fn masked_batches(events: &[Event]) -> Vec<(&Masked, &Bytes)> {
    let mut out = Vec::new();
    for (i, e) in events.iter().enumerate() {
        if let Body::Masked(m) = &e.body {
            match events.get(i + 1).map(|n| &n.body) {
                Some(Body::Frame(f)) if f.dir == Direction::ToClient => out.push((m, &f.bytes)),
                other => panic!("a Masked event is followed by {other:?}"),
            }
        }
    }
    out
}

/// Hits summed by (rule, column) over a session's `Masked` events.
fn hits(events: &[Event]) -> BTreeMap<(String, String), u32> {
    let mut sum = BTreeMap::new();
    for (m, _) in masked_batches(events) {
        for h in &m.hits {
            *sum.entry((h.rule.clone(), h.column.clone())).or_insert(0) += h.count;
        }
    }
    sum
}

/// psql's SELECT_ALL: the hits per rule and column, and the masked cells
/// of each DataRow (keyed by its id).
fn check_select_masked(events: &[Event]) {
    let key = |r: &str, c: &str| (r.to_owned(), c.to_owned());
    assert_eq!(
        hits(events),
        BTreeMap::from([
            (key("column:ssn", "ssn"), 2),
            (key("column:*.pin", "pin"), 2),
            (key("detector:card_number", "card"), 2),
            (key("detector:card_number", "notes"), 1),
            (key("detector:email", "email"), 3),
            (key("detector:email", "notes"), 1),
            (key("detector:us_ssn", "notes"), 1),
            (key("dictionary:0", "company"), 2),
            (key("dictionary:0", "notes"), 1),
        ])
    );
    let mut cells: BTreeMap<String, BTreeSet<u16>> = BTreeMap::new();
    for (m, bytes) in masked_batches(events) {
        let frames: Vec<_> = frame::split(bytes).collect();
        for c in &m.cells {
            let f = &frames[c.frame as usize];
            let backend::Message::DataRow(values) = backend::Message::parse(f).expect("a frame")
            else {
                panic!("cell {c:?} is not in a DataRow");
            };
            assert!((c.column as usize) < values.len(), "{c:?}");
            let id = String::from_utf8(values[0].expect("id").to_vec()).expect("UTF-8");
            assert!(
                cells.entry(id).or_default().insert(c.column),
                "twice: {c:?}"
            );
        }
    }
    assert_eq!(
        cells,
        BTreeMap::from([
            ("1".to_owned(), BTreeSet::from([2, 3, 5, 6, 7, 8])),
            ("2".to_owned(), BTreeSet::from([2, 3, 5, 6, 7])),
            ("3".to_owned(), BTreeSet::from([2])),
        ])
    );
}

/// psql's NOTICEs and unique violation: the message of the first, the
/// DETAIL of the second, the message of the LATIN1 one, named by field
/// code.
fn check_error_masked(events: &[Event]) {
    let key = |r: &str, c: &str| (r.to_owned(), c.to_owned());
    assert_eq!(
        hits(events),
        BTreeMap::from([
            (key("detector:email", "error:message"), 2),
            (key("detector:email", "error:detail"), 1),
        ])
    );
    let mut fields = Vec::new();
    for (m, bytes) in masked_batches(events) {
        let frames: Vec<_> = frame::split(bytes).collect();
        for c in &m.cells {
            fields.push((frames[c.frame as usize].tag(), c.column));
        }
    }
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            (b'E', u16::from(b'D')),
            (b'N', u16::from(b'M')),
            (b'N', u16::from(b'M'))
        ]
    );
}

// ---- gatehouse-replay ----

fn replay_show(store: &Path, session: &str, json: bool) -> String {
    let tool = Gateway::binary().with_file_name("gatehouse-replay");
    let mut cmd = Command::new(&tool);
    cmd.args(["show", session, "--store"]).arg(store);
    if json {
        cmd.arg("--json");
    }
    let out = run(&mut cmd, Duration::from_secs(60));
    assert!(out.status.success(), "{}", render(&out));
    String::from_utf8(out.stdout).expect("UTF-8")
}

fn session_id(reader: &Reader, jti: &str) -> String {
    reader
        .sessions()
        .map(|s| s.expect("summary"))
        .find(|s| s.opened.as_ref().is_some_and(|o| o.jti == jti))
        .expect("a session")
        .id
        .to_string()
}

/// `gatehouse-replay show`: the mark after every masked cell and nowhere
/// else, the counts, the COPY lines, the error fields; `--json` says
/// `masked: true`.
fn check_replay(
    store: &Path,
    psql_jti: &str,
    copy_jti: &str,
    errors_jti: &str,
    driver_jti: &str,
    tokens: &mut Tokens,
) {
    let ids: Vec<String> = {
        let reader = Reader::open(store).expect("open the store");
        [psql_jti, copy_jti, errors_jti, driver_jti]
            .iter()
            .map(|jti| session_id(&reader, jti))
            .collect()
    };
    let m = " ⟨masked⟩";

    // The psql SELECT: every cell of the table, parsed back.
    let show = tokens.normalize(&replay_show(store, &ids[0], false));
    let rows: Vec<Vec<String>> = show
        .lines()
        .filter(|l| l.contains(" | ") && !l.contains(" name "))
        .map(|l| l.split(" | ").map(|c| c.trim().to_owned()).collect())
        .collect();
    assert_eq!(
        rows,
        [
            vec![
                "1".to_owned(),
                "Alice Example".into(),
                format!("<tok1>{m}"),
                format!("****1111{m}"),
                "4111111111111112".into(),
                format!("****{m}"),
                format!("****{m}"),
                format!("****{m}"),
                format!("{NOTES_1}{m}"),
            ],
            vec![
                "2".to_owned(),
                "Bob Jones".into(),
                format!("<tok2>{m}"),
                format!("****0005{m}"),
                "1234567890123".into(),
                format!("****{m}"),
                format!("****{m}"),
                format!("****{m}"),
                "no sensitive data here".into(),
            ],
            vec![
                "3".to_owned(),
                "Carol".into(),
                format!("<tok3>{m}"),
                String::new(),
                "5555555555554445".into(),
                String::new(),
                String::new(),
                "Globex".into(),
                "prefers phone".into(),
            ],
        ],
        "{show}"
    );
    for expected in [
        "(3 rows; 12 cells masked)   SELECT 3",
        "  masked: column:*.pin in pin ×2, column:ssn in ssn ×2, \
         detector:card_number in card ×2, detector:card_number in notes ×1, \
         detector:email in email ×3, detector:email in notes ×1, \
         detector:us_ssn in notes ×1, dictionary:0 in company ×2, dictionary:0 in notes ×1",
    ] {
        assert!(show.contains(expected), "{expected:?} missing:\n{show}");
    }

    // COPY: every line had something masked.
    let show = tokens.normalize(&replay_show(store, &ids[1], false));
    for expected in [
        format!("1\tAlice Example\t<tok1>\t****1111\t4111111111111112\t****\t****\t{NOTES_1}{m}"),
        format!("3\tCarol\t<tok3>\t\\N\t5555555555554445\t\\N\tGlobex\tprefers phone{m}"),
        format!("3,Carol,<tok3>,,5555555555554445,,Globex,prefers phone{m}"),
    ] {
        assert!(show.contains(&expected), "{expected:?} missing:\n{show}");
    }
    // The two table COPYs and the COPY of a query (every line masked).
    assert_eq!(show.matches("; 3 masked)").count(), 3, "{show}");

    // The NOTICE's message and the error's DETAIL, and not the error's
    // message, which had nothing to mask.
    let show = tokens.normalize(&replay_show(store, &ids[2], false));
    for expected in [
        format!("NOTICE 00000: contact <tok2>{m}"),
        format!("NOTICE 00000: caf\u{fffd} <tok1>{m}"),
        format!("DETAIL:  Key (email)=(<tok3>) already exists.{m}"),
        "unique constraint \"customers_email_key\"   ".to_owned(),
    ] {
        assert!(show.contains(&expected), "{expected:?} missing:\n{show}");
    }

    // The driver's binary rows, as JSON.
    let json: serde_json::Value =
        serde_json::from_str(&replay_show(store, &ids[3], true)).expect("JSON");
    let first = &json["items"][0]["results"][0];
    assert_eq!(first["masked_cells"], 12, "{first:#}");
    let row = &first["rows"][0];
    assert_eq!(
        row[1],
        serde_json::json!({"binary": hex(b"Alice Example"), "text": "Alice Example"})
    );
    assert_eq!(
        row[3],
        serde_json::json!({"masked": true, "value": {"binary": hex(b"****1111"), "text": "****1111"}})
    );
    assert_eq!(
        row[6],
        serde_json::json!({"masked": true, "value": null}),
        "the pin"
    );
    assert_eq!(row[2]["masked"], true);
    assert!(row[4].get("masked").is_none(), "the order number: {row:#}");
    // The pipelined query kept its own columns (both its Bind and the
    // next query's used the unnamed portal before either's rows came).
    let other = json["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["request"]["text"] == SELECT_OTHER)
        .expect("the pipelined SELECT_OTHER");
    let names: Vec<&str> = other["results"][0]["columns"]
        .as_array()
        .expect("columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["ssn", "pin", "company", "order_no"], "{other:#}");
    assert_eq!(other["results"][0]["masked_cells"], 3, "{other:#}");
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::from("\\x");
    for b in bytes {
        s.push_str(&format!("{b:02x}"));
    }
    s
}
