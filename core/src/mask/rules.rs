//! What a rule set says (the configuration side of masking) and what masking
//! reports back: rule ids, hit counts and load errors.

use serde::{Deserialize, Serialize};

/// How a matched value (or a whole column value) is replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Replace with `****`.
    Redact,
    /// Replace with `****` followed by the last `keep_last` characters, when
    /// the value has at least `2 * keep_last` characters (as many hidden as
    /// shown); shorter values are fully redacted.
    Partial {
        /// How many trailing characters stay visible (4 for card numbers).
        keep_last: usize,
    },
    /// Replace with a deterministic token, `tok_` followed by the base64url
    /// (unpadded) first 16 bytes of HMAC-SHA-256(gateway secret, value): equal
    /// values give equal tokens, so they still join and group.
    Token,
    /// Replace the whole value with SQL NULL. Inside a content match this
    /// nulls the whole value, not just the matched part.
    Null,
}

impl std::str::FromStr for Strategy {
    type Err = String;

    /// `redact`, `partial` (the last 4 stay), `partial:N` (1–64), `token`
    /// or `null`: how configs and grants name a strategy.
    fn from_str(s: &str) -> Result<Strategy, String> {
        match s {
            "redact" => Ok(Strategy::Redact),
            "partial" => Ok(Strategy::Partial { keep_last: 4 }),
            "token" => Ok(Strategy::Token),
            "null" => Ok(Strategy::Null),
            other => match other.strip_prefix("partial:").map(str::parse::<usize>) {
                Some(Ok(n)) if (1..=64).contains(&n) => Ok(Strategy::Partial { keep_last: n }),
                _ => Err(format!(
                    "unknown strategy {other:?}: use redact, partial, partial:N, token or null"
                )),
            },
        }
    }
}

/// A content detector: finds one kind of sensitive value inside text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Detector {
    /// Payment card numbers: 13–19 digits, optionally grouped by spaces or
    /// dashes, with a known issuer prefix and length and a valid Luhn digit.
    CardNumber,
    /// E-mail addresses with a dotted domain and an alphabetic top-level
    /// label of two or more characters (`user@example.com`, not `foo@bar`).
    Email,
    /// US social security numbers written `AAA-GG-SSSS` or `AAA GG SSSS`,
    /// with valid area, group and serial numbers.
    UsSsn,
    /// IBANs (upper case, compact or grouped by four) of a known country,
    /// with the country's length and a valid mod-97 check.
    Iban,
    /// Phone numbers: `+` and 8–15 digits (E.164, optionally grouped), or
    /// NANP numbers written with separators (`(415) 555-2671`,
    /// `415-555-2671`, `415.555.2671`, `1-415-555-2671`). Bare digit strings
    /// are not phone numbers.
    Phone,
    /// AWS access key ids (`AKIA…`, `ASIA…`, 20 characters).
    AwsAccessKey,
    /// AWS secret access keys, only next to their name
    /// (`aws_secret_access_key = …`, `SecretAccessKey: …`): 40 base64
    /// characters. The name stays; the key is replaced.
    AwsSecretKey,
    /// Google API keys (`AIza…`, 39 characters).
    GcpApiKey,
    /// Azure storage and service-bus keys in connection strings
    /// (`AccountKey=…`, `SharedAccessKey=…`). The name stays.
    AzureStorageKey,
    /// GitHub tokens (`ghp_`, `gho_`, `ghs_`, `ghu_`, `ghr_`, `github_pat_`).
    GithubToken,
    /// Stripe secret and restricted keys (`sk_live_`, `rk_live_`,
    /// `sk_test_`, `rk_test_`).
    StripeKey,
    /// Slack tokens (`xoxb-`, `xoxp-`, `xoxa-`, `xoxr-`, `xoxs-`, `xoxe-`,
    /// `xapp-`).
    SlackToken,
    /// JSON web tokens (`eyJ….eyJ….signature`).
    Jwt,
    /// PEM private-key blocks, `-----BEGIN … PRIVATE KEY-----` through the
    /// matching `-----END … PRIVATE KEY-----` (or the end of the value when
    /// the block is cut off).
    PemPrivateKey,
}

impl Detector {
    /// Every detector, in declaration order.
    pub const ALL: [Detector; 14] = [
        Detector::CardNumber,
        Detector::Email,
        Detector::UsSsn,
        Detector::Iban,
        Detector::Phone,
        Detector::AwsAccessKey,
        Detector::AwsSecretKey,
        Detector::GcpApiKey,
        Detector::AzureStorageKey,
        Detector::GithubToken,
        Detector::StripeKey,
        Detector::SlackToken,
        Detector::Jwt,
        Detector::PemPrivateKey,
    ];

    /// The detector's name in configuration and rule names (`card_number`).
    pub fn name(self) -> &'static str {
        match self {
            Detector::CardNumber => "card_number",
            Detector::Email => "email",
            Detector::UsSsn => "us_ssn",
            Detector::Iban => "iban",
            Detector::Phone => "phone",
            Detector::AwsAccessKey => "aws_access_key",
            Detector::AwsSecretKey => "aws_secret_key",
            Detector::GcpApiKey => "gcp_api_key",
            Detector::AzureStorageKey => "azure_storage_key",
            Detector::GithubToken => "github_token",
            Detector::StripeKey => "stripe_key",
            Detector::SlackToken => "slack_token",
            Detector::Jwt => "jwt",
            Detector::PemPrivateKey => "pem_private_key",
        }
    }

    /// The detector named `name` (`card_number`), if there is one.
    pub fn from_name(name: &str) -> Option<Detector> {
        Detector::ALL.iter().copied().find(|d| d.name() == name)
    }
}

/// Masks every value of the columns whose name matches `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColumnRule {
    /// A case-insensitive glob (`*` any run, `?` one character). Without a
    /// `.` it matches the bare column name (`ssn`, `email*`); with one, the
    /// part before the last `.` matches the table (`*.card_number`,
    /// `users.email`), and a `*` table part also matches when the table is
    /// unknown.
    pub pattern: String,
    /// What replaces the value.
    pub strategy: Strategy,
}

/// Masks literal terms (customer names, internal host names) wherever they
/// occur as whole words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DictionaryRule {
    /// The terms. A term that starts (ends) with a letter or digit only
    /// matches where the text before (after) it is not a letter or digit.
    pub terms: Vec<String>,
    /// Match ASCII letters regardless of case (`acme` finds `ACME`);
    /// non-ASCII letters always match exactly.
    #[serde(default)]
    pub case_insensitive: bool,
    /// What replaces each occurrence.
    pub strategy: Strategy,
}

/// One target's masking rules.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct MaskRules {
    /// Whole-column rules, first match wins.
    pub columns: Vec<ColumnRule>,
    /// Content detectors and what replaces their matches; each at most once.
    pub detectors: Vec<(Detector, Strategy)>,
    /// Literal dictionaries.
    pub dictionaries: Vec<DictionaryRule>,
}

impl MaskRules {
    /// True when no rule is configured (masking is off).
    pub fn is_empty(&self) -> bool {
        self.columns.is_empty() && self.detectors.is_empty() && self.dictionaries.is_empty()
    }

    /// These rules with `more` added, never loosened: column rules of
    /// `more` come after these (the first match wins, so a column these
    /// rules cover keeps its strategy), a detector these rules already
    /// have keeps its strategy, and dictionaries are added.
    pub fn narrowed(&self, more: &MaskRules) -> MaskRules {
        let mut rules = self.clone();
        rules.columns.extend(more.columns.iter().cloned());
        for (detector, strategy) in &more.detectors {
            if !rules.detectors.iter().any(|(d, _)| d == detector) {
                rules.detectors.push((*detector, *strategy));
            }
        }
        rules.dictionaries.extend(more.dictionaries.iter().cloned());
        rules
    }
}

/// Identifies one rule of a compiled [`Masker`](super::Masker); its name is
/// [`Masker::rule_name`](super::Masker::rule_name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub(super) u32);

impl RuleId {
    /// The rule's position: column rules first, then detectors, then
    /// dictionaries, each in configuration order.
    pub fn index(self) -> usize {
        self.0 as usize
    }
}

/// Which rules hit, how many times each: rule ids and counts, never the
/// matched values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hits(Vec<(RuleId, u32)>);

impl Hits {
    pub(super) fn add(&mut self, rule: RuleId) {
        match self.0.iter_mut().find(|(r, _)| *r == rule) {
            Some((_, n)) => *n = n.saturating_add(1),
            None => self.0.push((rule, 1)),
        }
    }

    /// Each rule that hit, with its number of matches, in first-hit order.
    pub fn iter(&self) -> impl Iterator<Item = (RuleId, u32)> + '_ {
        self.0.iter().copied()
    }

    /// How many matches of `rule`.
    pub fn count(&self, rule: RuleId) -> u32 {
        self.0
            .iter()
            .find(|(r, _)| *r == rule)
            .map_or(0, |(_, n)| *n)
    }

    /// All matches, over all rules.
    pub fn total(&self) -> u32 {
        self.0
            .iter()
            .fold(0u32, |acc, (_, n)| acc.saturating_add(*n))
    }

    /// True when nothing hit.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'a> IntoIterator for &'a Hits {
    type Item = (RuleId, u32);
    type IntoIter = std::iter::Copied<std::slice::Iter<'a, (RuleId, u32)>>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().copied()
    }
}

/// What [`Masker::mask_value`](super::Masker::mask_value) did to a value it
/// rewrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    pub(super) hits: Hits,
    pub(super) nulled: bool,
}

impl Outcome {
    /// Which rules hit, how many times.
    pub fn hits(&self) -> &Hits {
        &self.hits
    }

    /// True when a matching rule's strategy is [`Strategy::Null`]: the whole
    /// value must be sent as SQL NULL, and nothing was appended to `out`.
    pub fn nulled(&self) -> bool {
        self.nulled
    }
}

/// Why a rule set could not be compiled. Messages name rules by position,
/// never by the terms they hold.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MaskError {
    /// A column rule's pattern is empty.
    #[error("column rule {index} has an empty pattern")]
    EmptyColumnPattern {
        /// The rule's position in `columns`.
        index: usize,
    },
    /// A dictionary term is empty (it would match everywhere), longer than
    /// 1024 bytes, or contains NUL (which PostgreSQL text cannot).
    #[error("dictionary {dictionary}, term {term}: empty, over 1024 bytes, or containing NUL")]
    BadTerm {
        /// The dictionary's position in `dictionaries`.
        dictionary: usize,
        /// The term's position in the dictionary.
        term: usize,
    },
    /// The same detector is listed twice.
    #[error("detector {0:?} is listed more than once")]
    DuplicateDetector(Detector),
    /// A rule uses [`Strategy::Token`] but the token secret is shorter than
    /// 16 bytes (tokens of short values would be guessable).
    #[error("token strategy needs a secret of at least 16 bytes, got {len}")]
    WeakTokenSecret {
        /// The secret's length in bytes.
        len: usize,
    },
    /// More rules or terms than one automaton takes.
    #[error("too many masking rules or terms")]
    TooManyRules,
    /// The keyword automaton could not be built.
    #[error("building the masking automaton: {0}")]
    Automaton(String),
}
