//! Transcripts rebuilt from a stored session: the model statement by
//! statement, then spot checks of the rendered text.

mod common;

use common::*;
use gatehouse_core::event::{CloseReason, Direction};
use gatehouse_replay::render::render_to_string;
use gatehouse_replay::transcript::{
    Entry, ItemKind, Request, SessionStatus, Transcript, TranscriptBuilder, TranscriptOptions,
    Value,
};
use gatehouse_replay::{cli, load_transcript};

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

/// One session exercising every kind of statement, as a gateway records
/// it: frames batched per read, a semantic event here and there.
fn busy_session() -> SessionBuilder {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened().greeting();

    // 1. Simple query with rows. The semantic Statement event says
    // something else: the transcript must follow the frames.
    s.wait(3_000)
        .statement_event("NOT WHAT WAS SENT")
        .up(&[query("SELECT id, total FROM invoices")]);
    s.wait(1_200).down(&[
        row_description(&[("id", INT4, 0), ("total", NUMERIC, 0)]),
        data_row(&[Some(b"42"), Some(b"10.00")]),
        data_row(&[Some(b"43"), None]),
        complete("SELECT 2"),
        ready(),
    ]);

    // 2. Extended protocol with text, NULL and binary parameters.
    s.wait(5_000).up(&[
        parse(
            "",
            "SELECT id, total FROM invoices WHERE id = $1 OR $2 IS NULL OR $3 = 0",
        ),
        bind(
            "",
            "",
            &[(0, Some(b"42")), (0, None), (1, Some(&[0, 0, 0, 42]))],
            &[],
        ),
        describe(b'P', ""),
        execute("", 0),
        sync(),
    ]);
    s.wait(800).down(&[
        bare(b'1'),
        bare(b'2'),
        row_description(&[("id", INT4, 0), ("total", NUMERIC, 0)]),
        data_row(&[Some(b"42"), Some(b"10.00")]),
        complete("SELECT 1"),
        ready(),
    ]);

    // 3. An error.
    s.wait(2_000).up(&[query("select * from nope")]);
    s.wait(400).down(&[
        error(
            "42P01",
            "relation \"nope\" does not exist",
            None,
            Some("check the search_path"),
        ),
        ready(),
    ]);

    // 4. Several statements in one query string, the last one failing.
    s.wait(2_000).up(&[query(
        "select 1 as a; update t set x = 1; select 1/0; select 3",
    )]);
    s.wait(100).down(&[
        row_description(&[("a", INT4, 0)]),
        data_row(&[Some(b"1")]),
        complete("SELECT 1"),
    ]);
    s.wait(200).down(&[
        complete("UPDATE 3"),
        error("22012", "division by zero", None, None),
        ready(),
    ]);

    // 5. COPY out, the data split across events.
    s.wait(2_000).up(&[query("COPY invoices TO STDOUT")]);
    s.wait(300).down(&[
        copy_response(b'H', 2),
        copy_data(b"42\t10.00\n"),
        copy_data(b"43\t"),
    ]);
    s.wait(300)
        .down(&[copy_data(b"\\N\n"), bare(b'c'), complete("COPY 2"), ready()]);

    // 6. COPY in.
    s.wait(2_000).up(&[query("COPY staging FROM STDIN")]);
    s.wait(100).down(&[copy_response(b'G', 1)]);
    s.wait(100).up(&[
        copy_data(b"alpha\nbe"),
        copy_data(b"ta\ngamma"),
        copy_done(),
    ]);
    s.wait(100).down(&[complete("COPY 3"), ready()]);

    // 7. LISTEN/NOTIFY: one notification during a statement, one idle.
    s.wait(2_000).up(&[query("LISTEN jobs")]);
    s.wait(100).down(&[complete("LISTEN"), ready()]);
    s.wait(1_000).up(&[query("NOTIFY jobs, 'hello'")]);
    s.wait(100).down(&[
        complete("NOTIFY"),
        notification(4242, "jobs", "hello"),
        ready(),
    ]);
    s.wait(50_000)
        .down(&[notification(777, "jobs", "from elsewhere")]);

    // 8. A pipeline: three Executes before one Sync; the second fails at
    // Parse, so the third is skipped.
    s.wait(2_000).up(&[
        parse("s1", "select 1"),
        bind("p1", "s1", &[], &[]),
        execute("p1", 0),
        parse("", "select nope"),
        bind("", "", &[], &[]),
        execute("", 0),
        parse("s3", "select 3"),
        bind("", "s3", &[], &[]),
        execute("", 0),
        sync(),
    ]);
    s.wait(700).down(&[
        bare(b'1'),
        bare(b'2'),
        data_row(&[Some(b"1")]),
        complete("SELECT 1"),
        error("42703", "column \"nope\" does not exist", None, None),
        ready(),
    ]);

    s.wait(24_500).up(&[encode_terminate()]);
    s.closed(CloseReason::ClientTerminated);
    s
}

fn encode_terminate() -> gatehouse_core::pg::frame::Frame {
    gatehouse_core::pg::encode::terminate()
}

fn stored_transcript(s: &SessionBuilder, opts: TranscriptOptions) -> Transcript {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &[s]);
    let reader = cli::open_store(dir.path()).unwrap();
    let id = cli::resolve_session(&reader, &sid(T0_MS, 1).to_string()[..13]).unwrap();
    load_transcript(&reader, id, opts).unwrap().unwrap()
}

fn entries(t: &Transcript) -> Vec<&Entry> {
    t.statements().collect()
}

#[test]
fn header_comes_from_opened_and_closed() {
    let s = busy_session();
    let t = stored_transcript(&s, TranscriptOptions::default());
    let h = &t.header;
    assert_eq!(h.session, sid(T0_MS, 1).to_string());
    assert_eq!(h.subject.as_deref(), Some("agent:reconciler"));
    assert_eq!(h.target.as_deref(), Some("orders"));
    assert_eq!(h.purpose.as_deref(), Some("reconcile invoices"));
    assert_eq!(h.ticket.as_deref(), Some("OPS-1234"));
    assert_eq!(h.jti.as_deref(), Some("jti-1"));
    assert_eq!(h.client_addr.as_deref(), Some("127.0.0.1:51234"));
    assert_eq!(h.tls.as_ref().unwrap().version, "TLSv1.3");
    assert_eq!(h.started_us, s.start);
    assert_eq!(h.duration_us, s.t - s.start);
    assert_eq!(h.events, s.events.len() as u64);
    assert!(matches!(
        h.status,
        SessionStatus::Closed {
            reason: "client_terminated",
            ..
        }
    ));
    assert_eq!(
        h.parameters,
        [
            ("server_version".to_owned(), "17.2".to_owned()),
            ("TimeZone".to_owned(), "UTC".to_owned())
        ]
    );
}

#[test]
fn statements_are_rebuilt_from_frames() {
    let t = stored_transcript(&busy_session(), TranscriptOptions::default());
    let e = entries(&t);
    assert_eq!(e.len(), 11, "{e:#?}");

    // 1. Simple query: text from the frame, not the Statement event.
    assert_eq!(
        e[0].request,
        Request::Simple {
            text: "SELECT id, total FROM invoices".into()
        }
    );
    let r = &e[0].results;
    assert_eq!(r.len(), 1);
    let names: Vec<&str> = r[0].columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["id", "total"]);
    assert_eq!(
        r[0].rows,
        [
            vec![text("42"), text("10.00")],
            vec![text("43"), Value::Null]
        ]
    );
    assert_eq!(r[0].tag.as_deref(), Some("SELECT 2"));
    assert_eq!((r[0].rows_received, r[0].rows_affected), (2, Some(2)));
    assert_eq!(e[0].duration_us, Some(1_200));

    // 2. Extended protocol with parameters.
    let Request::Extended {
        text: sql, params, ..
    } = &e[1].request
    else {
        panic!("{:?}", e[1].request)
    };
    assert_eq!(
        sql.as_deref(),
        Some("SELECT id, total FROM invoices WHERE id = $1 OR $2 IS NULL OR $3 = 0")
    );
    let shown: Vec<(&str, String)> = params.iter().map(|p| (p.format, p.literal())).collect();
    assert_eq!(
        shown,
        [
            ("text", "'42'".to_owned()),
            ("text", "NULL".to_owned()),
            ("binary", "'\\x0000002a' (binary)".to_owned()),
        ]
    );
    assert_eq!(params[2].value.cell(), "\\x0000002a", "no type known: hex");
    assert_eq!(e[1].results[0].rows, [vec![text("42"), text("10.00")]]);
    assert_eq!(e[1].results[0].tag.as_deref(), Some("SELECT 1"));
    assert_eq!(e[1].duration_us, Some(800));

    // 3. Error with its hint and time.
    let err = e[2].results[0].error.as_ref().unwrap();
    assert_eq!(
        (
            err.severity.as_str(),
            err.code.as_str(),
            err.message.as_str()
        ),
        ("ERROR", "42P01", "relation \"nope\" does not exist")
    );
    assert_eq!(err.hint.as_deref(), Some("check the search_path"));
    assert_eq!(e[2].duration_us, Some(400));

    // 4. One query string, one block per statement result, the failure last.
    assert_eq!(
        e[3].request,
        Request::Simple {
            text: "select 1 as a; update t set x = 1; select 1/0; select 3".into()
        }
    );
    let r = &e[3].results;
    assert_eq!(r.len(), 3, "{r:#?}");
    assert_eq!(
        (r[0].tag.as_deref(), r[0].rows.len()),
        (Some("SELECT 1"), 1)
    );
    assert_eq!(
        (r[1].tag.as_deref(), r[1].rows_affected),
        (Some("UPDATE 3"), Some(3))
    );
    assert!(r[1].columns.is_empty());
    assert_eq!(r[2].error.as_ref().unwrap().code, "22012");
    let start = r[0].done_us.unwrap() - 100;
    assert_eq!(r[2].done_us, Some(start + 300));
    assert_eq!(e[3].duration_us, Some(300));

    // 5. COPY out: lines joined across messages and events.
    let copy = e[4].results[0].copy.as_ref().unwrap();
    assert_eq!((copy.direction, copy.format), ("out", "text"));
    assert_eq!(copy.lines, ["42\t10.00", "43\t\\N"]);
    assert_eq!(copy.lines_received, 2);
    assert_eq!(e[4].results[0].tag.as_deref(), Some("COPY 2"));

    // 6. COPY in: the client's data, the last line unterminated.
    let copy = e[5].results[0].copy.as_ref().unwrap();
    assert_eq!(copy.direction, "in");
    assert_eq!(copy.lines, ["alpha", "beta", "gamma"]);
    assert_eq!(e[5].results[0].rows_affected, Some(3));

    // 7. The notification that arrived during NOTIFY belongs to it.
    assert_eq!(e[6].results[0].tag.as_deref(), Some("LISTEN"));
    let n = &e[7].results[0].notifications;
    assert_eq!(n.len(), 1);
    assert_eq!(
        (n[0].channel.as_str(), n[0].payload.as_str(), n[0].pid),
        ("jobs", "hello", 4242)
    );

    // 8. The pipeline: results matched per Execute.
    let Request::Extended {
        text: sql,
        statement,
        portal,
        ..
    } = &e[8].request
    else {
        panic!()
    };
    assert_eq!(
        (sql.as_deref(), statement.as_str(), portal.as_str()),
        (Some("select 1"), "s1", "p1")
    );
    assert_eq!(e[8].results[0].rows, [vec![text("1")]]);
    assert_eq!(e[8].results[0].tag.as_deref(), Some("SELECT 1"));
    assert!(!e[8].skipped);
    let Request::Extended { text: sql, .. } = &e[9].request else {
        panic!()
    };
    assert_eq!(sql.as_deref(), Some("select nope"));
    assert_eq!(e[9].results[0].error.as_ref().unwrap().code, "42703");
    assert!(!e[9].skipped, "the failing statement ran");
    let Request::Extended { text: sql, .. } = &e[10].request else {
        panic!()
    };
    assert_eq!(sql.as_deref(), Some("select 3"));
    assert!(e[10].skipped && e[10].results.is_empty());
}

#[test]
fn idle_notification_is_its_own_item_in_time_order() {
    let t = stored_transcript(&busy_session(), TranscriptOptions::default());
    let kinds: Vec<&str> = t
        .items
        .iter()
        .map(|i| match &i.kind {
            ItemKind::Statement(_) => "statement",
            ItemKind::Notification(_) => "notification",
            ItemKind::Malformed { .. } => "malformed",
            _ => "other",
        })
        .collect();
    let pos = kinds.iter().position(|k| *k == "notification").unwrap();
    assert_eq!(pos, 8, "after NOTIFY, before the pipeline: {kinds:?}");
    let ItemKind::Notification(n) = &t.items[pos].kind else {
        unreachable!()
    };
    assert_eq!((n.payload.as_str(), n.pid), ("from elsewhere", 777));
    assert!(!kinds.contains(&"malformed"));
    let times: Vec<i64> = t.items.iter().map(|i| i.at_us).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
}

#[test]
fn rendered_text_reads_like_psql() {
    let s = busy_session();
    let out = render_to_string(&stored_transcript(&s, TranscriptOptions::default()));
    let id = sid(T0_MS, 1).to_string();
    for expected in [
        format!(
            "session {id}  agent:reconciler → orders   purpose: reconcile invoices, OPS-1234"
        ),
        "  grant jti=jti-1  use 1/1  client 127.0.0.1:51234  TLSv1.3  started 2026-11-25T18:40:01.123Z  duration 0.100s  closed: client terminated".into(),
        "[+0.003s] SELECT id, total FROM invoices".into(),
        "           id | total".into(),
        "          ----+-------".into(),
        "           42 | 10.00".into(),
        "           43 |".into(),
        "          (2 rows)   SELECT 2   1.2 ms".into(),
        "          $1 = '42'".into(),
        "          $2 = NULL".into(),
        "          $3 = '\\x0000002a' (binary)".into(),
        "[+0.012s] select * from nope".into(),
        "          ERROR 42P01: relation \"nope\" does not exist   0.4 ms".into(),
        "          HINT:  check the search_path".into(),
        "          UPDATE 3   0.2 ms".into(),
        "          ERROR 22012: division by zero   0.0 ms".into(),
        "          COPY out, text format".into(),
        "          42\t10.00".into(),
        "          (2 lines, 15 B)   COPY 2   0.6 ms".into(),
        "          notification on \"jobs\": \"hello\" (from backend pid 4242)".into(),
        "          (statement \"s1\", portal \"p1\")".into(),
        "          (skipped: an earlier message in its pipeline failed)".into(),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in\n{out}");
    }
    assert!(!out.contains("NOT WHAT WAS SENT"));
}

#[test]
fn large_results_are_capped_unless_all_rows() {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened().greeting();
    s.wait(1_000)
        .up(&[query("select g from generate_series(1, 100000) g")]);
    let mut frames = vec![row_description(&[("g", INT4, 0)])];
    for i in 1..=100_000u32 {
        frames.push(data_row(&[Some(i.to_string().as_bytes())]));
    }
    frames.push(complete("SELECT 100000"));
    frames.push(ready());
    // As several reads.
    for chunk in frames.chunks(7_000) {
        s.wait(10).down(chunk);
    }
    s.closed(CloseReason::ClientTerminated);

    let capped = stored_transcript(&s, TranscriptOptions::default());
    let block = &entries(&capped)[0].results[0];
    assert_eq!((block.rows.len(), block.rows_received), (100, 100_000));
    assert_eq!(block.rows[99], [text("100")]);
    let out = render_to_string(&capped);
    assert!(out.contains("… 99 900 more rows"), "{out}");
    assert!(out.contains("(100 000 rows)   SELECT 100000"), "{out}");

    let all = stored_transcript(&s, TranscriptOptions::all_rows());
    let block = &entries(&all)[0].results[0];
    assert_eq!(block.rows.len(), 100_000);
    assert!(!render_to_string(&all).contains("more rows"));
}

#[test]
fn refused_session_shows_the_refusal() {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.refused();
    s.down(&[gatehouse_core::pg::encode::error_response(
        "FATAL",
        "28000",
        "the grant expired at 2026-11-25T18:00:00Z",
        None,
    )]);
    s.closed(CloseReason::Refused);
    let t = stored_transcript(&s, TranscriptOptions::default());
    assert!(matches!(
        &t.header.status,
        SessionStatus::Refused { reason: "expired", message, .. } if message.contains("expired")
    ));
    assert_eq!(t.header.subject.as_deref(), Some("agent:late"));
    assert_eq!(t.items.len(), 1);
    let ItemKind::Error(d) = &t.items[0].kind else {
        panic!("{:?}", t.items)
    };
    assert_eq!((d.severity.as_str(), d.code.as_str()), ("FATAL", "28000"));
    let out = render_to_string(&t);
    assert!(out.contains("agent:late → orders"), "{out}");
    assert!(out.contains("refused: grant expired"), "{out}");
    assert!(
        out.contains("[+0.000s] FATAL 28000: the grant expired"),
        "{out}"
    );
}

#[test]
fn malformed_frames_and_hostile_text_are_contained() {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened().greeting();
    // A query whose text would clear the auditor's terminal.
    s.up(&[query("select '\u{1b}[2J'")]);
    s.down(&[
        row_description(&[("x", TEXT, 0)]),
        data_row(&[Some(b"\x1b]0;pwned\x07")]),
        complete("SELECT 1"),
        ready(),
    ]);
    // A truncated DataRow, an unknown client message, a partial frame.
    s.down(&[gatehouse_core::pg::encode::frame(b'D', |b| {
        b.extend_from_slice(&[0, 5])
    })]);
    s.up(&[gatehouse_core::pg::encode::frame(b'%', |_| {})]);
    s.raw(Direction::ToClient, b"C\x00\x00\x01\x00SEL".to_vec());
    s.raw(Direction::ToUpstream, b"Q\x00\x00\x00\x02".to_vec());
    let t = TranscriptBuilder::build(
        s.events[0].session,
        TranscriptOptions::default(),
        &s.decoded(),
    );
    let malformed = t
        .items
        .iter()
        .filter(|i| matches!(i.kind, ItemKind::Malformed { .. }))
        .count();
    assert_eq!(malformed, 4, "{:#?}", t.items);
    let out = render_to_string(&t);
    assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{out:?}");
    assert!(out.contains("select '\\u{1b}[2J'"), "{out}");
    assert!(
        out.contains("<malformed frame> to client: malformed DataRow message"),
        "{out}"
    );
    assert!(out.contains("unknown client message (type '%')"), "{out}");
    assert!(
        out.contains("trailing byte(s) are not a whole frame"),
        "{out}"
    );
}

#[test]
fn arbitrary_bytes_never_panic() {
    // A small deterministic generator: frames with plausible tags and
    // random bodies, and raw garbage, in both directions.
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let tags = b"QPBDESHdcfXTDCEIAnsZ1230GHWVtRK";
    for _ in 0..300 {
        let mut s = SessionBuilder::new(sid(T0_MS, 1));
        s.opened();
        for _ in 0..20 {
            let dir = if next() % 2 == 0 {
                Direction::ToUpstream
            } else {
                Direction::ToClient
            };
            let mut bytes = Vec::new();
            for _ in 0..(next() % 4) {
                let tag = tags[(next() % tags.len() as u64) as usize];
                let len = (next() % 24) as usize;
                let body: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                bytes.extend_from_slice(
                    gatehouse_core::pg::encode::frame(tag, |b| b.extend_from_slice(&body)).bytes(),
                );
            }
            if next() % 5 == 0 {
                bytes.extend((0..next() % 9).map(|_| next() as u8));
            }
            s.raw(dir, bytes);
        }
        let t = TranscriptBuilder::build(
            s.events[0].session,
            TranscriptOptions::default(),
            &s.decoded(),
        );
        let _ = render_to_string(&t);
        let _ = serde_json::to_string(&t).unwrap();
    }
}

#[test]
fn json_form_is_the_model() {
    let t = stored_transcript(&busy_session(), TranscriptOptions::default());
    let v: serde_json::Value = serde_json::to_value(&t).unwrap();
    assert_eq!(v["header"]["status"]["state"], "closed");
    let first = &v["items"][0];
    assert_eq!(first["kind"], "statement");
    assert_eq!(first["request"]["protocol"], "simple");
    assert_eq!(
        first["results"][0]["rows"][1],
        serde_json::json!(["43", null])
    );
    assert_eq!(
        v["items"][1]["request"]["params"][2],
        serde_json::json!({"format": "binary", "type_oid": 0, "value": {"binary": "\\x0000002a"}})
    );
}

/// tokio-postgres: prepare (Parse, Describe S, Sync) in one round trip,
/// then Bind with binary parameters and binary results.
#[test]
fn binary_values_of_known_types_are_decoded() {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened().greeting();
    s.wait(1_000).up(&[
        parse(
            "s0",
            "select customer as who, total as amount from invoices where id = $1",
        ),
        describe(b'S', "s0"),
        sync(),
    ]);
    let param_description = gatehouse_core::pg::encode::frame(b't', |b| {
        b.extend_from_slice(&1i16.to_be_bytes());
        b.extend_from_slice(&INT4.to_be_bytes());
    });
    s.wait(500).down(&[
        bare(b'1'),
        param_description,
        row_description(&[("who", TEXT, 0), ("amount", NUMERIC, 0)]),
        ready(),
    ]);
    s.wait(1_000).up(&[
        bind("", "s0", &[(1, Some(&3i32.to_be_bytes()))], &[1]),
        execute("", 0),
        sync(),
    ]);
    // numeric 4500.00: 1 digit, weight 0, positive, dscale 2, [4500].
    let numeric: &[u8] = &[0, 1, 0, 0, 0, 0, 0, 2, 0x11, 0x94];
    s.wait(700).down(&[
        bare(b'2'),
        data_row(&[Some(b"initech"), Some(numeric)]),
        complete("SELECT 1"),
        ready(),
    ]);
    let t = TranscriptBuilder::build(
        s.events[0].session,
        TranscriptOptions::default(),
        &s.decoded(),
    );
    let e = entries(&t);
    assert_eq!(e.len(), 1, "the prepare round trip is not a statement");
    let Request::Extended {
        text: sql, params, ..
    } = &e[0].request
    else {
        panic!()
    };
    assert!(
        sql.as_deref()
            .unwrap()
            .starts_with("select customer as who")
    );
    assert_eq!(
        (params[0].type_oid, params[0].literal()),
        (INT4, "'3' (binary)".to_owned())
    );
    let block = &e[0].results[0];
    assert_eq!(
        block.rows[0],
        [
            Value::Binary {
                binary: "\\x696e6974656368".into(),
                text: Some("initech".into())
            },
            Value::Binary {
                binary: "\\x00010000000000021194".into(),
                text: Some("4500.00".into())
            },
        ]
    );
    let out = render_to_string(&t);
    for expected in [
        "          $1 = '3' (binary)",
        "             who   | amount",
        "           initech | 4500.00",
        "          (1 row)   SELECT 1   0.7 ms",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
}

/// tokio-postgres with several queries in flight: both Binds of the
/// unnamed portal are on the wire before the first one's rows come back;
/// each Execute's rows still have their own statement's columns and types.
#[test]
fn pipelined_binds_of_the_unnamed_portal_keep_their_columns() {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened().greeting();
    s.wait(1_000).up(&[
        parse("s1", "select n from a"),
        describe(b'S', "s1"),
        sync(),
        parse("s2", "select t, m from b"),
        describe(b'S', "s2"),
        sync(),
    ]);
    s.wait(500).down(&[
        bare(b'1'),
        row_description(&[("n", INT4, 0)]),
        ready(),
        bare(b'1'),
        row_description(&[("t", TEXT, 0), ("m", INT4, 0)]),
        ready(),
    ]);
    s.wait(1_000).up(&[
        bind("", "s1", &[], &[1]),
        execute("", 0),
        sync(),
        bind("", "s2", &[], &[1]),
        execute("", 0),
        sync(),
    ]);
    s.wait(700).down(&[
        bare(b'2'),
        data_row(&[Some(&7i32.to_be_bytes())]),
        complete("SELECT 1"),
        ready(),
        bare(b'2'),
        data_row(&[Some(b"x"), Some(&8i32.to_be_bytes())]),
        complete("SELECT 1"),
        ready(),
    ]);
    let t = TranscriptBuilder::build(
        s.events[0].session,
        TranscriptOptions::default(),
        &s.decoded(),
    );
    let e = entries(&t);
    assert_eq!(e.len(), 2);
    let names = |e: &Entry| -> Vec<String> {
        e.results[0]
            .columns
            .iter()
            .map(|c| c.name.clone())
            .collect()
    };
    assert_eq!(names(e[0]), ["n"]);
    assert_eq!(names(e[1]), ["t", "m"]);
    assert_eq!(e[0].results[0].rows[0][0].cell(), "7");
    assert_eq!(e[1].results[0].rows[0][0].cell(), "x");
    assert_eq!(e[1].results[0].rows[0][1].cell(), "8");
}
