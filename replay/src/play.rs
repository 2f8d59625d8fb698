//! Replaying a transcript on a terminal as it happened: the psql-like
//! rendering of [`crate::render`], item by item, with the pauses between
//! items the session had — divided by a speed factor and each capped, so
//! an idle session does not take hours.
//!
//! [`play`] does not sleep itself: it asks a `pause` callback to, so the
//! binary passes `std::thread::sleep` and tests pass a recorder.

use std::io::{self, Write};
use std::time::Duration;

use crate::render::{render_header, render_item_parts};
use crate::transcript::Transcript;

/// How to pace a replay.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    /// Real time divided by this; 0 (or less, or not a number) means no
    /// pauses at all.
    pub speed: f64,
    /// The longest pause between two items.
    pub max_wait: Duration,
}

impl Pace {
    /// No pauses: everything at once.
    pub const INSTANT: Pace = Pace {
        speed: 0.0,
        max_wait: Duration::ZERO,
    };

    /// The pause before an item `gap_us` microseconds after the previous
    /// one (zero for a negative gap).
    pub fn pause(&self, gap_us: i64) -> Duration {
        if self.speed.is_nan() || self.speed <= 0.0 || gap_us <= 0 {
            return Duration::ZERO;
        }
        let secs = gap_us as f64 / 1e6 / self.speed;
        Duration::try_from_secs_f64(secs)
            .unwrap_or(self.max_wait)
            .min(self.max_wait)
    }
}

/// Writes `t` to `out` item by item, flushing after each and calling
/// `pause` with the time to wait before the next (only when it is not
/// zero).
pub fn play(
    t: &Transcript,
    out: &mut dyn Write,
    pace: Pace,
    pause: &mut dyn FnMut(Duration),
) -> io::Result<()> {
    render_header(&t.header, out)?;
    out.flush()?;
    let mut last = t.header.started_us;
    for item in &t.items {
        // An HTTP exchange comes in parts: a streamed body, a terminal.
        for (at_us, text) in render_item_parts(t, item) {
            let wait = pace.pause(at_us.saturating_sub(last));
            if !wait.is_zero() {
                pause(wait);
            }
            last = last.max(at_us);
            out.write_all(&text)?;
            out.flush()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::fixture;

    #[test]
    fn pauses_scaled_and_capped() {
        let pace = Pace {
            speed: 4.0,
            max_wait: Duration::from_millis(300),
        };
        assert_eq!(pace.pause(400_000), Duration::from_millis(100));
        assert_eq!(pace.pause(3_600_000_000), Duration::from_millis(300));
        assert_eq!(pace.pause(-5), Duration::ZERO);
        assert_eq!(Pace::INSTANT.pause(1_000_000), Duration::ZERO);
        let nan = Pace {
            speed: f64::NAN,
            max_wait: Duration::from_secs(1),
        };
        assert_eq!(nan.pause(1_000_000), Duration::ZERO);
    }

    #[test]
    fn plays_the_rendering_with_the_session_pauses() {
        let t = fixture::transcript();
        let mut out = Vec::new();
        let mut pauses = Vec::new();
        let pace = Pace {
            speed: 2.0,
            max_wait: Duration::from_millis(400),
        };
        play(&t, &mut out, pace, &mut |d| pauses.push(d)).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            crate::render::render_to_string(&t)
        );
        // Gaps: 1 ms, ~2 s, 1 s, 1 s, 100 µs, 0.4999 s; halved, capped at 0.4 s.
        assert_eq!(
            pauses,
            [
                Duration::from_micros(500),
                Duration::from_millis(400),
                Duration::from_millis(400),
                Duration::from_millis(400),
                Duration::from_micros(50),
                Duration::from_micros(249_950),
            ]
        );

        let mut out = Vec::new();
        let mut called = false;
        play(&t, &mut out, Pace::INSTANT, &mut |_| called = true).unwrap();
        assert!(!called);
    }
}
