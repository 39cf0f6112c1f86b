//! Failpoints (feature `failpoints`), for in-process fault-injection tests.
//!
//! Each database's writer evaluates `embedded::<db>::before_commit` (action
//! `return` makes the whole group commit fail and roll back) and
//! `embedded::<db>::after_commit` (action `return` answers every request of
//! a group that *was* committed with an error, like a lost confirm). `<db>` is
//! `broker`, `store` or `window`. `sleep`, `pause` and `panic` work as usual.

/// True when the failpoint is configured with `return`.
#[cfg(feature = "failpoints")]
pub(crate) fn triggered(name: &str) -> bool {
    fail::eval(name, |_| ()).is_some()
}

/// Without the feature, failpoints compile to nothing.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub(crate) fn triggered(_name: &str) -> bool {
    false
}
