//! JSON key rules: which keys' values are masked, and how.

use serde::{Deserialize, Serialize};

use crate::mask::Strategy;
use crate::mask::column::glob;
use crate::mask::strategy::{self, MIN_SECRET, Tokenizer};

/// Masks the value of every JSON key matching `pattern`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsonKeyRule {
    /// The key: matched against the whole decoded key name, ASCII
    /// case-insensitively (`password` matches `Password` and
    /// `"pass\u0077ord"`), with `*` standing for any run of characters and
    /// `?` for one byte (`*token`, `secret*`). Paths are not patterns: the
    /// rule applies at any depth.
    pub pattern: String,
    /// What replaces the value (see [`JsonKeys`]).
    pub strategy: Strategy,
}

/// Why key rules could not be compiled.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRuleError {
    /// A rule's pattern is empty.
    #[error("JSON key rule {index} has an empty pattern")]
    EmptyPattern {
        /// The rule's position.
        index: usize,
    },
    /// A rule uses [`Strategy::Token`] but the token secret is shorter than
    /// 16 bytes.
    #[error("token strategy needs a secret of at least 16 bytes, got {len}")]
    WeakTokenSecret {
        /// The secret's length in bytes.
        len: usize,
    },
}

/// A compiled set of [`JsonKeyRule`]s. Cheap to share (`Arc<JsonKeys>`).
///
/// The value under a matching key is replaced, wherever it is:
/// - a string: the strategy over its decoded text, written back as a JSON
///   string (`"****"`, `"****1234"`, `"tok_…"`), or `null` under
///   [`Strategy::Null`];
/// - a number, `true` or `false`: the strategy over its JSON text, as a
///   string (`"****"`; `"****5678"` for `12345678` under `partial:4`), or
///   `null`;
/// - `null`: left alone (nothing to hide, nothing counted);
/// - an object or array: every scalar inside, at any depth, as above; keys
///   inside stay. The outermost matching key decides the strategy.
///
/// The first matching rule (in configuration order) wins.
#[derive(Clone)]
pub struct JsonKeys {
    /// Lower-cased patterns and strategies.
    rules: Vec<(Box<[u8]>, Strategy)>,
    /// `key:<pattern>` per rule.
    names: Vec<String>,
    pub(super) tokens: Tokenizer,
}

impl std::fmt::Debug for JsonKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JsonKeys")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}

impl Default for JsonKeys {
    fn default() -> JsonKeys {
        JsonKeys {
            rules: Vec::new(),
            names: Vec::new(),
            tokens: Tokenizer::new(&[]),
        }
    }
}

impl JsonKeys {
    /// Compiles `rules`. `token_secret` keys [`Strategy::Token`] (the same
    /// secret as the target's [`Masker`](crate::mask::Masker), so that a
    /// value gets the same token wherever it is masked); it must be at least
    /// 16 bytes when a rule uses tokens.
    pub fn new(rules: &[JsonKeyRule], token_secret: &[u8]) -> Result<JsonKeys, KeyRuleError> {
        let mut compiled = Vec::with_capacity(rules.len());
        for (index, rule) in rules.iter().enumerate() {
            if rule.pattern.is_empty() {
                return Err(KeyRuleError::EmptyPattern { index });
            }
            if rule.strategy == Strategy::Token && token_secret.len() < MIN_SECRET {
                return Err(KeyRuleError::WeakTokenSecret {
                    len: token_secret.len(),
                });
            }
            let lower = rule.pattern.to_ascii_lowercase().into_bytes();
            compiled.push((lower.into_boxed_slice(), rule.strategy));
        }
        Ok(JsonKeys {
            names: rules.iter().map(|r| format!("key:{}", r.pattern)).collect(),
            rules: compiled,
            tokens: Tokenizer::new(token_secret),
        })
    }

    /// True when there is no rule.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The first rule matching the decoded key `key`: its position and
    /// strategy.
    pub fn find(&self, key: &[u8]) -> Option<(usize, Strategy)> {
        self.rules
            .iter()
            .enumerate()
            .find(|(_, (pattern, _))| glob(pattern, key))
            .map(|(i, &(_, strategy))| (i, strategy))
    }

    /// Rule `index`'s name, `key:<pattern>`.
    pub fn rule_name(&self, index: usize) -> &str {
        self.names.get(index).map_or("key:unknown", String::as_str)
    }

    /// Appends `value` replaced under `strategy`; false for
    /// [`Strategy::Null`] (nothing appended).
    pub(super) fn apply(&self, strategy: Strategy, value: &[u8], out: &mut Vec<u8>) -> bool {
        strategy::write(strategy, value, &self.tokens, out) == crate::mask::Applied::Written
    }
}
