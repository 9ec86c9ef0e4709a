//! Kubernetes label selectors: `matchLabels` and `matchExpressions`, ANDed.
//!
//! A selector is validated when it is built, as the API server does, so an
//! invalid selector is an error and never a silent match (or non-match).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// Labels as Kubernetes stores them; ordered so output is deterministic.
pub type Labels = BTreeMap<String, String>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operator {
    In,
    NotIn,
    Exists,
    DoesNotExist,
}

impl std::str::FromStr for Operator {
    type Err = SelectorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "In" => Ok(Self::In),
            "NotIn" => Ok(Self::NotIn),
            "Exists" => Ok(Self::Exists),
            "DoesNotExist" => Ok(Self::DoesNotExist),
            other => Err(SelectorError::UnknownOperator(other.to_string())),
        }
    }
}

impl std::fmt::Display for Operator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::In => "In",
            Self::NotIn => "NotIn",
            Self::Exists => "Exists",
            Self::DoesNotExist => "DoesNotExist",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("unknown operator {0:?} (expected In, NotIn, Exists or DoesNotExist)")]
    UnknownOperator(String),
    #[error("operator {operator} on key {key:?} needs at least one value")]
    MissingValues { key: String, operator: Operator },
    #[error("operator {operator} on key {key:?} must not have values")]
    UnexpectedValues { key: String, operator: Operator },
    #[error("empty label key")]
    EmptyKey,
}

/// One `matchExpressions` entry.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Requirement {
    pub key: String,
    pub operator: Operator,
    /// Sorted and deduplicated; empty for Exists and DoesNotExist.
    pub values: BTreeSet<String>,
}

impl Requirement {
    pub fn new(
        key: impl Into<String>,
        operator: Operator,
        values: impl IntoIterator<Item = impl Into<String>>,
    ) -> Result<Self, SelectorError> {
        let key = key.into();
        if key.is_empty() {
            return Err(SelectorError::EmptyKey);
        }
        let values: BTreeSet<String> = values.into_iter().map(Into::into).collect();
        match operator {
            Operator::In | Operator::NotIn if values.is_empty() => {
                Err(SelectorError::MissingValues { key, operator })
            }
            Operator::Exists | Operator::DoesNotExist if !values.is_empty() => {
                Err(SelectorError::UnexpectedValues { key, operator })
            }
            _ => Ok(Self {
                key,
                operator,
                values,
            }),
        }
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        match self.operator {
            Operator::In => value.is_some_and(|v| self.values.contains(v)),
            // NotIn matches when the key is absent, as upstream does.
            Operator::NotIn => value.is_none_or(|v| !self.values.contains(v)),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let values = self.values.iter().cloned().collect::<Vec<_>>().join(",");
        match self.operator {
            Operator::In => write!(f, "{} in ({values})", self.key),
            Operator::NotIn => write!(f, "{} notin ({values})", self.key),
            Operator::Exists => write!(f, "{}", self.key),
            Operator::DoesNotExist => write!(f, "!{}", self.key),
        }
    }
}

/// A label selector; the empty selector matches everything.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LabelSelector {
    pub match_labels: Labels,
    pub match_expressions: Vec<Requirement>,
}

// === impl LabelSelector ===

impl LabelSelector {
    /// Matches every object.
    pub fn everything() -> Self {
        Self::default()
    }

    pub fn from_labels(labels: Labels) -> Self {
        Self {
            match_labels: labels,
            match_expressions: Vec::new(),
        }
    }

    pub fn new(match_labels: Labels, mut match_expressions: Vec<Requirement>) -> Self {
        match_expressions.sort();
        match_expressions.dedup();
        Self {
            match_labels,
            match_expressions,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.match_expressions.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|r| r.matches(labels))
    }
}

impl LabelSelector {
    /// Whether some set of labels matches both `self` and `other`: exact,
    /// key by key (keys are independent). Used to find the policies that
    /// may select a pod of a pool known only by its selector.
    pub fn may_overlap(&self, other: &LabelSelector) -> bool {
        let requirements: Vec<Requirement> = [self, other]
            .into_iter()
            .flat_map(|s| {
                s.match_labels
                    .iter()
                    .map(|(k, v)| Requirement {
                        key: k.clone(),
                        operator: Operator::In,
                        values: BTreeSet::from([v.clone()]),
                    })
                    .chain(s.match_expressions.iter().cloned())
            })
            .collect();
        let mut by_key: BTreeMap<&str, Vec<&Requirement>> = BTreeMap::new();
        for r in &requirements {
            by_key.entry(r.key.as_str()).or_default().push(r);
        }
        by_key.values().all(|reqs| key_satisfiable(reqs))
    }
}

/// Whether one key can take a value (or be absent) that every requirement
/// on it accepts.
fn key_satisfiable(reqs: &[&Requirement]) -> bool {
    let mut allowed: Option<BTreeSet<&String>> = None;
    let mut excluded: BTreeSet<&String> = BTreeSet::new();
    let mut must_exist = false;
    let mut must_be_absent = false;
    for r in reqs {
        match r.operator {
            Operator::In => {
                must_exist = true;
                let values: BTreeSet<&String> = r.values.iter().collect();
                allowed = Some(match allowed {
                    None => values,
                    Some(a) => a.intersection(&values).copied().collect(),
                });
            }
            Operator::NotIn => excluded.extend(r.values.iter()),
            Operator::Exists => must_exist = true,
            Operator::DoesNotExist => must_be_absent = true,
        }
    }
    if must_be_absent {
        // Absent satisfies NotIn and DoesNotExist, nothing else.
        return !must_exist;
    }
    match allowed {
        Some(a) => a.iter().any(|v| !excluded.contains(v)),
        // Any value outside the (finite) excluded set, or absence.
        None => true,
    }
}

impl std::fmt::Display for LabelSelector {
    /// The `kubectl -l` form: `app=web,tier in (a,b)`; `{}` for the empty selector.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_empty() {
            return f.write_str("{}");
        }
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        parts.extend(self.match_expressions.iter().map(ToString::to_string));
        f.write_str(&parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn operators_follow_upstream_semantics() {
        let web = labels(&[("app", "web"), ("tier", "front")]);
        let bare = labels(&[]);
        let cases = [
            (
                Operator::In,
                vec!["web", "api"],
                true,
                false,
                "In needs the key",
            ),
            (
                Operator::NotIn,
                vec!["web"],
                false,
                true,
                "NotIn matches an absent key",
            ),
            (
                Operator::NotIn,
                vec!["api"],
                true,
                true,
                "NotIn with other value",
            ),
            (Operator::Exists, vec![], true, false, "Exists"),
            (Operator::DoesNotExist, vec![], false, true, "DoesNotExist"),
        ];
        for (op, values, on_web, on_bare, msg) in cases {
            let req = Requirement::new("app", op, values).unwrap();
            assert_eq!(req.matches(&web), on_web, "{msg} on web");
            assert_eq!(req.matches(&bare), on_bare, "{msg} on bare");
        }
    }

    #[test]
    fn invalid_requirements_are_errors() {
        assert!(matches!(
            Requirement::new("app", Operator::In, Vec::<String>::new()),
            Err(SelectorError::MissingValues { .. })
        ));
        assert!(matches!(
            Requirement::new("app", Operator::Exists, ["x"]),
            Err(SelectorError::UnexpectedValues { .. })
        ));
        assert!("Equals".parse::<Operator>().is_err());
        assert!(matches!(
            Requirement::new("", Operator::Exists, Vec::<String>::new()),
            Err(SelectorError::EmptyKey)
        ));
    }

    #[test]
    fn overlap_is_exact_key_by_key() {
        let req = |k: &str, op, v: &[&str]| Requirement::new(k, op, v.to_vec()).unwrap();
        let web = LabelSelector::from_labels(labels(&[("app", "web")]));
        let api = LabelSelector::from_labels(labels(&[("app", "api")]));
        let tier = LabelSelector::from_labels(labels(&[("tier", "front")]));
        assert!(web.may_overlap(&tier));
        assert!(!web.may_overlap(&api));
        assert!(web.may_overlap(&LabelSelector::everything()));
        let not_web =
            LabelSelector::new(Labels::new(), vec![req("app", Operator::NotIn, &["web"])]);
        assert!(!web.may_overlap(&not_web));
        assert!(api.may_overlap(&not_web));
        let no_app =
            LabelSelector::new(Labels::new(), vec![req("app", Operator::DoesNotExist, &[])]);
        assert!(!web.may_overlap(&no_app));
        assert!(not_web.may_overlap(&no_app), "absent satisfies both");
        let some_app = LabelSelector::new(Labels::new(), vec![req("app", Operator::Exists, &[])]);
        assert!(!some_app.may_overlap(&no_app));
        let in_sel = LabelSelector::new(
            Labels::new(),
            vec![req("app", Operator::In, &["web", "db"])],
        );
        assert!(in_sel.may_overlap(&not_web), "db");
        // Checked against brute force on a small universe of label sets.
        let sels = [&web, &api, &tier, &not_web, &no_app, &some_app, &in_sel];
        let values = [None, Some("web"), Some("api"), Some("db"), Some("other")];
        for a in sels {
            for b in sels {
                let mut found = false;
                for app in values {
                    for t in [None, Some("front")] {
                        let mut l = Labels::new();
                        if let Some(v) = app {
                            l.insert("app".into(), v.into());
                        }
                        if let Some(v) = t {
                            l.insert("tier".into(), v.into());
                        }
                        found |= a.matches(&l) && b.matches(&l);
                    }
                }
                assert_eq!(a.may_overlap(b), found, "{a} & {b}");
            }
        }
    }

    #[test]
    fn labels_and_expressions_are_anded() {
        let sel = LabelSelector::new(
            labels(&[("app", "web")]),
            vec![Requirement::new("tier", Operator::In, ["front"]).unwrap()],
        );
        assert!(sel.matches(&labels(&[("app", "web"), ("tier", "front")])));
        assert!(!sel.matches(&labels(&[("app", "web"), ("tier", "back")])));
        assert!(!sel.matches(&labels(&[("tier", "front")])));
        assert!(LabelSelector::everything().matches(&labels(&[])));
        assert_eq!(sel.to_string(), "app=web,tier in (front)");
    }
}
