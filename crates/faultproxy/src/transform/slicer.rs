//! Slicing: the size of the next piece written, and the pause after it.

use std::time::Duration;

use crate::fault::Slicer;

/// The largest piece allowed by the slicer (`max` when there is none).
pub(crate) fn piece(slicer: Option<Slicer>, max: usize) -> usize {
    slicer.map_or(max, |s| s.chunk.get().min(max))
}

/// The pause after a piece.
pub(crate) fn pause(slicer: Option<Slicer>) -> Option<Duration> {
    slicer.map(|s| s.delay).filter(|d| !d.is_zero())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::num::NonZeroUsize;

    #[test]
    fn pieces_and_pauses() {
        let s = Some(Slicer {
            chunk: NonZeroUsize::new(10).unwrap(),
            delay: Duration::from_millis(5),
        });
        assert_eq!(piece(s, 100), 10);
        assert_eq!(piece(s, 4), 4);
        assert_eq!(piece(None, 100), 100);
        assert_eq!(pause(s), Some(Duration::from_millis(5)));
        assert_eq!(pause(None), None);
    }
}
