//! Parsing the addresses that container configuration holds.
//!
//! A value may hold one address or several, in any of these forms:
//! `svc`, `svc:port`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<cluster-domain>`,
//! each optionally with a scheme, user info, path and query
//! (`amqp://user@rabbitmq:5672/`, `http://order-service:3000/api`,
//! `mongodb://u:p@mongo:27017/db?x=y`), separated by commas, semicolons or
//! white space. Command-line flags (`--db=host:5432`) are split at `=`.

/// One address found in a value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    /// Lower-cased host name or IP address.
    pub host: String,
    pub port: Option<u16>,
    /// Written with a scheme (`http://...`): certainly meant as an address.
    pub has_scheme: bool,
}

/// Every address-shaped token of `value`.
pub fn addresses(value: &str) -> Vec<Address> {
    keyed_addresses(value).into_iter().map(|(_, a)| a).collect()
}

/// Every address-shaped token of `value`, with the key it was assigned to
/// in `key=value` tokens (`-Dspring.rabbitmq.host=rabbitmq`), else "".
pub fn keyed_addresses(value: &str) -> Vec<(String, Address)> {
    value
        .split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .flat_map(|token| {
            // `key=value`, but not the `=` of a URL's query.
            let (key, v) = match (token.find('='), token.find("://")) {
                (Some(eq), scheme) if scheme.is_none_or(|s| eq < s) => {
                    (&token[..eq], &token[eq + 1..])
                }
                _ => ("", token),
            };
            v.split('|')
                .filter_map(move |t| parse_token(t).map(|a| (key.to_string(), a)))
        })
        .collect()
}

fn parse_token(token: &str) -> Option<Address> {
    let token = token.trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | '{' | '}'));
    if token.is_empty() {
        return None;
    }
    let (rest, has_scheme) = match token.split_once("://") {
        Some((scheme, rest)) if is_scheme(scheme) => (rest, true),
        Some(_) => return None,
        None => (token, false),
    };
    // The authority ends at the path, query or fragment.
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if !has_scheme && authority.len() != rest.len() {
        // `host:port/path` without a scheme is still an address; a bare
        // path (`/etc/config`) has an empty authority and is not.
        if authority.is_empty() {
            return None;
        }
    }
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = split_port(host_port)?;
    if !is_host(host) {
        return None;
    }
    Some(Address {
        host: host.trim_end_matches('.').to_ascii_lowercase(),
        port,
        has_scheme,
    })
}

fn is_scheme(s: &str) -> bool {
    s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
}

/// `host`, `host:port`, `[v6]:port`; `None` when the port is not a number.
fn split_port(s: &str) -> Option<(&str, Option<u16>)> {
    if let Some(rest) = s.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        return match after.strip_prefix(':') {
            Some(p) => Some((host, Some(p.parse().ok()?))),
            None if after.is_empty() => Some((host, None)),
            None => None,
        };
    }
    match s.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => Some((host, Some(port.parse().ok()?))),
        Some(_) => Some((s, None)).filter(|(h, _)| h.parse::<std::net::Ipv6Addr>().is_ok()),
        None => Some((s, None)),
    }
}

/// A DNS name (letters, digits, `-` and `.`, starting with a letter or
/// digit) or an IP address.
fn is_host(s: &str) -> bool {
    if s.parse::<std::net::IpAddr>().is_ok() {
        return true;
    }
    let s = s.trim_end_matches('.');
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
        && s.chars().any(|c| c.is_ascii_alphabetic())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(value: &str) -> (String, Option<u16>, bool) {
        let found = addresses(value);
        assert_eq!(found.len(), 1, "{value}: {found:?}");
        let a = &found[0];
        (a.host.clone(), a.port, a.has_scheme)
    }

    #[test]
    fn every_form_of_a_service_address() {
        let cases: [(&str, &str, Option<u16>, bool); 12] = [
            ("cartservice", "cartservice", None, false),
            ("cartservice:7070", "cartservice", Some(7070), false),
            ("cart.shop", "cart.shop", None, false),
            ("cart.shop.svc", "cart.shop.svc", None, false),
            (
                "cart.shop.svc.cluster.local",
                "cart.shop.svc.cluster.local",
                None,
                false,
            ),
            (
                "cart.shop.svc.cluster.local.:7070",
                "cart.shop.svc.cluster.local",
                Some(7070),
                false,
            ),
            ("amqp://user@rabbitmq:5672/", "rabbitmq", Some(5672), true),
            (
                "http://order-service:3000/api",
                "order-service",
                Some(3000),
                true,
            ),
            (
                "mongodb://u:p@mongo:27017/db?x=y",
                "mongo",
                Some(27017),
                true,
            ),
            ("redis://Redis-Cart", "redis-cart", None, true),
            ("--db=postgres:5432", "postgres", Some(5432), false),
            (
                "catalogue-db:3306/socksdb",
                "catalogue-db",
                Some(3306),
                false,
            ),
        ];
        for (value, host, port, scheme) in cases {
            assert_eq!(one(value), (host.to_string(), port, scheme), "{value}");
        }
    }

    #[test]
    fn lists_and_non_addresses() {
        let hosts: Vec<String> = addresses("a:1, b:2;c  d")
            .into_iter()
            .map(|a| a.host)
            .collect();
        assert_eq!(hosts, ["a", "b", "c", "d"]);
        for not_an_address in [
            "/etc/config.yaml",
            "8080",
            "x=1.5",
            "file:/tmp/a",
            "-Xmx512m",
            "a_b",
        ] {
            let found: Vec<String> = addresses(not_an_address)
                .into_iter()
                .map(|a| a.host)
                .collect();
            assert!(
                found.iter().all(|h| h != not_an_address),
                "{not_an_address} gave {found:?}"
            );
        }
        assert_eq!(one("10.0.0.1:5432"), ("10.0.0.1".into(), Some(5432), false));
        assert_eq!(
            one("[2001:db8::1]:443"),
            ("2001:db8::1".into(), Some(443), false)
        );
        assert!(addresses("host:notaport").is_empty());
    }
}
