//! Text bodies: line by line, each case checked at every split.

use super::*;

fn text_stream(max_value: usize) -> impl Fn() -> TextMaskStream {
    let masker = masker();
    let limits = BodyLimits {
        max_value,
        ..BodyLimits::default()
    };
    move || TextMaskStream::with_limits(Some(masker.clone()), limits)
}

fn mask_text(input: &str, max_value: usize) -> (String, Vec<MaskHit>) {
    let (out, result, hits) = check_splits(text_stream(max_value), input.as_bytes());
    assert_eq!(result, Ok(()));
    (String::from_utf8(out).unwrap(), hits)
}

#[test]
fn lines_are_masked() {
    let cases = [
        ("", ""),
        ("\n\n", "\n\n"),
        ("plain line\nanother\n", "plain line\nanother\n"),
        (
            "2024-01-01 login bob@example.com ok\nnothing here\n",
            "2024-01-01 login **** ok\nnothing here\n",
        ),
        ("card 4111111111111111\r\n", "card ****1111\r\n"),
        (
            "no newline at the end a@example.com",
            "no newline at the end ****",
        ),
        // A null strategy drops the line, not its newline.
        ("before\nssn 123-45-6789 here\nafter\n", "before\n\nafter\n"),
        (
            "caf\u{e9} \u{1F389} x@example.com\n",
            "caf\u{e9} \u{1F389} ****\n",
        ),
    ];
    for (input, want) in cases {
        assert_eq!(mask_text(input, 1 << 20).0, want, "{input:?}");
    }
}

#[test]
fn hits_are_counted_under_text() {
    let (_, hits) = mask_text("a@example.com b@example.com\nc@example.com\n", 1 << 20);
    assert_eq!(hits, vec![hit("detector:email", "text", 3)]);
}

#[test]
fn long_lines_are_cut_after_whitespace() {
    // Limit 20: "mail bob@example.com" fits whole before a cut.
    let line = "xxxxxxxxxxxx mail bob@example.com and more text here\n";
    let (out, hits) = mask_text(line, 20);
    assert_eq!(out, "xxxxxxxxxxxx mail **** and more text here\n");
    assert_eq!(hits.len(), 1);
    // No whitespace: cut at the limit (so a match across a cut is missed,
    // as documented) on a character boundary.
    let (out, _) = mask_text(&"\u{e9}".repeat(30), 7);
    assert_eq!(out, "\u{e9}".repeat(30));
}

#[test]
fn a_long_line_is_not_held_whole() {
    let mut s = text_stream(100)();
    let mut out = BytesMut::new();
    for _ in 0..50 {
        s.feed(b"word word word word ", &mut out).unwrap();
    }
    assert!(out.len() >= 50 * 20 - 100, "{}", out.len());
    assert!(format!("{s:?}").contains("held:"));
    s.feed(b"a@example.com\n", &mut out).unwrap();
    assert!(out.ends_with(b"word ****\n"));
}

#[test]
fn without_a_masker_text_passes() {
    let make = || TextMaskStream::new(None);
    let (out, result, hits) = check_splits(make, b"a@example.com\nx");
    assert_eq!((out, result), (b"a@example.com\nx".to_vec(), Ok(())));
    assert!(hits.is_empty());
}
