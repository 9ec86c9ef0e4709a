//! Sets of integers kept as sorted, disjoint, non-adjacent inclusive ranges.
//!
//! Ports (`u16`) and addresses (`u32` for IPv4, `u128` for IPv6) are both
//! interval sets. The sets that policies produce are tiny (a handful of
//! ranges), so a sorted `Vec` beats a tree: unions and intersections are a
//! linear merge and membership is a binary search.

use serde::{Deserialize, Serialize};

/// The integer types an [`IntervalSet`] can hold.
pub trait Bound: Copy + Ord + std::fmt::Debug {
    const MIN: Self;
    const MAX: Self;
    /// `self + 1`, or `None` at `MAX`.
    fn next(self) -> Option<Self>;
    /// `self - 1`, or `None` at `MIN`.
    fn prev(self) -> Option<Self>;
}

macro_rules! impl_bound {
    ($($t:ty),*) => {$(
        impl Bound for $t {
            const MIN: Self = <$t>::MIN;
            const MAX: Self = <$t>::MAX;
            fn next(self) -> Option<Self> { self.checked_add(1) }
            fn prev(self) -> Option<Self> { self.checked_sub(1) }
        }
    )*};
}
impl_bound!(u16, u32, u128);

/// A set of integers as sorted, disjoint, non-adjacent inclusive ranges.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct IntervalSet<T> {
    ranges: Vec<(T, T)>,
}

impl<T: Bound> Default for IntervalSet<T> {
    fn default() -> Self {
        Self::empty()
    }
}

// === impl IntervalSet ===

impl<T: Bound> IntervalSet<T> {
    pub const fn empty() -> Self {
        Self { ranges: Vec::new() }
    }

    pub fn full() -> Self {
        Self {
            ranges: vec![(T::MIN, T::MAX)],
        }
    }

    /// The inclusive range `lo..=hi`; empty when `lo > hi`.
    pub fn range(lo: T, hi: T) -> Self {
        if lo > hi {
            Self::empty()
        } else {
            Self {
                ranges: vec![(lo, hi)],
            }
        }
    }

    pub fn single(value: T) -> Self {
        Self::range(value, value)
    }

    pub fn is_empty(&self) -> bool {
        self.ranges.is_empty()
    }

    pub fn is_full(&self) -> bool {
        self.ranges.len() == 1 && self.ranges[0] == (T::MIN, T::MAX)
    }

    pub fn ranges(&self) -> &[(T, T)] {
        &self.ranges
    }

    pub fn contains(&self, value: T) -> bool {
        // The first range whose upper end is >= value is the only candidate.
        let idx = self.ranges.partition_point(|&(_, hi)| hi < value);
        self.ranges.get(idx).is_some_and(|&(lo, _)| lo <= value)
    }

    /// Whether every element of `other` is in `self`.
    pub fn is_superset(&self, other: &Self) -> bool {
        other.difference(self).is_empty()
    }

    pub fn intersects(&self, other: &Self) -> bool {
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a_lo, a_hi) = self.ranges[i];
            let (b_lo, b_hi) = other.ranges[j];
            if a_lo.max(b_lo) <= a_hi.min(b_hi) {
                return true;
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        false
    }

    pub fn insert_range(&mut self, lo: T, hi: T) {
        if lo > hi {
            return;
        }
        // Fast path: the common case of building a set in ascending order.
        if let Some(last) = self.ranges.last_mut()
            && last.1.next().is_some_and(|n| n >= lo)
            && last.0 <= lo
        {
            if hi > last.1 {
                last.1 = hi;
            }
            return;
        }
        *self = self.union(&Self::range(lo, hi));
    }

    pub fn union(&self, other: &Self) -> Self {
        if other.ranges.is_empty() {
            return self.clone();
        }
        if self.ranges.is_empty() {
            return other.clone();
        }
        let mut merged: Vec<(T, T)> = Vec::with_capacity(self.ranges.len() + other.ranges.len());
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() || j < other.ranges.len() {
            let take_self = match (self.ranges.get(i), other.ranges.get(j)) {
                (Some(a), Some(b)) => a.0 <= b.0,
                (Some(_), None) => true,
                _ => false,
            };
            let next = if take_self {
                i += 1;
                self.ranges[i - 1]
            } else {
                j += 1;
                other.ranges[j - 1]
            };
            match merged.last_mut() {
                Some(last) if last.1.next().is_none_or(|n| n >= next.0) => {
                    if next.1 > last.1 {
                        last.1 = next.1;
                    }
                }
                _ => merged.push(next),
            }
        }
        Self { ranges: merged }
    }

    pub fn union_with(&mut self, other: &Self) {
        if !other.ranges.is_empty() {
            *self = self.union(other);
        }
    }

    pub fn intersection(&self, other: &Self) -> Self {
        let mut out = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < self.ranges.len() && j < other.ranges.len() {
            let (a_lo, a_hi) = self.ranges[i];
            let (b_lo, b_hi) = other.ranges[j];
            let lo = a_lo.max(b_lo);
            let hi = a_hi.min(b_hi);
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self { ranges: out }
    }

    pub fn complement(&self) -> Self {
        let mut out = Vec::with_capacity(self.ranges.len() + 1);
        let mut cursor = Some(T::MIN);
        for &(lo, hi) in &self.ranges {
            if let Some(start) = cursor
                && start < lo
                && let Some(end) = lo.prev()
            {
                out.push((start, end));
            }
            cursor = hi.next();
        }
        if let Some(start) = cursor {
            out.push((start, T::MAX));
        }
        Self { ranges: out }
    }

    pub fn difference(&self, other: &Self) -> Self {
        if other.ranges.is_empty() {
            return self.clone();
        }
        self.intersection(&other.complement())
    }
}

impl<T: Bound> FromIterator<(T, T)> for IntervalSet<T> {
    fn from_iter<I: IntoIterator<Item = (T, T)>>(iter: I) -> Self {
        let mut pairs: Vec<(T, T)> = iter.into_iter().filter(|(lo, hi)| lo <= hi).collect();
        pairs.sort_unstable();
        let mut set = Self::empty();
        for (lo, hi) in pairs {
            set.insert_range(lo, hi);
        }
        set
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive(ranges: &[(u16, u16)]) -> std::collections::BTreeSet<u16> {
        ranges
            .iter()
            .filter(|(lo, hi)| lo <= hi)
            .flat_map(|&(lo, hi)| lo..=hi)
            .collect()
    }

    fn members(set: &IntervalSet<u16>) -> std::collections::BTreeSet<u16> {
        set.ranges().iter().flat_map(|&(lo, hi)| lo..=hi).collect()
    }

    fn small_ranges() -> impl Strategy<Value = Vec<(u16, u16)>> {
        prop::collection::vec((0u16..200, 0u16..40), 0..6)
            .prop_map(|v| v.into_iter().map(|(lo, len)| (lo, lo + len)).collect())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]
        #[test]
        fn set_algebra_matches_naive_sets(a in small_ranges(), b in small_ranges()) {
            let sa: IntervalSet<u16> = a.iter().copied().collect();
            let sb: IntervalSet<u16> = b.iter().copied().collect();
            let (na, nb) = (naive(&a), naive(&b));
            prop_assert_eq!(members(&sa), na.clone());
            prop_assert_eq!(members(&sa.union(&sb)), na.union(&nb).copied().collect());
            prop_assert_eq!(members(&sa.intersection(&sb)), na.intersection(&nb).copied().collect());
            prop_assert_eq!(members(&sa.difference(&sb)), na.difference(&nb).copied().collect());
            prop_assert_eq!(sa.intersects(&sb), !na.is_disjoint(&nb));
            prop_assert_eq!(sa.is_superset(&sb), na.is_superset(&nb));
            for probe in 0u16..260 {
                prop_assert_eq!(sa.contains(probe), na.contains(&probe));
            }
            // Canonical form: sorted, disjoint and never adjacent.
            for w in sa.ranges().windows(2) {
                prop_assert!(w[0].1 < w[1].0 && w[0].1 + 1 < w[1].0);
            }
        }
    }

    #[test]
    fn complement_covers_the_edges() {
        let set = IntervalSet::<u16>::range(0, 10);
        assert_eq!(set.complement().ranges(), &[(11, u16::MAX)]);
        assert!(IntervalSet::<u16>::full().complement().is_empty());
        assert!(IntervalSet::<u16>::empty().complement().is_full());
        let top = IntervalSet::<u16>::range(100, u16::MAX);
        assert_eq!(top.complement().ranges(), &[(0, 99)]);
    }
}
