//! The asciicast export: asciinema's
//! [asciicast v2](https://docs.asciinema.org/manual/asciicast/v2/) format,
//! so `asciinema play FILE` shows the session as a terminal showed it.
//!
//! The first line is the header, a JSON object: `version` 2, `width` and
//! `height` (columns and lines the rendering needs, within sane bounds),
//! `timestamp` (the session's start, Unix seconds), `title`, and `env`.
//! Each further line is an output event `[time, "o", text]`: time in
//! seconds since the session's start, text the psql-like rendering of
//! [`crate::render`] with CRLF line ends. The header's rendering comes at
//! time 0; each item when it happened (never earlier than the one before,
//! so times do not decrease). `asciinema play -i 2` caps idle gaps.

use std::io::{self, Write};

use serde::Serialize;

use crate::render::{render_header, render_item_parts};
use crate::text::width;
use crate::transcript::Transcript;

/// Terminal size bounds.
const MIN_WIDTH: usize = 80;
const MAX_WIDTH: usize = 240;
const HEIGHT: usize = 40;

#[derive(Serialize)]
struct CastHeader {
    version: u32,
    width: usize,
    height: usize,
    timestamp: i64,
    title: String,
    env: CastEnv,
}

#[derive(Serialize)]
#[serde(rename_all = "UPPERCASE")]
struct CastEnv {
    term: &'static str,
    shell: &'static str,
}

/// Terminal output: LF becomes CRLF (a terminal in raw mode needs both).
fn terminal(text: &[u8]) -> String {
    String::from_utf8_lossy(text).replace('\n', "\r\n")
}

/// Writes `t` as an asciicast v2 recording.
pub fn write(t: &Transcript, out: &mut dyn Write) -> io::Result<()> {
    let h = &t.header;
    let mut head = Vec::new();
    render_header(h, &mut head)?;
    let mut chunks: Vec<(i64, Vec<u8>)> = Vec::with_capacity(t.items.len());
    let mut at = 0i64;
    for item in &t.items {
        // An HTTP exchange comes in parts: a streamed body, a terminal.
        for (at_us, text) in render_item_parts(t, item) {
            at = at.max(at_us.saturating_sub(h.started_us));
            chunks.push((at, text));
        }
    }
    let cols = std::iter::once(&head)
        .chain(chunks.iter().map(|(_, text)| text))
        .flat_map(|text| {
            String::from_utf8_lossy(text)
                .lines()
                .map(width)
                .collect::<Vec<_>>()
        })
        .max()
        .unwrap_or(0);
    let mut title = format!("Gatehouse session {}", h.session);
    if let (Some(who), Some(target)) = (&h.subject, &h.target) {
        title.push_str(&format!(": {who} → {target}"));
    }
    let header = CastHeader {
        version: 2,
        width: cols.clamp(MIN_WIDTH, MAX_WIDTH),
        height: HEIGHT,
        timestamp: h.started_us.div_euclid(1_000_000),
        title: crate::text::sanitize(&title, false),
        env: CastEnv {
            term: "xterm-256color",
            shell: "/bin/sh",
        },
    };
    serde_json::to_writer(&mut *out, &header)?;
    writeln!(out)?;
    serde_json::to_writer(&mut *out, &(0.0f64, "o", terminal(&head)))?;
    writeln!(out)?;
    for (at, text) in chunks {
        serde_json::to_writer(&mut *out, &(seconds(at), "o", terminal(&text)))?;
        writeln!(out)?;
    }
    Ok(())
}

/// Microseconds as seconds, to the microsecond.
fn seconds(us: i64) -> f64 {
    us as f64 / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;
    use crate::transcript::ItemKind;

    fn cast(t: &Transcript) -> String {
        let mut buf = Vec::new();
        write(t, &mut buf).unwrap();
        String::from_utf8(buf).unwrap()
    }

    /// Checks the structure; returns the output text, in order.
    fn check(cast: &str) -> (serde_json::Value, String) {
        let mut lines = cast.lines();
        let header: serde_json::Value = serde_json::from_str(lines.next().unwrap()).unwrap();
        assert_eq!(header["version"], 2);
        assert!(header["width"].as_u64().unwrap() >= 80);
        assert!(header["height"].as_u64().unwrap() > 0);
        assert!(header["timestamp"].is_i64());
        assert!(header["title"].is_string());
        let mut last = 0.0;
        let mut output = String::new();
        for line in lines {
            let event: serde_json::Value = serde_json::from_str(line).unwrap();
            let event = event.as_array().unwrap();
            assert_eq!(event.len(), 3, "{line}");
            let time = event[0].as_f64().unwrap();
            assert!(time >= last, "time goes back: {line}");
            last = time;
            assert_eq!(event[1], "o");
            output.push_str(event[2].as_str().unwrap());
        }
        (header, output)
    }

    #[test]
    fn header_then_timed_output() {
        let t = fixture::transcript();
        let cast = cast(&t);
        let (header, output) = check(&cast);
        assert_eq!(header["timestamp"], fixture::T0 / 1_000_000);
        assert!(
            header["title"].as_str().unwrap().contains("orders"),
            "{header}"
        );
        // The events are the rendering, line ends as a terminal wants them.
        let text = crate::render::render_to_string(&t);
        assert_eq!(output, text.replace('\n', "\r\n"));
        assert!(output.contains("select id, note, card from invoices"));
        // Timed as it happened: one event per item, at its offset.
        let times: Vec<f64> = cast
            .lines()
            .skip(1)
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()[0]
                    .as_f64()
                    .unwrap()
            })
            .collect();
        assert_eq!(times, [0.0, 0.001, 2.0, 3.0, 4.0, 4.0001, 4.5]);
    }

    #[test]
    fn times_never_decrease_and_escapes_stay_escaped() {
        let mut t = fixture::transcript();
        // An item recorded out of order, and a value meant for a terminal.
        t.items[2].at_us = t.header.started_us + 500;
        if let ItemKind::Denied { text, .. } = &mut t.items[3].kind {
            *text = "select '\x1b[2J'".into();
        }
        let cast = cast(&t);
        let (_, output) = check(&cast);
        assert!(!output.contains('\x1b'), "{output:?}");
        assert!(output.contains("\\u{1b}[2J"), "{output:?}");
    }
}
