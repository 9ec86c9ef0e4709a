//! Which objects a label selector selects, found through label postings
//! instead of by trying the selector on every object.
//!
//! On a large cluster most selectors name a label value (`app=web`,
//! `kubernetes.io/metadata.name=shop`) that few objects carry; trying each
//! selector on every namespace or pod made the index cost policies ×
//! objects. The postings only narrow the candidates: every candidate is
//! still checked with [`LabelSelector::matches`], so the selection is
//! exactly what the selector matches. What the narrowing must never do is
//! leave out an object that matches, which holds because each posting used
//! is a necessary condition of the selector (a `matchLabels` pair, a key
//! that `In` or `Exists` requires).

use std::collections::HashMap;

use crate::selector::{LabelSelector, Labels, Operator, Requirement};

/// Label postings over objects numbered `0..len` in the order given.
pub(crate) struct LabelIndex<'a> {
    labels: Vec<&'a Labels>,
    by_pair: HashMap<(&'a str, &'a str), Vec<u32>>,
    by_key: HashMap<&'a str, Vec<u32>>,
}

impl<'a> LabelIndex<'a> {
    pub(crate) fn new(labels: impl IntoIterator<Item = &'a Labels>) -> Self {
        let labels: Vec<&'a Labels> = labels.into_iter().collect();
        let mut by_pair: HashMap<(&'a str, &'a str), Vec<u32>> = HashMap::new();
        let mut by_key: HashMap<&'a str, Vec<u32>> = HashMap::new();
        for (i, object) in labels.iter().enumerate() {
            for (k, v) in object.iter() {
                by_pair
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(i as u32);
                by_key.entry(k.as_str()).or_default().push(i as u32);
            }
        }
        Self {
            labels,
            by_pair,
            by_key,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.labels.len()
    }

    /// The objects `selector` matches, in increasing order.
    pub(crate) fn select(&self, selector: &LabelSelector) -> Vec<u32> {
        let verify = |i: &u32| selector.matches(self.labels[*i as usize]);
        match self.narrowest(selector) {
            Some(candidates) => candidates.into_iter().filter(verify).collect(),
            None => (0..self.labels.len() as u32).filter(verify).collect(),
        }
    }

    /// The postings of an `In` requirement's values.
    fn postings_of<'s>(&'s self, req: &'s Requirement) -> impl Iterator<Item = &'s Vec<u32>> + 's {
        req.values
            .iter()
            .filter_map(move |v| self.by_pair.get(&(req.key.as_str(), v.as_str())))
    }

    /// The smallest candidate list that every match of `selector` is in
    /// (sorted), or `None` when the selector requires no label.
    fn narrowest(&self, selector: &LabelSelector) -> Option<Vec<u32>> {
        const NONE: &[u32] = &[];
        // Postings that hold every match: one per matchLabels pair and per
        // Exists key.
        let pairs = selector.match_labels.iter().map(|(k, v)| {
            self.by_pair
                .get(&(k.as_str(), v.as_str()))
                .map_or(NONE, Vec::as_slice)
        });
        let keys = selector
            .match_expressions
            .iter()
            .filter(|r| r.operator == Operator::Exists)
            .map(|r| self.by_key.get(r.key.as_str()).map_or(NONE, Vec::as_slice));
        let best: Option<&[u32]> = pairs.chain(keys).min_by_key(|list| list.len());
        // An In requirement: the union of its values' postings, built only
        // when it is smaller than the best single posting.
        let smallest_in = selector
            .match_expressions
            .iter()
            .filter(|r| r.operator == Operator::In)
            .map(|r| (r, self.postings_of(r).map(Vec::len).sum::<usize>()))
            .min_by_key(|(_, size)| *size)
            .filter(|(_, size)| best.is_none_or(|b| *size < b.len()));
        match smallest_in {
            Some((req, _)) => {
                let mut union: Vec<u32> = self.postings_of(req).flatten().copied().collect();
                union.sort_unstable();
                union.dedup();
                Some(union)
            }
            // NotIn and DoesNotExist match objects without the key: no
            // posting holds all their matches.
            None => best.map(<[u32]>::to_vec),
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const KEYS: [&str; 4] = ["app", "tier", "env", "kubernetes.io/metadata.name"];
    const VALUES: [&str; 4] = ["a", "b", "c", "web"];

    fn labels_strategy() -> impl Strategy<Value = Labels> {
        proptest::collection::btree_map(
            proptest::sample::select(KEYS.to_vec()).prop_map(str::to_string),
            proptest::sample::select(VALUES.to_vec()).prop_map(str::to_string),
            0..4,
        )
    }

    fn requirement_strategy() -> impl Strategy<Value = Requirement> {
        (
            proptest::sample::select(KEYS.to_vec()),
            0..4usize,
            proptest::collection::btree_set(proptest::sample::select(VALUES.to_vec()), 1..3),
        )
            .prop_filter_map("valid requirement", |(key, op, values)| {
                let (operator, values) = match op {
                    0 => (Operator::In, values),
                    1 => (Operator::NotIn, values),
                    2 => (Operator::Exists, Default::default()),
                    _ => (Operator::DoesNotExist, Default::default()),
                };
                Requirement::new(key, operator, values).ok()
            })
    }

    fn selector_strategy() -> impl Strategy<Value = LabelSelector> {
        (
            labels_strategy(),
            proptest::collection::vec(requirement_strategy(), 0..3),
        )
            .prop_map(|(match_labels, exprs)| LabelSelector::new(match_labels, exprs))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// The indexed selection is the naive one: every object tried.
        #[test]
        fn indexed_selection_equals_naive_selection(
            objects in proptest::collection::vec(labels_strategy(), 0..40),
            selector in selector_strategy(),
        ) {
            let index = LabelIndex::new(&objects);
            let naive: Vec<u32> = objects
                .iter()
                .enumerate()
                .filter(|(_, l)| selector.matches(l))
                .map(|(i, _)| i as u32)
                .collect();
            prop_assert_eq!(index.select(&selector), naive);
        }
    }

    #[test]
    fn a_value_nobody_carries_selects_nothing_and_notin_keeps_unlabelled_objects() {
        let objects: Vec<Labels> = vec![
            Labels::from([("app".to_string(), "a".to_string())]),
            Labels::new(),
        ];
        let index = LabelIndex::new(&objects);
        let absent =
            LabelSelector::from_labels(Labels::from([("app".to_string(), "zzz".to_string())]));
        assert_eq!(index.select(&absent), Vec::<u32>::new());
        let not_in = LabelSelector::new(
            Labels::new(),
            vec![Requirement::new("app", Operator::NotIn, ["a"]).unwrap()],
        );
        assert_eq!(index.select(&not_in), vec![1]);
        assert_eq!(index.len(), 2);
    }
}
