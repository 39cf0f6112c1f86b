//! Data limit: how much of a chunk may still be forwarded.

/// What to do with a chunk of `len` bytes when `sent` bytes were already
/// forwarded: forward `allowed` bytes, then close if `close`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Allowance {
    pub(crate) allowed: usize,
    pub(crate) close: bool,
}

pub(crate) fn allowance(limit: Option<u64>, sent: u64, len: usize) -> Allowance {
    match limit {
        None => Allowance {
            allowed: len,
            close: false,
        },
        Some(limit) => {
            let room = limit.saturating_sub(sent);
            let allowed = usize::try_from(room).map_or(len, |r| r.min(len));
            Allowance {
                allowed,
                close: sent + allowed as u64 >= limit,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_at_the_limit() {
        assert_eq!(
            allowance(None, 5, 10),
            Allowance {
                allowed: 10,
                close: false
            }
        );
        assert_eq!(
            allowance(Some(100), 0, 10),
            Allowance {
                allowed: 10,
                close: false
            }
        );
        assert_eq!(
            allowance(Some(100), 95, 10),
            Allowance {
                allowed: 5,
                close: true
            }
        );
        assert_eq!(
            allowance(Some(100), 90, 10),
            Allowance {
                allowed: 10,
                close: true
            }
        );
        assert_eq!(
            allowance(Some(100), 120, 10),
            Allowance {
                allowed: 0,
                close: true
            }
        );
    }
}
