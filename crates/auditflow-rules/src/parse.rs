//! Reading a rules file: TOML to validated, compiled rules.
//!
//! The TOML is walked by hand rather than deserialized so that every error
//! names the rule and the exact key (`when[1].regex`, `threshold.window`).

use std::collections::HashMap;
use std::time::Duration;

use auditflow_core::window::WindowSpec;
use auditflow_core::Severity;
use toml::{Table, Value};

use crate::condition::{Condition, OpKind, Operand};
use crate::error::RulesError;
use crate::field::FieldRef;
use crate::rule::{AlertTemplate, Rule, Threshold};
use crate::template::Template;

const TOP_KEYS: &[&str] = &["rule"];
const RULE_KEYS: &[&str] = &[
    "id",
    "name",
    "description",
    "kind",
    "enabled",
    "when",
    "threshold",
    "alert",
];
const COND_KEYS: &[&str] = &[
    "field",
    "equals",
    "one_of",
    "contains",
    "prefix",
    "regex",
    "exists",
    "not",
    "case_insensitive",
];
const THRESHOLD_KEYS: &[&str] = &["count", "window", "group_by", "cooldown"];
const ALERT_KEYS: &[&str] = &[
    "alert_name",
    "alert_type",
    "severity",
    "description",
    "actor_type",
    "resource_type",
    "resource_id",
    "action_observed",
    "metadata",
];
const METADATA_KEYS: &[&str] = &["tags", "remediation_guidance", "playbook_url"];

/// Longest accepted rule id.
const MAX_ID_LEN: usize = 128;

/// Where in the file we are: the rule's label and the key prefix.
struct Scope<'a> {
    rule: &'a str,
    prefix: String,
}

impl<'a> Scope<'a> {
    fn key(&self, key: &str) -> String {
        if self.prefix.is_empty() {
            key.to_string()
        } else if key.starts_with('[') {
            format!("{}{key}", self.prefix)
        } else {
            format!("{}.{key}", self.prefix)
        }
    }

    fn err(&self, key: &str, message: impl Into<String>) -> RulesError {
        RulesError::invalid(self.rule, &self.key(key), message)
    }

    /// The whole scope itself is at fault (e.g. `when[0]: no operator`).
    fn err_here(&self, message: impl Into<String>) -> RulesError {
        RulesError::invalid(self.rule, &self.prefix, message)
    }

    fn nested(&self, key: &str) -> Scope<'a> {
        Scope {
            rule: self.rule,
            prefix: self.key(key),
        }
    }

    fn check_keys(&self, table: &Table, allowed: &[&str]) -> Result<(), RulesError> {
        match table.keys().find(|k| !allowed.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(self.err(
                k,
                format!("unknown key (expected one of: {})", allowed.join(", ")),
            )),
        }
    }

    fn str_opt<'t>(&self, table: &'t Table, key: &str) -> Result<Option<&'t str>, RulesError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(
                key,
                format!("expected a string, found {}", other.type_str()),
            )),
        }
    }

    fn str_req<'t>(&self, table: &'t Table, key: &str) -> Result<&'t str, RulesError> {
        self.str_opt(table, key)?
            .ok_or_else(|| self.err(key, "is required"))
    }

    /// A required string that must not be blank.
    fn text_req<'t>(&self, table: &'t Table, key: &str) -> Result<&'t str, RulesError> {
        let s = self.str_req(table, key)?;
        if s.trim().is_empty() {
            return Err(self.err(key, "must not be empty"));
        }
        Ok(s)
    }

    fn bool_opt(&self, table: &Table, key: &str) -> Result<Option<bool>, RulesError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::Boolean(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(
                key,
                format!("expected true or false, found {}", other.type_str()),
            )),
        }
    }

    fn table_opt<'t>(&self, table: &'t Table, key: &str) -> Result<Option<&'t Table>, RulesError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::Table(t)) => Ok(Some(t)),
            Some(other) => {
                Err(self.err(key, format!("expected a table, found {}", other.type_str())))
            }
        }
    }

    fn string_list(&self, table: &Table, key: &str) -> Result<Option<Vec<String>>, RulesError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.err(
                        &format!("{key}[{i}]"),
                        format!("expected a string, found {}", other.type_str()),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.err(
                key,
                format!("expected an array of strings, found {}", other.type_str()),
            )),
        }
    }

    fn template(
        &self,
        table: &Table,
        key: &str,
        default: Option<&str>,
        threshold_vars: bool,
    ) -> Result<Template, RulesError> {
        let src = match (self.str_opt(table, key)?, default) {
            (Some(s), _) => s,
            (None, Some(d)) => d,
            (None, None) => return Err(self.err(key, "is required")),
        };
        if src.trim().is_empty() {
            return Err(self.err(key, "must not be empty"));
        }
        Template::parse(src, threshold_vars).map_err(|e| self.err(key, e))
    }

    fn duration(&self, table: &Table, key: &str) -> Result<Option<Duration>, RulesError> {
        match table.get(key) {
            None => Ok(None),
            Some(Value::Integer(secs)) => u64::try_from(*secs)
                .map(|s| Some(Duration::from_secs(s)))
                .map_err(|_| {
                    self.err(
                        key,
                        format!("invalid duration {secs}: must not be negative"),
                    )
                }),
            Some(Value::String(s)) => humantime::parse_duration(s.trim()).map(Some).map_err(|e| {
                self.err(
                    key,
                    format!(
                        "invalid duration \"{s}\" ({e}; expected e.g. \"60s\", \"5m\", \"1h 30m\")"
                    ),
                )
            }),
            Some(other) => Err(self.err(
                key,
                format!(
                    "expected a duration such as \"60s\", found {}",
                    other.type_str()
                ),
            )),
        }
    }
}

/// Parses and validates a whole rules file.
pub(crate) fn parse_rules(src: &str) -> Result<Vec<Rule>, RulesError> {
    let top: Table = toml::from_str(src).map_err(|e| RulesError::Syntax(e.to_string()))?;
    if let Some(k) = top.keys().find(|k| !TOP_KEYS.contains(&k.as_str())) {
        return Err(RulesError::top(
            k,
            "unknown top-level key (rules are [[rule]] tables)",
        ));
    }
    let items = match top.get("rule") {
        None => {
            return Err(RulesError::top(
                "rule",
                "no rules defined (add [[rule]] tables)",
            ))
        }
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(RulesError::top(
                "rule",
                format!("expected [[rule]] tables, found {}", other.type_str()),
            ))
        }
    };
    if items.is_empty() {
        return Err(RulesError::top(
            "rule",
            "no rules defined (add [[rule]] tables)",
        ));
    }
    let mut rules: Vec<Rule> = Vec::with_capacity(items.len());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let position = format!("#{}", i + 1);
        let Value::Table(table) = item else {
            return Err(RulesError::invalid(
                &position,
                "rule",
                format!("expected a table, found {}", item.type_str()),
            ));
        };
        let rule = parse_rule(table, &position)?;
        if let Some(first) = seen.insert(rule.id.clone(), i + 1) {
            return Err(RulesError::invalid(
                &rule.id,
                "id",
                format!("duplicate rule id (rule #{first} has it too)"),
            ));
        }
        rules.push(rule);
    }
    Ok(rules)
}

fn valid_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".into());
    }
    if id.len() > MAX_ID_LEN {
        return Err(format!("is longer than {MAX_ID_LEN} bytes"));
    }
    match id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':')))
    {
        Some(c) => Err(format!(
            "{id:?} contains {c:?} (use ASCII letters, digits, '-', '_', '.', ':')"
        )),
        None => Ok(()),
    }
}

fn parse_rule(table: &Table, position: &str) -> Result<Rule, RulesError> {
    // Until the id is known and valid, the rule is named by its position.
    let anon = Scope {
        rule: position,
        prefix: String::new(),
    };
    let id = anon.str_req(table, "id")?;
    valid_id(id).map_err(|e| anon.err("id", e))?;
    let s = Scope {
        rule: id,
        prefix: String::new(),
    };
    s.check_keys(table, RULE_KEYS)?;
    let name = s.text_req(table, "name")?;
    let description = s.text_req(table, "description")?;
    let enabled = s.bool_opt(table, "enabled")?.unwrap_or(true);
    let kind = s.str_req(table, "kind")?;
    let threshold = match (kind, s.table_opt(table, "threshold")?) {
        ("match", None) => None,
        ("match", Some(_)) => {
            return Err(s.err(
                "threshold",
                "only allowed in threshold rules (kind = \"threshold\")",
            ))
        }
        ("threshold", None) => {
            return Err(s.err("threshold", "is required when kind = \"threshold\""))
        }
        ("threshold", Some(t)) => Some(parse_threshold(t, &s.nested("threshold"))?),
        (other, _) => {
            return Err(s.err(
                "kind",
                format!("unknown kind \"{other}\" (expected \"match\" or \"threshold\")"),
            ))
        }
    };
    let when = parse_when(table, &s)?;
    let alert = match s.table_opt(table, "alert")? {
        Some(t) => parse_alert(t, &s.nested("alert"), threshold.is_some())?,
        None => return Err(s.err("alert", "is required ([rule.alert] table)")),
    };
    Ok(Rule {
        id: id.to_string(),
        name: name.to_string(),
        description: description.to_string(),
        enabled,
        when,
        threshold,
        alert,
    })
}

fn parse_when(table: &Table, s: &Scope<'_>) -> Result<Vec<Condition>, RulesError> {
    let items = match table.get("when") {
        None => return Err(s.err("when", "is required (at least one condition)")),
        Some(Value::Array(items)) => items,
        Some(other) => {
            return Err(s.err(
                "when",
                format!(
                    "expected an array of condition tables, found {}",
                    other.type_str()
                ),
            ))
        }
    };
    if items.is_empty() {
        return Err(s.err("when", "must hold at least one condition"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let cs = s.nested(&format!("when[{i}]"));
            match item {
                Value::Table(t) => parse_condition(t, &cs),
                other => Err(cs.err_here(format!(
                    "expected a condition table, found {}",
                    other.type_str()
                ))),
            }
        })
        .collect()
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Integer(n) => Some(n.to_string()),
        Value::Boolean(b) => Some(b.to_string()),
        _ => None,
    }
}

fn parse_condition(t: &Table, s: &Scope<'_>) -> Result<Condition, RulesError> {
    s.check_keys(t, COND_KEYS)?;
    let field = s.str_req(t, "field")?;
    let field_ref = FieldRef::parse(field).map_err(|e| s.err("field", e))?;
    let present: Vec<(&str, OpKind)> = OpKind::ALL
        .iter()
        .copied()
        .filter(|(key, _)| t.contains_key(*key))
        .collect();
    let (key, kind) =
        match present.as_slice() {
            [one] => *one,
            [] => return Err(s.err_here(
                "no operator (expected one of: equals, one_of, contains, prefix, regex, exists)",
            )),
            many => {
                let names: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
                return Err(s.err_here(format!(
                    "more than one operator ({}); write one condition per operator",
                    names.join(", ")
                )));
            }
        };
    let raw = &t[key];
    let operand = match kind {
        OpKind::Exists => match raw {
            Value::Boolean(b) => Operand::Flag(*b),
            other => {
                return Err(s.err(
                    key,
                    format!("expected true or false, found {}", other.type_str()),
                ))
            }
        },
        OpKind::OneOf => match raw {
            Value::Array(items) => Operand::Many(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        scalar_text(v).ok_or_else(|| {
                            s.err(
                                &format!("{key}[{i}]"),
                                format!("expected a string, found {}", v.type_str()),
                            )
                        })
                    })
                    .collect::<Result<_, _>>()?,
            ),
            other => {
                return Err(s.err(
                    key,
                    format!("expected an array of strings, found {}", other.type_str()),
                ))
            }
        },
        OpKind::Equals => Operand::One(scalar_text(raw).ok_or_else(|| {
            s.err(
                key,
                format!(
                    "expected a string (or integer/boolean), found {}",
                    raw.type_str()
                ),
            )
        })?),
        OpKind::Contains | OpKind::Prefix | OpKind::Regex => match raw {
            Value::String(v) => Operand::One(v.clone()),
            other => {
                return Err(s.err(
                    key,
                    format!("expected a string, found {}", other.type_str()),
                ))
            }
        },
    };
    let negate = s.bool_opt(t, "not")?.unwrap_or(false);
    let case_insensitive = s.bool_opt(t, "case_insensitive")?.unwrap_or(false);
    if case_insensitive && kind == OpKind::Exists {
        return Err(s.err("case_insensitive", "cannot be used with exists"));
    }
    Condition::compile(field, field_ref, kind, operand, negate, case_insensitive)
        .map_err(|e| s.err(key, e))
}

fn parse_threshold(t: &Table, s: &Scope<'_>) -> Result<Threshold, RulesError> {
    s.check_keys(t, THRESHOLD_KEYS)?;
    let count = match t.get("count") {
        None => return Err(s.err("count", "is required")),
        Some(Value::Integer(n)) => u32::try_from(*n)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| s.err("count", format!("must be at least 1 (found {n})")))?,
        Some(other) => {
            return Err(s.err(
                "count",
                format!("expected an integer, found {}", other.type_str()),
            ))
        }
    };
    let window = s
        .duration(t, "window")?
        .ok_or_else(|| s.err("window", "is required"))?;
    if window.is_zero() {
        return Err(s.err("window", "must be greater than zero"));
    }
    let cooldown = s.duration(t, "cooldown")?.unwrap_or(window);
    let group_by = s
        .string_list(t, "group_by")?
        .ok_or_else(|| s.err("group_by", "is required (e.g. [\"user_id\"])"))?;
    if group_by.is_empty() {
        return Err(s.err("group_by", "must name at least one field"));
    }
    let group_fields = group_by
        .iter()
        .enumerate()
        .map(|(i, path)| FieldRef::parse(path).map_err(|e| s.err(&format!("group_by[{i}]"), e)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Threshold {
        spec: WindowSpec {
            window,
            threshold: count,
            cooldown,
        },
        group_by,
        group_fields,
    })
}

fn parse_alert(t: &Table, s: &Scope<'_>, threshold: bool) -> Result<AlertTemplate, RulesError> {
    s.check_keys(t, ALERT_KEYS)?;
    let severity_text = s.str_req(t, "severity")?;
    let severity = Severity::parse(severity_text.trim()).ok_or_else(|| {
        s.err(
            "severity",
            format!("\"{severity_text}\" is not one of INFO, WARNING, ERROR, CRITICAL"),
        )
    })?;
    let (tags, remediation_guidance, playbook_url) = match s.table_opt(t, "metadata")? {
        None => (Vec::new(), String::new(), String::new()),
        Some(m) => {
            let ms = s.nested("metadata");
            ms.check_keys(m, METADATA_KEYS)?;
            (
                ms.string_list(m, "tags")?.unwrap_or_default(),
                ms.str_opt(m, "remediation_guidance")?
                    .unwrap_or_default()
                    .to_string(),
                ms.str_opt(m, "playbook_url")?
                    .unwrap_or_default()
                    .to_string(),
            )
        }
    };
    let literal = |key: &str, default: &str| -> Result<String, RulesError> {
        let v = s.str_opt(t, key)?.unwrap_or(default);
        if v.trim().is_empty() {
            return Err(s.err(key, "must not be empty"));
        }
        Ok(v.to_string())
    };
    Ok(AlertTemplate {
        alert_name: s.template(t, "alert_name", None, threshold)?,
        alert_type: literal("alert_type", "SECURITY")?,
        severity,
        description: s.template(t, "description", None, threshold)?,
        actor_type: literal("actor_type", "USER")?,
        resource_type: literal("resource_type", "SERVER")?,
        resource_id: s.template(t, "resource_id", Some("{server_hostname}"), threshold)?,
        action_observed: s.template(t, "action_observed", None, threshold)?,
        tags,
        remediation_guidance,
        playbook_url,
    })
}
