//! Even splits of a range into parts of bounded size.

use std::ops::Range;

/// `units` split into `parts` consecutive ranges whose lengths differ by at most one, the
/// longer ones first.
///
/// Even parts keep edge tiles large: 10 columns with at most 8 per tile become 5 + 5, not
/// 8 + 2, so no micro-kernel call runs with too few accumulators to hide FMA latency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct EvenSplit {
    parts: usize,
    base: usize,
    extra: usize,
}

impl EvenSplit {
    /// Splits `units` into as few parts as possible, each at most `max_len` long.
    pub(crate) fn by_max_len(units: usize, max_len: usize) -> EvenSplit {
        debug_assert!(max_len > 0);
        EvenSplit::into_parts(units, units.div_ceil(max_len))
    }

    /// Splits `units` into `parts` parts (none when `parts` is 0).
    pub(crate) fn into_parts(units: usize, parts: usize) -> EvenSplit {
        if parts == 0 {
            return EvenSplit {
                parts: 0,
                base: 0,
                extra: 0,
            };
        }
        EvenSplit {
            parts,
            base: units / parts,
            extra: units % parts,
        }
    }

    /// Number of parts.
    pub(crate) fn parts(&self) -> usize {
        self.parts
    }

    /// The units of part `index`, which must be below [`parts`](Self::parts).
    pub(crate) fn part(&self, index: usize) -> Range<usize> {
        debug_assert!(index < self.parts);
        let start = index * self.base + index.min(self.extra);
        let len = self.base + usize::from(index < self.extra);
        start..start + len
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_covers_range_evenly() {
        for units in 0..50 {
            for max_len in 1..10 {
                let split = EvenSplit::by_max_len(units, max_len);
                assert_eq!(split.parts(), units.div_ceil(max_len));
                let mut next = 0;
                for index in 0..split.parts() {
                    let part = split.part(index);
                    assert_eq!(part.start, next);
                    assert!(!part.is_empty());
                    assert!(part.len() <= max_len);
                    next = part.end;
                }
                assert_eq!(next, units);
            }
        }
    }

    #[test]
    fn split_ten_by_eight_is_five_five() {
        let split = EvenSplit::by_max_len(10, 8);
        assert_eq!(split.part(0), 0..5);
        assert_eq!(split.part(1), 5..10);
    }
}
