//! The run's timeline: when agents start, which part is measured, and —
//! with `--compare-direct` — which leg each moment belongs to.
//!
//! ```text
//! | ramp-up (agents start evenly) | warm-up (all agents) | measured duration |
//! ```
//!
//! Nothing before the measured window counts in the results. A task belongs
//! to the window and leg of the moment it was meant to start (closed loop:
//! when it started; open loop: its intended send time), whenever it ends.
//!
//! # Comparing with direct connections
//!
//! With a slice length, time alternates between gateway slices and direct
//! slices, aligned so that a gateway slice starts exactly when measuring
//! starts. Every agent follows the slices: during a gateway slice all of
//! them go through the gateway, during a direct slice all go straight to the
//! target, each over its own connection per leg. Both legs so see the same
//! number of agents, the same mix, the same database (its caches, its
//! vacuum, its growing table) and the same machine at nearly the same
//! time; alternating cancels slow drift. The other choice, half the agents
//! on each leg at once, was rejected: on a small machine both halves
//! compete for the same cores, so the gateway's own CPU would slow the
//! direct half and flatter the ratio. A task that runs past the end of its
//! slice finishes on its leg; the next one starts on the new leg.

use std::time::Duration;

use tokio::time::Instant;

/// Which way a task goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Leg {
    /// Through the gateway.
    Gateway,
    /// Straight to the target (`--direct`).
    Direct,
}

impl Leg {
    /// Both legs, gateway first.
    pub const BOTH: [Leg; 2] = [Leg::Gateway, Leg::Direct];

    /// `g` or `d`, as tags and application names write it.
    pub fn letter(self) -> &'static str {
        match self {
            Leg::Gateway => "g",
            Leg::Direct => "d",
        }
    }

    /// The inverse of [`letter`](Self::letter).
    pub fn from_letter(s: &str) -> Option<Leg> {
        match s {
            "g" => Some(Leg::Gateway),
            "d" => Some(Leg::Direct),
            _ => None,
        }
    }

    /// `gateway` or `direct`.
    pub fn name(self) -> &'static str {
        match self {
            Leg::Gateway => "gateway",
            Leg::Direct => "direct",
        }
    }

    /// 0 or 1.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Whether a moment counts in the results.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Ramp-up and warm-up: run, but not counted.
    Unmeasured,
    /// The measured duration.
    Measured,
}

impl Window {
    /// 0 or 1.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// The timeline of one run.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    start: Instant,
    ramp_up: Duration,
    warmup: Duration,
    duration: Duration,
    slice: Option<Duration>,
}

impl Schedule {
    /// A timeline starting at `start`; `slice` alternates legs
    /// (`--compare-direct`), `None` keeps every task on the gateway.
    pub fn new(
        start: Instant,
        ramp_up: Duration,
        warmup: Duration,
        duration: Duration,
        slice: Option<Duration>,
    ) -> Schedule {
        Schedule {
            start,
            ramp_up,
            warmup,
            duration,
            slice: slice.filter(|s| !s.is_zero()),
        }
    }

    /// When the run started.
    pub fn start(&self) -> Instant {
        self.start
    }

    /// When measuring starts: after ramp-up and warm-up.
    pub fn measure_start(&self) -> Instant {
        self.start + self.ramp_up + self.warmup
    }

    /// When the run ends.
    pub fn end(&self) -> Instant {
        self.measure_start() + self.duration
    }

    /// Whether legs alternate.
    pub fn compares(&self) -> bool {
        self.slice.is_some()
    }

    /// When agent `i` of `n` starts: evenly over the ramp-up.
    pub fn agent_start(&self, i: u32, n: u32) -> Instant {
        if n == 0 {
            return self.start;
        }
        let frac = f64::from(i) / f64::from(n);
        self.start + self.ramp_up.mul_f64(frac)
    }

    /// The window `t` belongs to.
    pub fn window_at(&self, t: Instant) -> Window {
        if t >= self.measure_start() {
            Window::Measured
        } else {
            Window::Unmeasured
        }
    }

    /// The leg `t` belongs to.
    pub fn leg_at(&self, t: Instant) -> Leg {
        let Some(slice) = self.slice else {
            return Leg::Gateway;
        };
        let m = self.measure_start();
        let k = if t >= m {
            ((t - m).as_nanos() / slice.as_nanos()) as i128
        } else {
            // Slices before measuring are aligned to the same boundaries.
            -(((m - t).as_nanos().div_ceil(slice.as_nanos())) as i128)
        };
        if k.rem_euclid(2) == 0 {
            Leg::Gateway
        } else {
            Leg::Direct
        }
    }

    /// How much of `[from, to)` belongs to `leg`.
    pub fn leg_time(&self, leg: Leg, from: Instant, to: Instant) -> Duration {
        if to <= from {
            return Duration::ZERO;
        }
        let Some(slice) = self.slice else {
            return match leg {
                Leg::Gateway => to - from,
                Leg::Direct => Duration::ZERO,
            };
        };
        let mut total = Duration::ZERO;
        let mut t = from;
        while t < to {
            // The end of the slice `t` is in.
            let m = self.measure_start();
            let boundary = if t >= m {
                let k = (t - m).as_nanos() / slice.as_nanos();
                m + slice.saturating_mul(u32::try_from(k + 1).unwrap_or(u32::MAX))
            } else {
                let k = (m - t).as_nanos() / slice.as_nanos();
                let b = m - slice.saturating_mul(u32::try_from(k).unwrap_or(u32::MAX));
                if b <= t { b + slice } else { b }
            };
            let end = boundary.min(to);
            if self.leg_at(t) == leg {
                total += end - t;
            }
            t = end;
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn schedule(slice: Option<Duration>) -> Schedule {
        Schedule::new(Instant::now(), 2 * S, 3 * S, 10 * S, slice)
    }

    #[test]
    fn windows_follow_ramp_up_and_warmup() {
        let s = schedule(None);
        assert_eq!(s.measure_start() - s.start(), 5 * S);
        assert_eq!(s.end() - s.start(), 15 * S);
        assert_eq!(s.window_at(s.start() + 4 * S), Window::Unmeasured);
        assert_eq!(s.window_at(s.measure_start()), Window::Measured);
        assert_eq!(s.agent_start(0, 4), s.start());
        assert_eq!(s.agent_start(2, 4) - s.start(), S);
    }

    #[test]
    fn without_slices_everything_is_gateway() {
        let s = schedule(None);
        assert_eq!(s.leg_at(s.end()), Leg::Gateway);
        assert_eq!(s.leg_time(Leg::Gateway, s.measure_start(), s.end()), 10 * S);
        assert_eq!(
            s.leg_time(Leg::Direct, s.measure_start(), s.end()),
            Duration::ZERO
        );
    }

    #[test]
    fn slices_alternate_from_the_measure_start() {
        let s = schedule(Some(2 * S));
        let m = s.measure_start();
        assert_eq!(s.leg_at(m), Leg::Gateway);
        assert_eq!(s.leg_at(m + S), Leg::Gateway);
        assert_eq!(s.leg_at(m + 2 * S), Leg::Direct);
        assert_eq!(s.leg_at(m + 4 * S), Leg::Gateway);
        // Before measuring: [m-2s, m) is direct, [m-4s, m-2s) gateway.
        assert_eq!(s.leg_at(m - S), Leg::Direct);
        assert_eq!(s.leg_at(m - 2 * S), Leg::Direct);
        assert_eq!(s.leg_at(m - 3 * S), Leg::Gateway);
        assert_eq!(s.leg_time(Leg::Gateway, m, s.end()), 6 * S);
        assert_eq!(s.leg_time(Leg::Direct, m, s.end()), 4 * S);
        assert_eq!(s.leg_time(Leg::Direct, m + S, m + 3 * S), S);
        assert_eq!(s.leg_time(Leg::Direct, m - 3 * S, m), 2 * S);
    }
}
