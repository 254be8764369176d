//! The heap key every search shares: [`MinScored`] puts the least score first in a
//! [`BinaryHeap`](std::collections::BinaryHeap) (a max-heap), and [`Dist`] makes a
//! non-negative distance a totally ordered score.
//!
//! As rustworkx's `MinScored`, but the item takes part in the order after the score, so
//! entries with equal scores pop in a fixed order (least item first) and every search is
//! deterministic.
//!
//! ```
//! use std::collections::BinaryHeap;
//! use pathcore::min_scored::{Dist, MinScored};
//! let mut heap = BinaryHeap::new();
//! heap.push(MinScored((Dist::new(2.0), 1u32), 7u32));
//! heap.push(MinScored((Dist::new(0.5), 9u32), 8u32));
//! heap.push(MinScored((Dist::new(2.0), 0u32), 3u32));
//! let order: Vec<u32> = std::iter::from_fn(|| heap.pop().map(|e| e.1)).collect();
//! assert_eq!(order, vec![8, 3, 7]);
//! ```

use std::cmp::Ordering;

/// A non-negative distance as a totally ordered score. Stored as its IEEE bit pattern:
/// for non-negative numbers (`+inf` included) the bit patterns order like the numbers,
/// so comparing two scores is one integer comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Dist(u64);

impl Dist {
    /// The score of `x`, which must be `+0.0` or a positive number or `+inf` (checked in
    /// debug builds). The engine's distances are: link values are stored as `x + 0.0`
    /// (never `-0.0`), and sums of such values stay so.
    #[inline(always)]
    pub fn new(x: f64) -> Dist {
        debug_assert!(
            x.is_sign_positive() && !x.is_nan(),
            "a distance must be +0.0 or positive, got {x}"
        );
        Dist(x.to_bits())
    }

    /// The distance back as a number.
    #[inline(always)]
    pub fn get(self) -> f64 {
        f64::from_bits(self.0)
    }
}

/// A heap entry ordered by least score `K` first, then least item `T`: the reverse of
/// `(K, T)`'s own order, so [`BinaryHeap`](std::collections::BinaryHeap) pops the minimum.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MinScored<K, T>(pub K, pub T);

impl<K: Ord, T: Ord> Ord for MinScored<K, T> {
    #[inline(always)]
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.cmp(&self.0).then_with(|| other.1.cmp(&self.1))
    }
}

impl<K: Ord, T: Ord> PartialOrd for MinScored<K, T> {
    #[inline(always)]
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BinaryHeap;

    #[test]
    fn dist_orders_like_the_numbers() {
        let xs = [0.0, 1e-300, 0.25, 1.0, 3.5, 1e300, f64::INFINITY];
        for w in xs.windows(2) {
            assert!(Dist::new(w[0]) < Dist::new(w[1]), "{} < {}", w[0], w[1]);
        }
        assert_eq!(Dist::new(2.5).get(), 2.5);
    }

    #[test]
    fn heap_pops_least_score_then_least_item() {
        let mut heap = BinaryHeap::new();
        for (score, item) in [
            (3.0, 0u32),
            (1.0, 5),
            (1.0, 2),
            (f64::INFINITY, 1),
            (0.0, 9),
        ] {
            heap.push(MinScored(Dist::new(score), item));
        }
        let popped: Vec<(f64, u32)> =
            std::iter::from_fn(|| heap.pop().map(|e| (e.0.get(), e.1))).collect();
        assert_eq!(
            popped,
            vec![(0.0, 9), (1.0, 2), (1.0, 5), (3.0, 0), (f64::INFINITY, 1)]
        );
    }
}
