//! Names, label keys, label values and selectors, checked exactly as the
//! API server checks them (k8s.io/apimachinery `util/validation` and
//! `apis/meta/v1/validation`), so kubefence neither reads nor writes an object
//! that `kubectl apply` would reject.
//!
//! Every check returns the API server's reasons in its own words, one per
//! rule broken, so a caller can report each of them at the field it names.

use crate::selector::{LabelSelector, Labels, Operator};

/// The longest DNS-1123 label (and DNS-1035 label, and label name/value).
pub const DNS1123_LABEL_MAX_LEN: usize = 63;
/// The longest DNS-1123 subdomain (and qualified-name prefix).
pub const DNS1123_SUBDOMAIN_MAX_LEN: usize = 253;
/// The longest name part of a qualified name (label key without prefix).
pub const QUALIFIED_NAME_MAX_LEN: usize = 63;
/// The longest label value.
pub const LABEL_VALUE_MAX_LEN: usize = 63;
/// The longest CronJob name: its Jobs get an 11-character suffix and a Job
/// name must fit a label value.
pub const CRONJOB_NAME_MAX_LEN: usize = 52;

/// One rule broken: `field` is relative to what was checked (empty for the
/// value itself, `matchExpressions[0].values[1]` inside a selector…).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The rule an object's `metadata.name` follows, which depends on its kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRule {
    /// Most kinds (Pod, Deployment, ConfigMap, NetworkPolicy, Ingress, …).
    Dns1123Subdomain,
    /// Namespaces.
    Dns1123Label,
    /// Services (their name becomes a DNS label and an environment variable).
    Dns1035Label,
    /// CronJobs: a DNS-1123 subdomain of at most 52 characters.
    CronJob,
}

impl NameRule {
    /// The rule the API server applies to names of `kind`.
    pub fn for_kind(kind: &str) -> Self {
        match kind {
            "Namespace" => Self::Dns1123Label,
            "Service" => Self::Dns1035Label,
            "CronJob" => Self::CronJob,
            _ => Self::Dns1123Subdomain,
        }
    }

    /// The reasons `name` breaks this rule; empty when it is valid.
    pub fn check(self, name: &str) -> Vec<String> {
        match self {
            Self::Dns1123Subdomain => dns1123_subdomain(name),
            Self::Dns1123Label => dns1123_label(name),
            Self::Dns1035Label => dns1035_label(name),
            Self::CronJob => {
                let mut errors = dns1123_subdomain(name);
                if name.len() > CRONJOB_NAME_MAX_LEN {
                    errors.push(format!(
                        "must be no more than {CRONJOB_NAME_MAX_LEN} characters"
                    ));
                }
                errors
            }
        }
    }
}

fn is_lower_alnum(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_alnum(c: char) -> bool {
    c.is_ascii_alphanumeric()
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`
fn matches_dns1123_label(s: &str) -> bool {
    !s.is_empty()
        && s.chars().all(|c| is_lower_alnum(c) || c == '-')
        && s.starts_with(is_lower_alnum)
        && s.ends_with(is_lower_alnum)
}

/// A DNS-1123 label (RFC 1123): at most 63 lower-case alphanumerics or
/// `-`, starting and ending with an alphanumeric. Namespaces.
pub fn dns1123_label(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_LABEL_MAX_LEN {
        errors.push(format!(
            "must be no more than {DNS1123_LABEL_MAX_LEN} characters"
        ));
    }
    if !matches_dns1123_label(s) {
        errors.push(format!(
            "{s:?} is not a valid DNS-1123 label: it must consist of lower case alphanumeric \
             characters or '-', and must start and end with an alphanumeric character \
             (e.g. 'my-name' or '123-abc')"
        ));
    }
    errors
}

/// A DNS-1123 subdomain: at most 253 characters, DNS-1123 labels joined by
/// `.`. Names of most kinds, and the prefix of a label key.
pub fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX_LEN {
        errors.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX_LEN} characters"
        ));
    }
    if !s.split('.').all(matches_dns1123_label) {
        errors.push(format!(
            "{s:?} is not a valid DNS-1123 subdomain: it must consist of lower case \
             alphanumeric characters, '-' or '.', and must start and end with an alphanumeric \
             character (e.g. 'example.com')"
        ));
    }
    errors
}

/// A DNS-1035 label (RFC 1035): like a DNS-1123 label but starting with a
/// letter. Services.
pub fn dns1035_label(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > DNS1123_LABEL_MAX_LEN {
        errors.push(format!(
            "must be no more than {DNS1123_LABEL_MAX_LEN} characters"
        ));
    }
    if !(matches_dns1123_label(s) && s.starts_with(|c: char| c.is_ascii_lowercase())) {
        errors.push(format!(
            "{s:?} is not a valid DNS-1035 label: it must consist of lower case alphanumeric \
             characters or '-', start with an alphabetic character, and end with an \
             alphanumeric character (e.g. 'my-name' or 'abc-123')"
        ));
    }
    errors
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, the name part of a
/// qualified name and a non-empty label value.
fn matches_qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| is_alnum(c) || matches!(c, '-' | '_' | '.'))
        && s.starts_with(is_alnum)
        && s.ends_with(is_alnum)
}

/// A qualified name: an optional DNS-1123 subdomain prefix and `/`, then a
/// name of at most 63 alphanumerics, `-`, `_` or `.`, starting and ending
/// with an alphanumeric. Label and annotation keys, selector keys.
pub fn qualified_name(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errors.push("prefix part must be non-empty".to_string());
            } else {
                errors.extend(
                    dns1123_subdomain(prefix)
                        .into_iter()
                        .map(|e| format!("prefix part {e}")),
                );
            }
            name
        }
        _ => {
            errors.push(format!(
                "{s:?} is not a valid qualified name: it must be a name with an optional \
                 DNS subdomain prefix and '/' (e.g. 'MyName' or 'example.com/MyName')"
            ));
            return errors;
        }
    };
    if name.is_empty() {
        errors.push("name part must be non-empty".to_string());
    } else {
        if name.len() > QUALIFIED_NAME_MAX_LEN {
            errors.push(format!(
                "name part must be no more than {QUALIFIED_NAME_MAX_LEN} characters"
            ));
        }
        if !matches_qualified_name_part(name) {
            errors.push(format!(
                "name part {name:?} must consist of alphanumeric characters, '-', '_' or '.', \
                 and must start and end with an alphanumeric character (e.g. 'MyName', \
                 'my.name' or '123-abc')"
            ));
        }
    }
    errors
}

/// A label value: empty, or at most 63 alphanumerics, `-`, `_` or `.`,
/// starting and ending with an alphanumeric.
pub fn label_value(s: &str) -> Vec<String> {
    let mut errors = Vec::new();
    if s.len() > LABEL_VALUE_MAX_LEN {
        errors.push(format!(
            "must be no more than {LABEL_VALUE_MAX_LEN} characters"
        ));
    }
    if !s.is_empty() && !matches_qualified_name_part(s) {
        errors.push(format!(
            "{s:?} is not a valid label value: it must be empty or consist of alphanumeric \
             characters, '-', '_' or '.', and must start and end with an alphanumeric \
             character (e.g. 'MyValue', 'my_value' or '12345')"
        ));
    }
    errors
}

/// Every key and value of a label map (`metadata.labels`, `matchLabels`,
/// a Service's `selector`); fields are `[key]`.
pub fn labels<'a>(labels: impl IntoIterator<Item = (&'a String, &'a String)>) -> Vec<Invalid> {
    let mut errors = Vec::new();
    for (key, value) in labels {
        // The field is named only when there is something to report (every
        // policy the operator reads passes through here).
        for e in qualified_name(key) {
            errors.push(Invalid::new(format!("[{key}]"), format!("key {e}")));
        }
        for e in label_value(value) {
            errors.push(Invalid::new(format!("[{key}]"), e));
        }
    }
    errors
}

/// Every key of an annotation map (values are free text).
pub fn annotation_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Vec<Invalid> {
    keys.into_iter()
        .flat_map(|key| {
            // The API server checks annotation keys in lower case.
            qualified_name(&key.to_ascii_lowercase())
                .into_iter()
                .map(move |e| Invalid::new(format!("[{key}]"), format!("key {e}")))
        })
        .collect()
}

/// One `matchExpressions` entry as written (before it is parsed): the key,
/// the operator and its values, at index `index`.
pub fn requirement(index: usize, key: &str, operator: &str, values: &[String]) -> Vec<Invalid> {
    let at = format!("matchExpressions[{index}]");
    let mut errors: Vec<Invalid> = qualified_name(key)
        .into_iter()
        .map(|e| Invalid::new(format!("{at}.key"), e))
        .collect();
    match operator.parse::<Operator>() {
        Ok(Operator::In | Operator::NotIn) if values.is_empty() => errors.push(Invalid::new(
            format!("{at}.values"),
            format!("must be specified when `operator` is '{operator}'"),
        )),
        Ok(Operator::Exists | Operator::DoesNotExist) if !values.is_empty() => {
            errors.push(Invalid::new(
                format!("{at}.values"),
                format!("may not be specified when `operator` is '{operator}'"),
            ))
        }
        Ok(_) => {}
        Err(e) => errors.push(Invalid::new(format!("{at}.operator"), e.to_string())),
    }
    for (i, value) in values.iter().enumerate() {
        for e in label_value(value) {
            errors.push(Invalid::new(format!("{at}.values[{i}]"), e));
        }
    }
    errors
}

/// A selector kubefence built: its matchLabels and matchExpressions.
pub fn selector(selector: &LabelSelector) -> Vec<Invalid> {
    let mut errors: Vec<Invalid> = labels(&selector.match_labels)
        .into_iter()
        .map(|e| Invalid::new(format!("matchLabels{}", e.field), e.message))
        .collect();
    for (i, r) in selector.match_expressions.iter().enumerate() {
        let values: Vec<String> = r.values.iter().cloned().collect();
        errors.extend(requirement(i, &r.key, &r.operator.to_string(), &values));
    }
    errors
}

/// An object's metadata as the API server checks it: the name by the
/// kind's rule, the namespace, label keys and values, annotation keys.
/// `namespace` is `None` for cluster-scoped kinds.
pub fn object_meta(
    kind: &str,
    name: &str,
    namespace: Option<&str>,
    object_labels: &Labels,
    annotations: &Labels,
) -> Vec<Invalid> {
    let mut errors: Vec<Invalid> = NameRule::for_kind(kind)
        .check(name)
        .into_iter()
        .map(|e| Invalid::new("metadata.name", e))
        .collect();
    if let Some(ns) = namespace {
        errors.extend(
            dns1123_label(ns)
                .into_iter()
                .map(|e| Invalid::new("metadata.namespace", e)),
        );
    }
    errors.extend(
        labels(object_labels)
            .into_iter()
            .map(|e| Invalid::new(format!("metadata.labels{}", e.field), e.message)),
    );
    errors.extend(
        annotation_keys(annotations.keys())
            .into_iter()
            .map(|e| Invalid::new(format!("metadata.annotations{}", e.field), e.message)),
    );
    errors
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selector::Requirement;

    // Cases from apimachinery's util/validation tests (validation_test.go).

    #[test]
    fn dns1123_labels() {
        for ok in [
            "a",
            "ab",
            "abc",
            "a1",
            "a-1",
            "a--1--2--b",
            "0",
            "01",
            "012",
            "1a",
            "1-a",
        ] {
            assert!(dns1123_label(ok).is_empty(), "{ok}");
        }
        assert!(dns1123_label(&"a".repeat(63)).is_empty());
        for bad in [
            "", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_",
            "_a", "a_b", "1_", "_1", "1_2", ".", "a.", ".a", "a.b", "1.", ".1", "1.2", " ", "a ",
            " a", "a b", "1 ", " 1", "1 2",
        ] {
            assert!(!dns1123_label(bad).is_empty(), "{bad:?}");
        }
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn dns1123_subdomains() {
        for ok in [
            "a",
            "ab",
            "a.a",
            "a.1",
            "1.a",
            "a-1.a--1--2--b",
            "0.a",
            "01.0",
            "a.b.c.d.e",
            "aaaaaaaaaa.bbbbbbbbbb.cccccccccc.dddddddddd.eeeeeeeeee",
        ] {
            assert!(dns1123_subdomain(ok).is_empty(), "{ok}");
        }
        let long = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(long.len(), 253);
        assert!(dns1123_subdomain(&long).is_empty());
        for bad in [
            "", "A", "ABC", "aBc", "A1", "-", "a-", "-a", "_", "a_b", ".", "a.", ".a", "a..b",
            "a b", "a.-b", "../x", "/abs",
        ] {
            assert!(!dns1123_subdomain(bad).is_empty(), "{bad:?}");
        }
        assert!(!dns1123_subdomain(&format!("{long}a")).is_empty());
        // Each label of a subdomain may be at most 63 characters long only
        // through the total limit: apimachinery checks the whole regex.
        assert!(dns1123_subdomain(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn dns1035_labels() {
        for ok in ["a", "ab", "abc", "a1", "a-1", "a--1--2--b"] {
            assert!(dns1035_label(ok).is_empty(), "{ok}");
        }
        for bad in ["0", "01", "1a", "1-a", "", "A", "a-", "-a", "a_b", "a.b"] {
            assert!(!dns1035_label(bad).is_empty(), "{bad:?}");
        }
        assert!(!dns1035_label(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn qualified_names() {
        for ok in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "1234",
            "simple/simple",
            "now-with-dashes/simple",
            "now-with-dashes/now-with-dashes",
            "now.with.dots/now-with-dashes",
            "now-with.dashes-and.dots/now-with-dashes",
            "1-num.2-num/3-num",
            "1234/5678",
            "1.2.3.4/5678",
            "Uppercase_Is_OK_123",
            "example.com/Uppercase_Is_OK_123",
            "requests.storage-foo",
        ] {
            assert!(qualified_name(ok).is_empty(), "{ok}");
        }
        assert!(qualified_name(&"a".repeat(63)).is_empty());
        assert!(qualified_name(&format!("{}/{}", "a".repeat(253), "b".repeat(63))).is_empty());
        for bad in [
            "",
            "nospecialchars%^=@",
            "cantendwithadash-",
            "-cantstartwithadash-",
            "only/one/slash",
            "Example.com/abc",
            "example_com/abc",
            "example.com/",
            "/simple",
            "a/b/c",
            "app name",
        ] {
            assert!(!qualified_name(bad).is_empty(), "{bad:?}");
        }
        assert!(!qualified_name(&"a".repeat(64)).is_empty());
        assert!(!qualified_name(&format!("{}/b", "a".repeat(254))).is_empty());
    }

    #[test]
    fn label_values() {
        for ok in [
            "simple",
            "now-with-dashes",
            "1-starts-with-num",
            "end-with-num-1",
            "1234",
            "",
            "A.B_C-9",
        ] {
            assert!(label_value(ok).is_empty(), "{ok}");
        }
        assert!(label_value(&"a".repeat(63)).is_empty());
        for bad in [
            "nospecialchars%^=@",
            "Tama-nui-te-rā.is.Māori.sun",
            "\\backslashes\\are\\bad",
            "-starts-with-dash",
            "ends-with-dash-",
            ".starts.with.dot",
            "ends.with.dot.",
            "a b",
        ] {
            assert!(!label_value(bad).is_empty(), "{bad:?}");
        }
        assert!(!label_value(&"a".repeat(64)).is_empty());
    }

    #[test]
    fn names_follow_their_kind() {
        assert!(NameRule::for_kind("Service").check("1db").len() == 1);
        assert!(NameRule::for_kind("Deployment").check("1db").is_empty());
        assert!(NameRule::for_kind("Namespace").check("a.b").len() == 1);
        assert!(NameRule::for_kind("ConfigMap").check("a.b").is_empty());
        assert!(NameRule::for_kind("CronJob").check(&"a".repeat(53)).len() == 1);
        assert!(NameRule::for_kind("Job").check(&"a".repeat(53)).is_empty());
    }

    #[test]
    fn requirements_need_values_by_operator() {
        assert!(requirement(0, "app", "In", &["a".into()]).is_empty());
        assert_eq!(
            requirement(0, "app", "In", &[])[0].field,
            "matchExpressions[0].values"
        );
        assert_eq!(
            requirement(1, "app", "Exists", &["a".into()])[0].field,
            "matchExpressions[1].values"
        );
        assert_eq!(
            requirement(0, "app", "Equals", &[])[0].field,
            "matchExpressions[0].operator"
        );
        assert_eq!(
            requirement(0, "bad key", "Exists", &[])[0].field,
            "matchExpressions[0].key"
        );
        assert_eq!(
            requirement(0, "app", "NotIn", &["ok".into(), "not ok".into()])[0].field,
            "matchExpressions[0].values[1]"
        );
    }

    #[test]
    fn selectors_and_metadata_report_every_bad_field() {
        let s = LabelSelector::new(
            Labels::from([
                ("bad key".to_string(), "ok".to_string()),
                ("ok".to_string(), "bad value".to_string()),
            ]),
            vec![Requirement {
                key: "also bad".into(),
                operator: Operator::Exists,
                values: Default::default(),
            }],
        );
        let fields: Vec<String> = selector(&s).into_iter().map(|e| e.field).collect();
        assert_eq!(
            fields,
            [
                "matchLabels[bad key]",
                "matchLabels[ok]",
                "matchExpressions[0].key"
            ]
        );
        let errors = object_meta(
            "Service",
            "Web",
            Some("../x"),
            &Labels::from([("a".to_string(), "b".to_string())]),
            &Labels::from([("x/y/z".to_string(), "anything goes".to_string())]),
        );
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "metadata.name",
                "metadata.namespace",
                "metadata.annotations[x/y/z]"
            ]
        );
    }
}
