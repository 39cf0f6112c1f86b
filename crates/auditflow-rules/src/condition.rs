//! Compiled `when` conditions.

use auditflow_core::Event;
use regex::{Regex, RegexBuilder};

use crate::field::FieldRef;

/// The operator of a condition, as written in the rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    /// `equals = "x"`: the value is exactly `x`.
    Equals,
    /// `one_of = ["x", "y"]`: the value is one of the list.
    OneOf,
    /// `contains = "x"`: the value contains `x`.
    Contains,
    /// `prefix = "x"`: the value starts with `x`.
    Prefix,
    /// `regex = "..."`: the regular expression matches somewhere in the value.
    Regex,
    /// `exists = true|false`: the field is present (or absent).
    Exists,
}

impl OpKind {
    pub(crate) const ALL: [(&'static str, OpKind); 6] = [
        ("equals", OpKind::Equals),
        ("one_of", OpKind::OneOf),
        ("contains", OpKind::Contains),
        ("prefix", OpKind::Prefix),
        ("regex", OpKind::Regex),
        ("exists", OpKind::Exists),
    ];

    /// The key in the rules file.
    pub fn key(self) -> &'static str {
        OpKind::ALL
            .iter()
            .find(|(_, k)| *k == self)
            .map_or("?", |(name, _)| name)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Equals(String),
    OneOf(Vec<String>),
    Contains(String),
    Prefix(String),
    /// Also used for the case-insensitive forms of the literal operators.
    Regex(Regex),
    Exists(bool),
}

/// One compiled condition of a rule's `when` list.
#[derive(Debug, Clone)]
pub struct Condition {
    field_path: String,
    field: FieldRef,
    kind: OpKind,
    op: Op,
    negate: bool,
}

/// The operand of a condition, already converted to strings.
pub(crate) enum Operand {
    One(String),
    Many(Vec<String>),
    Flag(bool),
}

impl Condition {
    /// Compiles a condition. Errors are plain messages; the caller adds rule and key.
    pub(crate) fn compile(
        field_path: &str,
        field: FieldRef,
        kind: OpKind,
        operand: Operand,
        negate: bool,
        case_insensitive: bool,
    ) -> Result<Condition, String> {
        let op = match (kind, operand) {
            (OpKind::Exists, Operand::Flag(present)) => Op::Exists(present),
            (OpKind::Regex, Operand::One(pattern)) => Op::Regex(
                RegexBuilder::new(&pattern)
                    .case_insensitive(case_insensitive)
                    .build()
                    .map_err(|e| format!("invalid regex {pattern:?}: {e}"))?,
            ),
            (OpKind::OneOf, Operand::Many(values)) => {
                if values.is_empty() {
                    return Err("one_of needs at least one value".into());
                }
                if case_insensitive {
                    let alternatives: Vec<String> =
                        values.iter().map(|v| regex::escape(v)).collect();
                    literal_regex(&format!("^(?:{})$", alternatives.join("|")))?
                } else {
                    Op::OneOf(values)
                }
            }
            (OpKind::Equals, Operand::One(v)) if case_insensitive => {
                literal_regex(&format!("^(?:{})$", regex::escape(&v)))?
            }
            (OpKind::Contains, Operand::One(v)) if case_insensitive => {
                literal_regex(&regex::escape(&v))?
            }
            (OpKind::Prefix, Operand::One(v)) if case_insensitive => {
                literal_regex(&format!("^(?:{})", regex::escape(&v)))?
            }
            (OpKind::Equals, Operand::One(v)) => Op::Equals(v),
            (OpKind::Contains, Operand::One(v)) => Op::Contains(v),
            (OpKind::Prefix, Operand::One(v)) => Op::Prefix(v),
            (kind, _) => return Err(format!("wrong operand type for {}", kind.key())),
        };
        Ok(Condition {
            field_path: field_path.to_string(),
            field,
            kind,
            op,
            negate,
        })
    }

    /// The field path the condition tests.
    pub fn field(&self) -> &str {
        &self.field_path
    }

    /// The operator.
    pub fn op(&self) -> OpKind {
        self.kind
    }

    /// Whether the condition is negated (`not = true`).
    pub fn negated(&self) -> bool {
        self.negate
    }

    /// Whether the condition holds for `event`. An absent field fails every
    /// operator except `exists = false`; `not = true` inverts the result.
    #[inline]
    pub fn matches(&self, event: &Event) -> bool {
        let value = self.field.get(event);
        let held = match (&self.op, value.as_deref()) {
            (Op::Exists(present), v) => v.is_some() == *present,
            (_, None) => false,
            (Op::Equals(want), Some(v)) => v == want,
            (Op::OneOf(list), Some(v)) => list.iter().any(|w| w == v),
            (Op::Contains(needle), Some(v)) => v.contains(needle.as_str()),
            (Op::Prefix(prefix), Some(v)) => v.starts_with(prefix.as_str()),
            (Op::Regex(re), Some(v)) => re.is_match(v),
        };
        held != self.negate
    }
}

fn literal_regex(pattern: &str) -> Result<Op, String> {
    RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map(Op::Regex)
        .map_err(|e| format!("cannot compile case-insensitive match: {e}"))
}
