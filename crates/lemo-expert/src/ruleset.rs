//! Rule books as data: [`RuleSet`], read from a TOML file.
//!
//! ```toml
//! name = "my-book"
//! description = "optional"
//!
//! [[rule]]
//! name = "low-train-accuracy"      # unique within the book
//! when = "A1 < TA1"                # METRIC [- METRIC] (< | <= | > | >=) (THRESHOLD | number)
//! raise = ["ACL", "ADL", "AMK", "ASC"]
//! add = "PA1"                      # a priority code, or a fixed number
//! ```
//!
//! Metrics: A1 A2 E1 E2 F P (Table 1; energies in kWh, F in images/s). Thresholds: TA1 TA2 TE1
//! TE2 TF OT UT. Priorities: PA1 PA2 PE1 PE2 PF. Instructions: the fifteen codes of Table 2.

use crate::{Assessment, Command, Instruction, RuleBook};
use lemo_metrics::{Metric, Observed, Priority, Threshold, UserMetrics};
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// The paper's rule book (Algorithm 2) as a rule book file, shipped in the crate.
pub const PAPER_RULEBOOK_TOML: &str = include_str!("../rulebooks/paper.toml");

/// Why a rule book could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RuleBookError {
    /// The text is not a valid rule book document; the message gives line, column and field.
    #[error("invalid rule book: {0}")]
    Toml(#[from] toml::de::Error),
    /// One rule is wrong.
    #[error("rule {index} `{name}` (line {line}): {message}")]
    Rule {
        /// 1-based position of the rule in the book.
        index: usize,
        /// The rule's name.
        name: String,
        /// 1-based line of the rule in the file.
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The book has no `[[rule]]`.
    #[error("the rule book has no [[rule]]")]
    Empty,
    /// The rule book could not be written as TOML.
    #[error("cannot write the rule book as TOML: {0}")]
    Write(#[from] toml::ser::Error),
    /// A rule book file could not be read.
    #[error("cannot read rule book {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A rule book file is invalid.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong in it.
        source: Box<RuleBookError>,
    },
}

/// The left side of a condition: one metric, or the difference of two.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operand {
    /// A metric of Table 1, e.g. `A1`.
    Metric(Metric),
    /// `a - b`, e.g. `A1 - A2`.
    Difference(Metric, Metric),
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Comparison {
    /// `<`
    Less,
    /// `<=`
    LessOrEqual,
    /// `>`
    Greater,
    /// `>=`
    GreaterOrEqual,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::Less => "<",
            Comparison::LessOrEqual => "<=",
            Comparison::Greater => ">",
            Comparison::GreaterOrEqual => ">=",
        }
    }

    fn holds(self, a: f64, b: f64) -> bool {
        match self {
            Comparison::Less => a < b,
            Comparison::LessOrEqual => a <= b,
            Comparison::Greater => a > b,
            Comparison::GreaterOrEqual => a >= b,
        }
    }
}

/// The right side of a condition: a user threshold or a fixed number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bound {
    /// A threshold of Table 1, e.g. `TA1`.
    Threshold(Threshold),
    /// A fixed number (in the metric's unit).
    Value(f64),
}

/// When a rule fires, e.g. `A1 - A2 > OT`. Written and read as that text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Condition {
    /// The measured side.
    pub left: Operand,
    /// The comparison.
    pub comparison: Comparison,
    /// The threshold side.
    pub right: Bound,
}

impl Condition {
    /// Whether the condition holds for these metrics (never when a value is NaN).
    pub fn holds(&self, user: &UserMetrics, observed: &Observed) -> bool {
        let left = match self.left {
            Operand::Metric(m) => observed.get(m),
            Operand::Difference(a, b) => observed.get(a) - observed.get(b),
        };
        let right = match self.right {
            Bound::Threshold(t) => user.threshold(t),
            Bound::Value(v) => v,
        };
        self.comparison.holds(left, right)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.left {
            Operand::Metric(m) => write!(f, "{m}")?,
            Operand::Difference(a, b) => write!(f, "{a} - {b}")?,
        }
        write!(f, " {} ", self.comparison.symbol())?;
        match self.right {
            Bound::Threshold(t) => write!(f, "{t}"),
            Bound::Value(v) => write!(f, "{v:?}"),
        }
    }
}

/// A condition text that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid condition `{text}`: {reason}; expected METRIC [- METRIC] (< | <= | > | >=) (THRESHOLD | number), e.g. `A1 - A2 > OT`"
)]
pub struct ConditionError {
    /// The text given.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

#[derive(Debug, PartialEq)]
enum Token<'a> {
    Word(&'a str),
    Number(f64),
    Minus,
    Op(Comparison),
}

fn tokenize(text: &str) -> Result<Vec<Token<'_>>, String> {
    let mut tokens = Vec::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(&c) = bytes.get(i) {
        if c.is_ascii_whitespace() {
            i += 1;
        } else if c == b'-' {
            tokens.push(Token::Minus);
            i += 1;
        } else if c == b'<' || c == b'>' {
            let or_equal = bytes.get(i + 1) == Some(&b'=');
            tokens.push(Token::Op(match (c, or_equal) {
                (b'<', false) => Comparison::Less,
                (b'<', true) => Comparison::LessOrEqual,
                (_, false) => Comparison::Greater,
                (_, true) => Comparison::GreaterOrEqual,
            }));
            i += if or_equal { 2 } else { 1 };
        } else if c.is_ascii_digit() || c == b'.' {
            let start = i;
            while let Some(&d) = bytes.get(i) {
                let exponent_sign = (d == b'-' || d == b'+')
                    && matches!(
                        i.checked_sub(1).and_then(|j| bytes.get(j)),
                        Some(b'e' | b'E')
                    );
                if d.is_ascii_digit()
                    || d == b'.'
                    || d == b'e'
                    || d == b'E'
                    || d == b'_'
                    || exponent_sign
                {
                    i += 1;
                } else {
                    break;
                }
            }
            let literal = text[start..i].replace('_', "");
            let v: f64 = literal
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite())
                .ok_or_else(|| format!("`{}` is not a finite number", &text[start..i]))?;
            tokens.push(Token::Number(v));
        } else if c.is_ascii_alphabetic() {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_')
            {
                i += 1;
            }
            tokens.push(Token::Word(&text[start..i]));
        } else {
            let ch = text[i..].chars().next().unwrap_or('?');
            return Err(format!("unexpected character `{ch}`"));
        }
    }
    Ok(tokens)
}

impl FromStr for Condition {
    type Err = ConditionError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let fail = |reason: String| ConditionError {
            text: text.to_string(),
            reason,
        };
        let tokens = tokenize(text).map_err(fail)?;
        let metric = |t: Option<&Token<'_>>| match t {
            Some(Token::Word(w)) => w.parse::<Metric>().map_err(|e| fail(e.to_string())),
            _ => Err(fail("a metric (A1 A2 E1 E2 F P) is missing".to_string())),
        };
        let mut it = tokens.iter().peekable();
        let first = metric(it.next())?;
        let left = if it.peek() == Some(&&Token::Minus) {
            it.next();
            Operand::Difference(first, metric(it.next())?)
        } else {
            Operand::Metric(first)
        };
        let comparison = match it.next() {
            Some(Token::Op(c)) => *c,
            _ => return Err(fail("a comparison (<, <=, >, >=) is missing".to_string())),
        };
        let right = match (it.next(), it.next()) {
            (Some(Token::Word(w)), None) => {
                Bound::Threshold(w.parse::<Threshold>().map_err(|e| fail(e.to_string()))?)
            }
            (Some(Token::Number(v)), None) => Bound::Value(*v),
            (Some(Token::Minus), Some(Token::Number(v))) if it.next().is_none() => Bound::Value(-v),
            (None, _) => {
                return Err(fail(
                    "a threshold or number is missing after the comparison".to_string(),
                ));
            }
            _ => return Err(fail("unexpected text after the comparison".to_string())),
        };
        Ok(Condition {
            left,
            comparison,
            right,
        })
    }
}

impl Serialize for Condition {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Condition {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(de::Error::custom)
    }
}

/// How much a rule adds to each instruction it raises: a user priority, or a fixed number.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Weight {
    /// A priority of Table 1 (written as its code, e.g. `"PA1"`).
    Priority(Priority),
    /// A fixed weight (written as a number).
    Value(f64),
}

impl Weight {
    /// The weight under these user metrics.
    pub fn value(&self, user: &UserMetrics) -> f64 {
        match self {
            Weight::Priority(p) => user.priority(*p),
            Weight::Value(v) => *v,
        }
    }
}

impl Serialize for Weight {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Weight::Priority(p) => s.serialize_str(p.code()),
            Weight::Value(v) => s.serialize_f64(*v),
        }
    }
}

impl<'de> Deserialize<'de> for Weight {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct WeightVisitor;
        impl Visitor<'_> for WeightVisitor {
            type Value = Weight;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a priority code (PA1 PA2 PE1 PE2 PF) or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Weight, E> {
                v.parse().map(Weight::Priority).map_err(E::custom)
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Weight, E> {
                if v.is_finite() {
                    Ok(Weight::Value(v))
                } else {
                    Err(E::custom("a fixed weight must be a finite number"))
                }
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Weight, E> {
                self.visit_f64(v as f64)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Weight, E> {
                self.visit_f64(v as f64)
            }
        }
        d.deserialize_any(WeightVisitor)
    }
}

/// One rule: when `when` holds, add `add` to every instruction in `raise`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// A name unique within the book (reported when the rule fires).
    pub name: String,
    /// The condition.
    pub when: Condition,
    /// The instructions raised.
    pub raise: Vec<Instruction>,
    /// The weight added to each.
    pub add: Weight,
}

/// A rule book read from data: rules applied in order, each adding its weight to the
/// instructions it raises when its condition holds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleSet {
    /// The book's name.
    pub name: String,
    /// What the book is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The rules, in order.
    #[serde(rename = "rule")]
    pub rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRuleSet {
    name: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default, rename = "rule")]
    rules: Vec<toml::Spanned<Rule>>,
}

impl RuleSet {
    /// Parses and checks a rule book written in TOML (format in the module docs). Errors give
    /// the line, and the rule's name when a rule is at fault.
    pub fn from_toml_str(text: &str) -> Result<Self, RuleBookError> {
        let raw: RawRuleSet = toml::from_str(text)?;
        if raw.rules.is_empty() {
            return Err(RuleBookError::Empty);
        }
        let mut rules = Vec::with_capacity(raw.rules.len());
        for (n, spanned) in raw.rules.into_iter().enumerate() {
            let line = text
                .get(..spanned.span().start)
                .map_or(1, |s| s.matches('\n').count() + 1);
            let rule = spanned.into_inner();
            let fail = |message: String| RuleBookError::Rule {
                index: n + 1,
                name: rule.name.clone(),
                line,
                message,
            };
            if rule.name.trim().is_empty() {
                return Err(fail("the name is empty".to_string()));
            }
            if rules.iter().any(|r: &Rule| r.name == rule.name) {
                return Err(fail("another rule has the same name".to_string()));
            }
            if rule.raise.is_empty() {
                return Err(fail("`raise` lists no instruction".to_string()));
            }
            for (k, i) in rule.raise.iter().enumerate() {
                if rule.raise.iter().take(k).any(|earlier| earlier == i) {
                    return Err(fail(format!("`raise` lists {i} twice")));
                }
            }
            rules.push(rule);
        }
        Ok(RuleSet {
            name: raw.name,
            description: raw.description,
            rules,
        })
    }

    /// Reads and checks a rule book file; errors name the file.
    ///
    /// ```
    /// # use lemo_metrics::{Observed, PaperDataset};
    /// # let dir = std::env::temp_dir().join(format!("lemo-doc-{}", std::process::id()));
    /// # std::fs::create_dir_all(&dir)?;
    /// # let path = dir.join("my-book.toml");
    /// # std::fs::write(&path, lemo_expert::PAPER_RULEBOOK_TOML)?;
    /// # let user = PaperDataset::Cifar10.appendix_configuration();
    /// # let observed = Observed::new(0.8, 0.7, 2e-3, 2e-5, 15_000.0, 300_000);
    /// let book = lemo_expert::RuleSet::from_path(&path)?;
    /// let next = lemo_expert::RuleBook::advise(&book, &user, &observed);
    /// println!("{}", next.render());
    /// # assert_eq!(next.len(), 4);
    /// # std::fs::remove_dir_all(&dir)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn from_path(path: impl AsRef<Path>) -> Result<Self, RuleBookError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| RuleBookError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_toml_str(&text).map_err(|e| RuleBookError::File {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// The paper's rule book, loaded from the shipped file [`PAPER_RULEBOOK_TOML`]; behaves
    /// exactly as [`crate::PaperRuleBook`].
    pub fn paper() -> Result<Self, RuleBookError> {
        Self::from_toml_str(PAPER_RULEBOOK_TOML)
    }

    /// Writes the book as TOML (the format [`RuleSet::from_toml_str`] reads).
    pub fn to_toml_string(&self) -> Result<String, RuleBookError> {
        Ok(toml::to_string(self)?)
    }

    /// The rules whose condition holds, in order.
    pub fn firing<'a>(
        &'a self,
        user: &'a UserMetrics,
        observed: &'a Observed,
    ) -> impl Iterator<Item = &'a Rule> + 'a {
        self.rules
            .iter()
            .filter(move |r| r.when.holds(user, observed))
    }
}

impl RuleBook for RuleSet {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn instructions(&self, user: &UserMetrics, observed: &Observed) -> Command {
        let mut cmd = Command::new();
        for rule in self.firing(user, observed) {
            let w = rule.add.value(user);
            for i in &rule.raise {
                cmd.add(*i, w);
            }
        }
        cmd
    }

    fn fired(&self, user: &UserMetrics, observed: &Observed) -> Vec<String> {
        self.firing(user, observed)
            .map(|r| r.name.clone())
            .collect()
    }

    fn assess(&self, user: &UserMetrics, observed: &Observed) -> Assessment {
        let mut out = Assessment::default();
        for rule in self.firing(user, observed) {
            let w = rule.add.value(user);
            for i in &rule.raise {
                out.command.add(*i, w);
            }
            out.fired.push(rule.name.clone());
        }
        out
    }
}
