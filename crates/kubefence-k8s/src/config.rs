//! The baseline configuration file (`--config FILE`), shared by `generate`
//! and the operator: YAML (or JSON, which is YAML) into
//! [`BaselineConfig`], with unknown fields rejected so a typo is an error
//! rather than a silently ignored setting.

use kubefence_core::baseline::BaselineConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("{origin}: {message}")]
    Parse { origin: String, message: String },
    #[error("{origin}: {source}")]
    Invalid {
        origin: String,
        #[source]
        source: kubefence_core::baseline::ConfigError,
    },
}

/// Parses and checks a config; `origin` names it in errors (a path).
/// An empty document is the default config.
pub fn parse_baseline_config(text: &str, origin: &str) -> Result<BaselineConfig, ConfigFileError> {
    let config: BaselineConfig = if text.trim().is_empty() {
        BaselineConfig::default()
    } else {
        serde_saphyr::from_str(text).map_err(|e| ConfigFileError::Parse {
            origin: origin.to_string(),
            message: e.to_string(),
        })?
    };
    config.check().map_err(|source| ConfigFileError::Invalid {
        origin: origin.to_string(),
        source,
    })?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_file_is_the_default() {
        let cfg = parse_baseline_config("", "c.yaml").unwrap();
        assert_eq!(cfg, BaselineConfig::default());
    }

    #[test]
    fn fields_override_defaults_and_others_stay() {
        let text = "\
clusterDomain: example.internal
dns:
  namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: dns}
  podSelector:
    matchLabels: {app: coredns}
protectedNamespaces: [kube-system, ops]
";
        let cfg = parse_baseline_config(text, "c.yaml").unwrap();
        assert_eq!(cfg.cluster_domain, "example.internal");
        assert_eq!(cfg.dns.peer.pod_selector.match_labels["app"], "coredns");
        // The DNS ports keep their default (UDP and TCP 53).
        assert_eq!(cfg.dns.ports, BaselineConfig::default().dns.ports);
        assert!(cfg.protected_namespaces.contains("ops"));
        assert_eq!(
            cfg.ingress_controllers,
            BaselineConfig::default().ingress_controllers
        );
    }

    #[test]
    fn ingress_controllers_may_name_the_class_they_serve() {
        let text = "\
ingressControllers:
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: traefik}}
    podSelector: {matchLabels: {app.kubernetes.io/name: traefik}}
    className: traefik
  - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: ingress-nginx}}
";
        let cfg = parse_baseline_config(text, "c.yaml").unwrap();
        let classes: Vec<Option<&str>> = cfg
            .ingress_controllers
            .iter()
            .map(|c| c.class_name.as_deref())
            .collect();
        assert_eq!(classes, [Some("traefik"), None]);
        // A misspelt key is an error, not an entry serving every class.
        let err = parse_baseline_config(
            "ingressControllers:\n  - namespaceSelector: {}\n    classname: traefik\n",
            "c.yaml",
        )
        .unwrap_err();
        assert!(err.to_string().contains("classname"), "{err}");
    }

    #[test]
    fn a_typo_is_an_error_naming_the_file() {
        let err = parse_baseline_config("clusterDomian: x\n", "c.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("c.yaml: "), "{text}");
        assert!(text.contains("clusterDomian"), "{text}");
    }

    #[test]
    fn an_invalid_selector_is_an_error_naming_the_field() {
        let text = "\
dns:
  namespaceSelector:
    matchExpressions: [{key: a, operator: In}]
";
        let err = parse_baseline_config(text, "c.yaml").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("dns.namespaceSelector"), "{text}");
    }
}
