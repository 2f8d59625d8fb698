//! What agents send: the workloads, their mix, their SQL, and the tag that
//! marks each statement so that the recording check can find it.

use std::fmt;
use std::path::Path;

use anyhow::{Context as _, bail};
use rand::Rng;

use crate::args::Args;
use crate::schedule::Leg;

/// The table the built-in workloads read and write.
pub const TABLE: &str = "gatehouse_lt_items";

/// A point read: one row by primary key; `$1` int4.
pub const POINT_SQL: &str = "SELECT id, name, amount FROM gatehouse_lt_items WHERE id = $1";
/// A range read: `$2` (int8) rows from id `$1` (int4) on, in key order.
pub const RANGE_SQL: &str =
    "SELECT id, name, amount FROM gatehouse_lt_items WHERE id >= $1 ORDER BY id LIMIT $2";
/// The write inside a transaction; `$1` int4.
pub const WRITE_SQL: &str = "UPDATE gatehouse_lt_items SET amount = amount + 1 WHERE id = $1";

/// The statement of the denied workload; `$1` int4. The minted plan
/// denies `delete` on [`TABLE`], so the gateway refuses it; `AND false`
/// makes it delete nothing where it does run (the direct leg).
pub const DENIED_SQL: &str = "DELETE FROM gatehouse_lt_items WHERE id = $1 AND false";

/// The SQLSTATE a denied statement comes back with.
pub const DENIED_SQLSTATE: &str = "42501";

/// The mix used when neither --mix nor --script is given.
pub const DEFAULT_MIX: &str = "point=70,range=10,write=10,connect=10";

/// One kind of task an agent performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Workload {
    /// [`POINT_SQL`] on the agent's connection.
    Point,
    /// [`RANGE_SQL`] on the agent's connection.
    Range,
    /// `BEGIN`, [`WRITE_SQL`], `COMMIT` on the agent's connection.
    Write,
    /// A new connection, a few point reads, disconnect.
    Connect,
    /// The user's `--masked-sql`.
    Masked,
    /// The user's `--script`, every line in order.
    Script,
    /// [`DENIED_SQL`]: a statement the plan denies.
    Denied,
}

impl Workload {
    /// Every workload, in report order.
    pub const ALL: [Workload; 7] = [
        Workload::Point,
        Workload::Range,
        Workload::Write,
        Workload::Connect,
        Workload::Masked,
        Workload::Script,
        Workload::Denied,
    ];

    /// The name used in --mix, the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Point => "point",
            Workload::Range => "range",
            Workload::Write => "write",
            Workload::Connect => "connect",
            Workload::Masked => "masked",
            Workload::Script => "script",
            Workload::Denied => "denied",
        }
    }

    /// Its index in [`Workload::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Workload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Workloads with weights; [`Mix::pick`] chooses one in proportion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mix {
    entries: Vec<(Workload, u32)>,
    total: u32,
}

impl Mix {
    /// Parses `name=weight,…`. Names are the [`Workload`] names; weights
    /// are whole numbers, zero leaves a workload out.
    pub fn parse(text: &str) -> anyhow::Result<Mix> {
        let mut entries: Vec<(Workload, u32)> = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .with_context(|| format!("--mix: {part:?} is not NAME=WEIGHT"))?;
            let name = name.trim();
            let Some(workload) = Workload::ALL.into_iter().find(|w| w.name() == name) else {
                bail!(
                    "--mix: unknown workload {name:?}; known: point, range, write, connect, \
                     masked, script, denied"
                );
            };
            let weight: u32 = weight
                .trim()
                .parse()
                .with_context(|| format!("--mix: the weight of {name} is not a whole number"))?;
            if entries.iter().any(|(w, _)| *w == workload) {
                bail!("--mix names {name} twice");
            }
            if weight > 0 {
                entries.push((workload, weight));
            }
        }
        Mix::from_entries(entries)
    }

    fn from_entries(entries: Vec<(Workload, u32)>) -> anyhow::Result<Mix> {
        let total = entries
            .iter()
            .try_fold(0u32, |sum, (_, w)| sum.checked_add(*w))
            .context("--mix: the weights add up to more than 2^32")?;
        if total == 0 {
            bail!("--mix gives no workload a weight above 0");
        }
        Ok(Mix { entries, total })
    }

    /// The mix the arguments ask for, and warnings about what was left out.
    ///
    /// `masked` without --masked-sql is left out with a warning (there is
    /// no statement to send); --masked-sql without `masked` in the mix is
    /// an error, as is `script` without --script. `denied` with a shared
    /// `--grant` is warned about: that grant's plan must deny `delete` on
    /// [`TABLE`], or every denied-workload task counts as an error.
    pub fn from_args(args: &Args) -> anyhow::Result<(Mix, Vec<String>)> {
        let text = match (&args.mix, &args.script) {
            (Some(mix), _) => mix.clone(),
            (None, Some(_)) => "script=1".to_owned(),
            (None, None) => DEFAULT_MIX.to_owned(),
        };
        let mut mix = Mix::parse(&text)?;
        let mut warnings = Vec::new();
        if mix.weight(Workload::Masked) > 0 && args.masked_sql.is_none() {
            warnings.push(
                "the masked workload is skipped: give --masked-sql with a select of a column \
                 the gateway's config masks"
                    .to_owned(),
            );
            mix = Mix::from_entries(
                mix.entries
                    .into_iter()
                    .filter(|(w, _)| *w != Workload::Masked)
                    .collect(),
            )?;
        } else if args.masked_sql.is_some() && mix.weight(Workload::Masked) == 0 {
            bail!("--masked-sql is given but --mix has no masked=WEIGHT");
        }
        if mix.weight(Workload::Script) > 0 && args.script.is_none() {
            bail!("--mix names script but no --script FILE is given");
        }
        if args.script.is_some() && mix.weight(Workload::Script) == 0 {
            bail!("--script is given but --mix has no script=WEIGHT");
        }
        if mix.weight(Workload::Denied) > 0 && args.grant.is_some() {
            warnings.push(format!(
                "the denied workload expects the --grant's plan to deny delete on {TABLE}; \
                 where it allows it, each denied task counts as an error"
            ));
        }
        Ok((mix, warnings))
    }

    /// Whether the denied workload runs: minted plans then deny `delete`.
    pub fn has_denied(&self) -> bool {
        self.weight(Workload::Denied) > 0
    }

    /// The weight of `workload` (0 if absent).
    pub fn weight(&self, workload: Workload) -> u32 {
        self.entries
            .iter()
            .find(|(w, _)| *w == workload)
            .map_or(0, |(_, n)| *n)
    }

    /// The workloads with their weights, in the order given.
    pub fn entries(&self) -> &[(Workload, u32)] {
        &self.entries
    }

    /// Chooses a workload in proportion to the weights.
    pub fn pick(&self, rng: &mut impl Rng) -> Workload {
        let mut ticket = rng.gen_range(0..self.total);
        for (workload, weight) in &self.entries {
            if ticket < *weight {
                return *workload;
            }
            ticket -= weight;
        }
        // The weights add up to `total`, so the loop returned.
        self.entries
            .last()
            .map_or(Workload::Point, |(workload, _)| *workload)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (w, n)) in self.entries.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{w}={n}")?;
        }
        Ok(())
    }
}

/// Reads a script: one statement per line; blank lines and lines starting
/// with `--` are skipped.
pub fn load_script(path: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("--script: cannot read {}", path.display()))?;
    let statements: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with("--"))
        .map(str::to_owned)
        .collect();
    if statements.is_empty() {
        bail!("--script {} holds no statement", path.display());
    }
    Ok(statements)
}

/// The comment every statement starts with:
/// `/* lt:RUN:LEG:AGENT:CONN:SEQ */ `. `SEQ` counts the agent's statements
/// on that leg, from 0; `CONN` its connections on that leg.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tag<'a> {
    /// The run id.
    pub run: &'a str,
    /// Gateway or direct.
    pub leg: Leg,
    /// The agent.
    pub agent: u32,
    /// The agent's connection on this leg.
    pub conn: u32,
    /// The agent's statement on this leg.
    pub seq: u64,
}

impl Tag<'_> {
    /// `sql` with the tag in front.
    pub fn apply(&self, sql: &str) -> String {
        format!("{self}{sql}")
    }
}

impl fmt::Display for Tag<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "/* lt:{}:{}:{}:{}:{} */ ",
            self.run,
            self.leg.letter(),
            self.agent,
            self.conn,
            self.seq
        )
    }
}

/// Reads the tag at the start of a recorded statement's text, if it has
/// one.
pub fn parse_tag(text: &str) -> Option<Tag<'_>> {
    let rest = text.trim_start().strip_prefix("/* lt:")?;
    let (inner, _) = rest.split_once(" */")?;
    let mut parts = inner.split(':');
    let run = parts.next()?;
    let leg = Leg::from_letter(parts.next()?)?;
    let agent = parts.next()?.parse().ok()?;
    let conn = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    if parts.next().is_some() || run.is_empty() {
        return None;
    }
    Some(Tag {
        run,
        leg,
        agent,
        conn,
        seq,
    })
}

/// The `application_name` of an agent's connection:
/// `gatehouse-loadtest:RUN:LEG:AGENT:CONN`.
pub fn application_name(run: &str, leg: Leg, agent: u32, conn: u32) -> String {
    format!("gatehouse-loadtest:{run}:{}:{agent}:{conn}", leg.letter())
}

/// The `application_name` of the connection that checks the gateway is
/// reachable before the run.
pub fn preflight_name(run: &str) -> String {
    format!("gatehouse-loadtest:{run}:preflight")
}

/// Who an `application_name` says a session belongs to, for `run`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionOwner {
    /// An agent's connection.
    Agent {
        /// Gateway or direct.
        leg: Leg,
        /// The agent.
        agent: u32,
        /// Its connection number.
        conn: u32,
    },
    /// The pre-run reachability check.
    Preflight,
}

/// Reads an `application_name` written by [`application_name`] or
/// [`preflight_name`] for `run`.
pub fn parse_application_name(name: &str, run: &str) -> Option<SessionOwner> {
    let rest = name
        .strip_prefix("gatehouse-loadtest:")?
        .strip_prefix(run)?
        .strip_prefix(':')?;
    if rest == "preflight" {
        return Some(SessionOwner::Preflight);
    }
    let mut parts = rest.split(':');
    let leg = Leg::from_letter(parts.next()?)?;
    let agent = parts.next()?.parse().ok()?;
    let conn = parts.next()?.parse().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some(SessionOwner::Agent { leg, agent, conn })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng as _;

    #[test]
    fn mix_parses_and_picks_in_proportion() {
        let mix = Mix::parse("point=70, range=10,write=20,connect=0").expect("valid");
        assert_eq!(mix.to_string(), "point=70,range=10,write=20");
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut counts = [0u32; 7];
        for _ in 0..10_000 {
            counts[mix.pick(&mut rng).index()] += 1;
        }
        assert!((6_700..7_300).contains(&counts[0]), "{counts:?}");
        assert!((800..1_200).contains(&counts[1]), "{counts:?}");
        assert_eq!(counts[3], 0);
    }

    #[test]
    fn bad_mixes_say_why() {
        for (text, says) in [
            ("point", "NAME=WEIGHT"),
            ("bogus=1", "unknown workload"),
            ("point=x", "whole number"),
            ("point=0", "no workload"),
            ("point=1,point=2", "twice"),
            ("denied=x", "whole number"),
        ] {
            let err = Mix::parse(text).expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn the_denied_workload_is_mixed_like_the_others() {
        let mix = Mix::parse("point=3,denied=1").expect("valid");
        assert!(mix.has_denied());
        assert_eq!(mix.weight(Workload::Denied), 1);
        assert_eq!(mix.to_string(), "point=3,denied=1");
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let denied = (0..4_000)
            .filter(|_| mix.pick(&mut rng) == Workload::Denied)
            .count();
        assert!((800..1_200).contains(&denied), "{denied}");
        assert!(!Mix::parse("point=1,denied=0").expect("valid").has_denied());
        assert!(!Mix::parse(DEFAULT_MIX).expect("valid").has_denied());
        assert_eq!(Workload::Denied.name(), "denied");
        assert_eq!(Workload::ALL[Workload::Denied.index()], Workload::Denied);
    }

    #[test]
    fn tags_round_trip() {
        let tag = Tag {
            run: "0a1b2c3d",
            leg: Leg::Gateway,
            agent: 12,
            conn: 3,
            seq: 40_000_000_000,
        };
        let sql = tag.apply("SELECT 1");
        assert_eq!(sql, "/* lt:0a1b2c3d:g:12:3:40000000000 */ SELECT 1");
        assert_eq!(parse_tag(&sql), Some(tag));
        assert_eq!(parse_tag("SELECT 1"), None);
        assert_eq!(parse_tag("/* lt:x:q:1:2:3 */ SELECT 1"), None);
        assert_eq!(parse_tag("/* lt:x:g:1:2 */ SELECT 1"), None);
    }

    #[test]
    fn application_names_round_trip() {
        let name = application_name("run1", Leg::Direct, 5, 9);
        assert_eq!(
            parse_application_name(&name, "run1"),
            Some(SessionOwner::Agent {
                leg: Leg::Direct,
                agent: 5,
                conn: 9
            })
        );
        assert_eq!(parse_application_name(&name, "run2"), None);
        assert_eq!(
            parse_application_name(&preflight_name("run1"), "run1"),
            Some(SessionOwner::Preflight)
        );
        assert!(name.len() < 64, "fits NAMEDATALEN");
    }
}
