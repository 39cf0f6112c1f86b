//! Errors of loading a rules file.

use std::path::PathBuf;

/// Why a rules file was rejected.
///
/// Every validation error names the rule (by id, or by position `#N` when the
/// id itself is missing or invalid) and the key, e.g.
/// `rule 'ANLY-SEC-001': threshold.window: invalid duration "6o s"`.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// The file is not valid TOML.
    #[error("invalid TOML: {0}")]
    Syntax(String),
    /// A key is missing, unknown or has an invalid value.
    #[error("{}{key}: {message}", rule_prefix(.rule.as_deref()))]
    Invalid {
        /// The rule's id, or `#N` (1-based position) when it has no valid id;
        /// `None` for keys outside any rule.
        rule: Option<String>,
        /// The key path within the rule, e.g. `threshold.window` or `when[1].regex`.
        key: String,
        /// What is wrong, in words.
        message: String,
    },
    /// The rules file could not be read.
    #[error("cannot read rules file {}: {source}", .path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The rules file was read but is invalid.
    #[error("rules file {}: {source}", .path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        source: Box<RulesError>,
    },
}

fn rule_prefix(rule: Option<&str>) -> String {
    match rule {
        None => String::new(),
        Some(label) if label.starts_with('#') => format!("rule {label}: "),
        Some(id) => format!("rule '{id}': "),
    }
}

impl RulesError {
    pub(crate) fn invalid(rule: &str, key: &str, message: impl Into<String>) -> Self {
        RulesError::Invalid {
            rule: Some(rule.to_string()),
            key: key.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn top(key: &str, message: impl Into<String>) -> Self {
        RulesError::Invalid {
            rule: None,
            key: key.to_string(),
            message: message.into(),
        }
    }
}
