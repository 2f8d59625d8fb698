//! Masking: the engine that replaces sensitive values before they leave the
//! gateway (and so before they are recorded).
//!
//! A [`MaskRules`] set is compiled once, at load or reload, into a
//! [`Masker`]:
//! - column rules: case-insensitive globs (`column.rs`);
//! - one aho-corasick automaton over every dictionary term and detector
//!   keyword (`AKIA`, `ghp_`, `eyJ`, `-----BEGIN `, …), searched over a
//!   lower-cased copy of the value so that it keeps its SIMD prefilter
//!   (`prefilter.rs`);
//! - a byte scan for the detectors without a keyword: a vectorised census of
//!   digits and `@`, then 64-byte bit masks tested for the shapes of cards,
//!   SSNs, phone numbers and IBANs (`scan.rs`, `bits.rs`).
//!
//! Validators (`detectors/`) run only around what those let through: Luhn
//! and issuer ranges, SSN area/group/serial rules, IBAN mod 97, token
//! lengths and alphabets, PEM labels. A value with no candidate costs the
//! automaton's scan and the census, and nothing is written.
//!
//! A row of short values is screened whole first ([`Masker::row_may_match`],
//! `row.rs`): both prefilters run once over the row, and only a row they
//! flag (confirmed per value, so exactly the rows with something to mask)
//! is masked value by value.
//!
//! What this module is not: it knows nothing of PostgreSQL frames. The
//! protocol layer asks [`Masker::column_strategy`] per column of a
//! `RowDescription`, screens each row, then per value calls
//! [`Masker::apply`] (column rules) or [`Masker::mask_value`] (content
//! rules), and rewrites lengths.
//!
//! Matching is on bytes. Every pattern is ASCII, so a value that is not UTF-8
//! is scanned the same way and its other bytes are copied through untouched;
//! non-ASCII bytes never join a digit run and count as word boundaries for
//! dictionary terms, but belong to e-mail addresses (internationalised
//! addresses are masked whole). Matches are replaced in place, leftmost
//! first and longest at one position; a later match overlapping a chosen
//! one is merged into it (masking more, never less). [`Hits`] carries rule
//! ids and counts, never matched text.

mod bits;
mod body;
mod column;
mod detectors;
mod prefilter;
mod row;
mod rules;
mod scan;
mod strategy;
#[cfg(test)]
mod tests;

pub use body::{
    BodyKind, BodyLimits, BodyMaskError, JsonKeyRule, JsonKeys, JsonMaskStream, KeyRuleError,
    TextMaskStream,
};
pub use row::RowScratch;
pub use rules::{
    ColumnRule, Detector, DictionaryRule, Hits, MaskError, MaskRules, Outcome, RuleId, Strategy,
};
pub use strategy::Applied;

use column::ColumnGlob;
use detectors::Kw;
use prefilter::{Pattern, Prefilter};
use scan::ByteScan;
use strategy::Tokenizer;

/// One confirmed match, before overlaps are resolved.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    rule: RuleId,
    strategy: Strategy,
}

/// A compiled rule set. Cheap to share (`Arc<Masker>`) across sessions;
/// every method takes `&self`.
#[derive(Clone)]
pub struct Masker {
    /// Rule names by [`RuleId`].
    names: Vec<String>,
    columns: Vec<(ColumnGlob, Strategy)>,
    /// The rule charged when a value's column is not known (fail closed).
    unknown_column: RuleId,
    prefilter: Option<Prefilter>,
    scan: ByteScan,
    tokens: Tokenizer,
}

impl std::fmt::Debug for Masker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Neither the secret nor dictionary terms.
        f.debug_struct("Masker")
            .field("rules", &self.names.len())
            .field("columns", &self.columns.len())
            .finish_non_exhaustive()
    }
}

impl Masker {
    /// Compiles `rules`. `token_secret` keys [`Strategy::Token`]; it must be
    /// at least 16 bytes when a rule uses tokens.
    pub fn new(rules: MaskRules, token_secret: &[u8]) -> Result<Masker, MaskError> {
        let uses_tokens = rules
            .columns
            .iter()
            .map(|c| c.strategy)
            .chain(rules.detectors.iter().map(|d| d.1))
            .chain(rules.dictionaries.iter().map(|d| d.strategy))
            .any(|s| s == Strategy::Token);
        if uses_tokens && token_secret.len() < strategy::MIN_SECRET {
            return Err(MaskError::WeakTokenSecret {
                len: token_secret.len(),
            });
        }
        let mut names = Vec::new();
        let mut next_id = |name: String| -> Result<RuleId, MaskError> {
            let id = u32::try_from(names.len()).map_err(|_| MaskError::TooManyRules)?;
            names.push(name);
            Ok(RuleId(id))
        };

        let mut columns = Vec::with_capacity(rules.columns.len());
        for (index, rule) in rules.columns.iter().enumerate() {
            if rule.pattern.is_empty() {
                return Err(MaskError::EmptyColumnPattern { index });
            }
            next_id(format!("column:{}", rule.pattern))?;
            columns.push((ColumnGlob::new(&rule.pattern), rule.strategy));
        }

        let mut patterns = Vec::new();
        let mut scan = ByteScan::default();
        let mut seen = Vec::new();
        for &(detector, strategy) in &rules.detectors {
            if seen.contains(&detector) {
                return Err(MaskError::DuplicateDetector(detector));
            }
            seen.push(detector);
            let rule = next_id(format!("detector:{}", detector.name()))?;
            if scan.enable(detector, rule, strategy) {
                continue;
            }
            for &(d, keyword, kw) in detectors::KEYWORDS {
                if d == detector {
                    patterns.push(Pattern {
                        bytes: keyword.as_bytes().to_vec(),
                        rule,
                        strategy,
                        keyword: Some(kw),
                        case_insensitive: kw == Kw::AwsSecret,
                    });
                }
            }
        }

        for (dictionary, dict) in rules.dictionaries.iter().enumerate() {
            let rule = next_id(format!("dictionary:{dictionary}"))?;
            for (term, text) in dict.terms.iter().enumerate() {
                let bad = text.is_empty()
                    || text.len() > prefilter::MAX_PATTERN
                    || text.as_bytes().contains(&0);
                if bad {
                    return Err(MaskError::BadTerm { dictionary, term });
                }
                patterns.push(Pattern {
                    bytes: text.as_bytes().to_vec(),
                    rule,
                    strategy: dict.strategy,
                    keyword: None,
                    case_insensitive: dict.case_insensitive,
                });
            }
        }

        let unknown_column = next_id("column:<unknown>".to_owned())?;
        Ok(Masker {
            unknown_column,
            names,
            columns,
            prefilter: Prefilter::build(patterns)?,
            scan,
            tokens: Tokenizer::new(token_secret),
        })
    }

    /// The first column rule matching a column `column` of `table` (when the
    /// caller knows the table), with its strategy.
    pub fn column_strategy(&self, table: Option<&str>, column: &str) -> Option<(RuleId, Strategy)> {
        self.columns
            .iter()
            .enumerate()
            .find(|(_, (glob, _))| glob.matches(table, column))
            .map(|(i, &(_, strategy))| (RuleId(i as u32), strategy))
    }

    /// The rule to charge, and the strategy to use, for a value whose column
    /// is unknown while column rules exist (fail closed): `column:<unknown>`,
    /// [`Strategy::Null`].
    pub fn unknown_column_rule(&self) -> (RuleId, Strategy) {
        (self.unknown_column, Strategy::Null)
    }

    /// True when content rules (detectors or dictionaries) are configured,
    /// i.e. when [`Masker::mask_value`] can ever rewrite anything.
    pub fn has_content_rules(&self) -> bool {
        self.prefilter.is_some() || !self.scan.is_empty()
    }

    /// True when column rules are configured.
    pub fn has_column_rules(&self) -> bool {
        !self.columns.is_empty()
    }

    /// Masks the content of one text value.
    ///
    /// Returns `None`, having written nothing, when no rule matched: the
    /// caller forwards the original bytes untouched. Otherwise appends the
    /// rewritten value to `out` and returns what hit — unless a matching
    /// rule's strategy is [`Strategy::Null`], in which case nothing is
    /// appended and [`Outcome::nulled`] says the value must become NULL.
    pub fn mask_value(&self, value: &[u8], out: &mut Vec<u8>) -> Option<Outcome> {
        let mut found: Vec<Candidate> = Vec::new();
        if let Some(prefilter) = &self.prefilter {
            prefilter.candidates(value, &mut |c| found.push(c));
        }
        self.scan.run(value, &mut |c| found.push(c));
        if found.is_empty() {
            return None;
        }
        Some(self.rewrite(value, found, out))
    }

    fn rewrite(&self, value: &[u8], mut found: Vec<Candidate>, out: &mut Vec<u8>) -> Outcome {
        let mut hits = Hits::default();
        for c in &found {
            hits.add(c.rule);
        }
        if found.iter().any(|c| c.strategy == Strategy::Null) {
            return Outcome { hits, nulled: true };
        }
        found.sort_unstable_by(|a, b| {
            a.start
                .cmp(&b.start)
                .then(b.end.cmp(&a.end))
                .then(a.rule.cmp(&b.rule))
        });
        let mut pos = 0;
        let mut rest = found.iter().peekable();
        while let Some(c) = rest.next() {
            let mut end = c.end;
            while let Some(next) = rest.next_if(|n| n.start < end) {
                end = end.max(next.end);
            }
            let start = c.start.max(pos);
            out.extend_from_slice(value.get(pos..start).unwrap_or_default());
            let matched = value.get(start..end).unwrap_or_default();
            let _ = strategy::write(c.strategy, matched, &self.tokens, out);
            pos = end;
        }
        out.extend_from_slice(value.get(pos..).unwrap_or_default());
        Outcome {
            hits,
            nulled: false,
        }
    }

    /// Replaces a whole value under `strategy` (column rules). Appends the
    /// replacement to `out`, or returns [`Applied::Null`] for
    /// [`Strategy::Null`]: the caller sends SQL NULL (length -1).
    pub fn apply(&self, strategy: Strategy, value: &[u8], out: &mut Vec<u8>) -> Applied {
        strategy::write(strategy, value, &self.tokens, out)
    }

    /// The rule's name: `column:<pattern>`, `detector:<name>` or
    /// `dictionary:<index>`.
    pub fn rule_name(&self, id: RuleId) -> &str {
        self.names.get(id.index()).map_or("unknown", String::as_str)
    }

    /// The keyword automaton, when there are keywords or terms (for
    /// benchmarks and diagnostics: its raw scan is the ceiling of
    /// [`Masker::mask_value`]). Its patterns are in ASCII lower case; the
    /// masker searches lower-cased copies of values.
    pub fn automaton(&self) -> Option<&aho_corasick::AhoCorasick> {
        self.prefilter.as_ref().map(Prefilter::automaton)
    }
}
