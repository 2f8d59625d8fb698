//! Masked values in a transcript: the cells a recorded `Masked` event names
//! are marked in the rows, COPY lines and error fields of the `Frame` event
//! right after it — and only that one — in the model, the text and the
//! JSON; the header sums up the hits.

mod common;

use common::*;
use gatehouse_core::event::CloseReason;
use gatehouse_core::pg::encode;
use gatehouse_replay::render::{MASKED_MARK, render_to_string};
use gatehouse_replay::transcript::{
    Entry, MaskTotal, Transcript, TranscriptBuilder, TranscriptOptions, Value,
};
use gatehouse_replay::{cli, load_transcript};

const VARCHAR: u32 = 1043;

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn masked(v: Value) -> Value {
    v.into_masked()
}

/// A session through a gateway with masking rules, as it records it.
fn masked_session() -> SessionBuilder {
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened().greeting();

    // 1. psql: text results over two reads. The first read's rows were
    // masked; the second read has no Masked event, so nothing in it is
    // marked even where a cell of the first one would point.
    s.wait(1_000)
        .up(&[query("select id, card, order_no, ssn from customers")]);
    s.wait(900)
        .masked(
            &[
                ("column:ssn", "ssn", 2),
                ("detector:card_number", "card", 2),
            ],
            &[(1, 1), (1, 3), (2, 1), (2, 3)],
        )
        .down(&[
            row_description(&[
                ("id", INT4, 0),
                ("card", TEXT, 0),
                ("order_no", TEXT, 0),
                ("ssn", TEXT, 0),
            ]),
            data_row(&[
                Some(b"1"),
                Some(b"****1111"),
                Some(b"4111111111111112"),
                Some(b"****"),
            ]),
            data_row(&[Some(b"2"), Some(b"****0005"), Some(b"77"), None]),
        ]);
    s.wait(100).down(&[
        data_row(&[Some(b"3"), Some(b"none"), Some(b"78"), Some(b"x")]),
        data_row(&[Some(b"4"), Some(b"none"), Some(b"79"), Some(b"y")]),
        complete("SELECT 4"),
        ready(),
    ]);

    // 2. tokio-postgres: binary results; the int under a column rule
    // became NULL, the e-mail a token.
    s.wait(1_000).up(&[
        parse("s0", "select email, pin, name from customers where id = $1"),
        describe(b'S', "s0"),
        sync(),
    ]);
    s.wait(500).down(&[
        bare(b'1'),
        encode::frame(b't', |b| {
            b.extend_from_slice(&1i16.to_be_bytes());
            b.extend_from_slice(&INT4.to_be_bytes());
        }),
        row_description(&[("email", TEXT, 0), ("pin", INT4, 0), ("name", VARCHAR, 0)]),
        ready(),
    ]);
    s.wait(1_000).up(&[
        bind("", "s0", &[(1, Some(&1i32.to_be_bytes()))], &[1]),
        execute("", 0),
        sync(),
    ]);
    s.wait(700)
        .masked(
            &[("column:pin", "pin", 1), ("detector:email", "email", 1)],
            &[(1, 0), (1, 1)],
        )
        .down(&[
            bare(b'2'),
            data_row(&[Some(b"tok_abc"), None, Some(b"Alice")]),
            complete("SELECT 1"),
            ready(),
        ]);

    // 3. COPY TO STDOUT: data messages 1 and 3 were masked; the line that
    // message 3 starts ends in message 4, and is masked too.
    s.wait(1_000)
        .up(&[query("copy (select id, card from customers) to stdout")]);
    s.wait(600)
        .masked(&[("detector:card_number", "copy", 2)], &[(1, 0), (3, 0)])
        .down(&[
            copy_response(b'H', 2),
            copy_data(b"1\t****1111\n"),
            copy_data(b"2\tplain\n"),
            copy_data(b"3\tsplit ****"),
            copy_data(b"0005 end\n"),
            bare(b'c'),
            complete("COPY 3"),
            ready(),
        ]);

    // 4. A unique violation whose DETAIL quoted an e-mail address.
    s.wait(1_000).up(&[query(
        "insert into customers (id, email) select 99, email from customers where id = 1",
    )]);
    s.wait(400)
        .masked(
            &[("detector:email", "error:detail", 1)],
            &[(0, u16::from(b'D'))],
        )
        .down(&[
            error(
                "23505",
                "duplicate key value violates unique constraint \"customers_email_key\"",
                Some("Key (email)=(tok_abc) already exists."),
                None,
            ),
            ready(),
        ]);

    // 5. A notice whose message was masked.
    s.wait(1_000)
        .up(&[query("do $$ begin raise notice 'contact %', 1; end $$")]);
    s.wait(300)
        .masked(
            &[("detector:email", "error:message", 1)],
            &[(0, u16::from(b'M'))],
        )
        .down(&[notice("contact tok_abc"), complete("DO"), ready()]);
    // In LATIN1 (`é` is the byte 0xE9, not UTF-8): still a notice, masked.
    s.wait(1_000)
        .up(&[query("do $$ begin raise notice 'caf\u{e9} %', 1; end $$")]);
    let latin1 = encode::frame(b'N', |b| {
        b.extend_from_slice(b"SNOTICE\0VNOTICE\0C00000\0Mcaf\xe9 tok_abc\0\0");
    });
    s.wait(300)
        .masked(
            &[("detector:email", "error:message", 1)],
            &[(0, u16::from(b'M'))],
        )
        .down(&[latin1, complete("DO"), ready()]);

    // 6. Cells that point at nothing: past the last frame, past the last
    // field, at a CommandComplete. Nothing is marked, nothing breaks.
    s.wait(1_000).up(&[query("select 1 as one")]);
    s.wait(200)
        .masked(&[("dictionary:0", "one", 1)], &[(9, 0), (1, 7), (2, 0)])
        .down(&[
            row_description(&[("one", INT4, 0)]),
            data_row(&[Some(b"1")]),
            complete("SELECT 1"),
            ready(),
        ]);

    s.wait(1_000).up(&[encode::terminate()]);
    s.closed(CloseReason::ClientTerminated);
    s
}

/// Through a real store: the `Masked` events survive encoding.
fn stored_transcript(s: &SessionBuilder) -> Transcript {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), &[s]);
    let reader = cli::open_store(dir.path()).unwrap();
    let id = cli::resolve_session(&reader, &sid(T0_MS, 1).to_string()).unwrap();
    load_transcript(&reader, id, TranscriptOptions::default())
        .unwrap()
        .unwrap()
}

fn entries(t: &Transcript) -> Vec<&Entry> {
    t.statements().collect()
}

#[test]
fn masked_cells_lines_and_fields_are_marked() {
    let t = stored_transcript(&masked_session());
    let e = entries(&t);
    assert_eq!(e.len(), 7);

    // 1. Text rows: only the first read's cells.
    let b = &e[0].results[0];
    assert_eq!(
        b.rows,
        [
            vec![
                text("1"),
                masked(text("****1111")),
                text("4111111111111112"),
                masked(text("****")),
            ],
            vec![
                text("2"),
                masked(text("****0005")),
                text("77"),
                masked(Value::Null),
            ],
            vec![text("3"), text("none"), text("78"), text("x")],
            vec![text("4"), text("none"), text("79"), text("y")],
        ]
    );
    assert_eq!((b.rows_received, b.masked_cells), (4, 4));

    // 2. Binary rows.
    let b = &e[1].results[0];
    assert_eq!(b.masked_cells, 2);
    let row = &b.rows[0];
    assert!(row[0].is_masked() && row[1].is_masked() && !row[2].is_masked());
    assert_eq!(row[0].cell(), "tok_abc");
    assert_eq!(row[1].unmarked(), &Value::Null);
    assert_eq!(row[2].cell(), "Alice");

    // 3. COPY lines.
    let copy = e[2].results[0].copy.as_ref().unwrap();
    assert_eq!(
        copy.lines,
        ["1\t****1111", "2\tplain", "3\tsplit ****0005 end"]
    );
    assert_eq!(copy.masked_lines, [0, 2]);
    assert_eq!(copy.lines_masked, 2);

    // 4. The error's detail; 5. the notice's message.
    let err = e[3].results[0].error.as_ref().unwrap();
    assert_eq!(err.masked, ["detail"]);
    assert_eq!(
        err.detail.as_deref(),
        Some("Key (email)=(tok_abc) already exists.")
    );
    assert_eq!(e[4].results[0].notices[0].masked, ["message"]);
    let latin1 = &e[5].results[0].notices[0];
    assert_eq!(
        (latin1.message.as_str(), &latin1.masked[..]),
        ("caf\u{fffd} tok_abc", &["message"][..])
    );

    // 6. Cells pointing at nothing mark nothing.
    let b = &e[6].results[0];
    assert_eq!((b.rows[0].clone(), b.masked_cells), (vec![text("1")], 0));

    // The header's totals, by rule then column.
    let total = |rule: &str, column: &str, count: u64| MaskTotal {
        rule: rule.into(),
        column: column.into(),
        count,
    };
    assert_eq!(
        t.header.masked,
        [
            total("column:pin", "pin", 1),
            total("column:ssn", "ssn", 2),
            total("detector:card_number", "card", 2),
            total("detector:card_number", "copy", 2),
            total("detector:email", "email", 1),
            total("detector:email", "error:detail", 1),
            total("detector:email", "error:message", 2),
            total("dictionary:0", "one", 1),
        ]
    );
}

#[test]
fn rendered_text_marks_what_was_masked() {
    let out = render_to_string(&stored_transcript(&masked_session()));
    assert_eq!(MASKED_MARK, "⟨masked⟩");
    for expected in [
        "  masked: column:pin in pin ×1, column:ssn in ssn ×2, detector:card_number in card ×2, \
         detector:card_number in copy ×2, detector:email in email ×1, \
         detector:email in error:detail ×1, detector:email in error:message ×2, \
         dictionary:0 in one ×1",
        "           id |       card        |     order_no     |      ssn",
        "            1 | ****1111 ⟨masked⟩ | 4111111111111112 | **** ⟨masked⟩",
        "            2 | ****0005 ⟨masked⟩ | 77               | ⟨masked⟩",
        "            3 | none              | 78               | x",
        "          (4 rows; 4 cells masked)   SELECT 4",
        "           tok_abc ⟨masked⟩ | ⟨masked⟩ | Alice",
        "          (1 row; 2 cells masked)   SELECT 1",
        "          1\t****1111 ⟨masked⟩",
        "          2\tplain\n",
        "          3\tsplit ****0005 end ⟨masked⟩",
        "          (3 lines, 40 B; 2 masked)   COPY 3",
        "          DETAIL:  Key (email)=(tok_abc) already exists. ⟨masked⟩",
        "          NOTICE 00000: contact tok_abc ⟨masked⟩",
        "          NOTICE 00000: caf\u{fffd} tok_abc ⟨masked⟩",
        "           one\n          -----\n             1\n          (1 row)   SELECT 1",
    ] {
        assert!(out.contains(expected), "missing {expected:?} in\n{out}");
    }
    // The error's message was not masked, so it is not marked.
    assert!(
        out.contains("constraint \"customers_email_key\"   "),
        "{out}"
    );
}

#[test]
fn json_says_masked_true() {
    let t = stored_transcript(&masked_session());
    let v: serde_json::Value = serde_json::to_value(&t).unwrap();
    let items = v["items"].as_array().unwrap();
    assert_eq!(
        items[0]["results"][0]["rows"][0],
        serde_json::json!([
            "1",
            {"masked": true, "value": "****1111"},
            "4111111111111112",
            {"masked": true, "value": "****"},
        ])
    );
    assert_eq!(
        items[0]["results"][0]["rows"][1][3],
        serde_json::json!({"masked": true, "value": null})
    );
    assert_eq!(items[0]["results"][0]["masked_cells"], 4);
    assert_eq!(
        items[1]["results"][0]["rows"][0][0],
        serde_json::json!({"masked": true, "value": {"binary": "\\x746f6b5f616263", "text": "tok_abc"}})
    );
    let copy = &items[2]["results"][0]["copy"];
    assert_eq!(copy["masked_lines"], serde_json::json!([0, 2]));
    assert_eq!(copy["lines_masked"], 2);
    assert_eq!(
        items[3]["results"][0]["error"]["masked"],
        serde_json::json!(["detail"])
    );
    assert_eq!(
        v["header"]["masked"][0],
        serde_json::json!({"rule": "column:pin", "column": "pin", "count": 1})
    );
    // What nothing masked has no masking fields at all.
    let plain = &items[6]["results"][0];
    assert!(plain.get("masked_cells").is_none(), "{plain}");
    assert!(plain["error"].is_null());
}

#[test]
fn a_masked_event_applies_to_the_next_frame_event_only() {
    // Fed without a store, and with a client frame in between: the cells
    // are used up by that frame (the gateway never records one there) and
    // mark nothing.
    let mut s = SessionBuilder::new(sid(T0_MS, 1));
    s.opened().greeting();
    s.wait(1_000).up(&[query("select 'a' as x")]);
    s.masked(&[("detector:email", "x", 1)], &[(1, 0)]);
    s.wait(10).up(&[query("select 'b' as x")]);
    for v in [b"a", b"b"] {
        s.wait(100).down(&[
            row_description(&[("x", TEXT, 0)]),
            data_row(&[Some(v)]),
            complete("SELECT 1"),
            ready(),
        ]);
    }
    let t = TranscriptBuilder::build(sid(T0_MS, 1), TranscriptOptions::default(), &s.decoded());
    for e in entries(&t) {
        assert_eq!(e.results[0].masked_cells, 0);
        assert!(!e.results[0].rows[0][0].is_masked());
    }
    assert_eq!(t.header.masked.len(), 1, "the hits still count");
}
