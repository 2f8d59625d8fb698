//! The per-stream tally of what was masked where: rule and place, counted,
//! never the values.

use std::collections::BTreeMap;

use crate::event::MaskHit;
use crate::mask::{Masker, RuleId};

use super::keys::JsonKeys;

/// Distinct (rule, place) pairs kept; later places are counted under `*`
/// (object keys can be data, such as ids in a map, and must not grow the
/// tally without bound).
const MAX_PLACES: usize = 1024;

/// The longest place kept (deeper paths are cut, at a character
/// boundary).
const MAX_PLACE: usize = 512;

/// The place charged once [`MAX_PLACES`] is reached.
const OVERFLOW_PLACE: &str = "*";

/// Which rule hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum HitRule {
    /// A [`JsonKeys`] rule, by position.
    Key(usize),
    /// A content rule of the [`Masker`].
    Content(RuleId),
    /// A value longer than [`super::BodyLimits::max_value`], replaced whole.
    Limit,
}

/// Counts per (rule, place).
#[derive(Debug, Default, Clone)]
pub(super) struct Tally {
    counts: BTreeMap<(HitRule, String), u32>,
}

impl Tally {
    /// Adds `n` hits of `rule` at `place`.
    pub(super) fn add(&mut self, rule: HitRule, place: &str, n: u32) {
        let mut end = place.len().min(MAX_PLACE);
        while !place.is_char_boundary(end) {
            end -= 1;
        }
        let place = place.get(..end).unwrap_or_default();
        let key = if self.counts.len() < MAX_PLACES
            || self.counts.contains_key(&(rule, place.to_owned()))
        {
            (rule, place.to_owned())
        } else {
            (rule, OVERFLOW_PLACE.to_owned())
        };
        let count = self.counts.entry(key).or_insert(0);
        *count = count.saturating_add(n);
    }

    /// The tally as events, named through `keys` and `masker`.
    pub(super) fn summary(&self, keys: Option<&JsonKeys>, masker: Option<&Masker>) -> Vec<MaskHit> {
        self.counts
            .iter()
            .map(|((rule, place), count)| MaskHit {
                rule: match rule {
                    HitRule::Key(i) => keys.map_or("key:unknown", |k| k.rule_name(*i)).to_owned(),
                    HitRule::Content(id) => {
                        masker.map_or("unknown", |m| m.rule_name(*id)).to_owned()
                    }
                    HitRule::Limit => "limit:max_value".to_owned(),
                },
                column: place.clone(),
                count: *count,
            })
            .collect()
    }

    /// Forgets every count.
    pub(super) fn clear(&mut self) {
        self.counts.clear();
    }
}
