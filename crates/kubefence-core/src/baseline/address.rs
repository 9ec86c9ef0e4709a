//! Parsing the addresses that container configuration holds.
//!
//! A value may hold one address or several, in any of these forms:
//! `svc`, `svc:port`, `svc.ns`, `svc.ns.svc`, `svc.ns.svc.<cluster-domain>`,
//! each optionally with a scheme, user info, path and query
//! (`amqp://user@rabbitmq:5672/`, `http://order-service:3000/api`,
//! `mongodb://u:p@mongo:27017/db?x=y`), separated by commas, semicolons or
//! white space. Command-line flags (`--db=host:5432`) are split at `=`.
//!
//! Also read: schemes inside schemes (`jdbc:postgresql://db:5432/app`,
//! `jdbc:mysql:loadbalance://…`), Oracle's `jdbc:oracle:thin:@//db:1521/XE`
//! and `jdbc:oracle:thin:@db:1521:XE`, and URLs with several hosts
//! (`mongodb://a:1,b:2/x?replicaSet=rs0`: `a` and `b`, each an address; the
//! path and query are never hosts, commas in the query included).
//!
//! A host written as an address (with a port or a scheme) that no Service
//! can have, because it is no DNS name (`no_such_svc:4040`), is still
//! returned, so it can be reported rather than dropped.

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

/// Where a comma-separated item sits relative to the URL before it.
#[derive(Clone, Copy, PartialEq, Eq)]
enum After {
    /// Not inside a URL.
    Nothing,
    /// Inside a URL's host list (`mongodb://a:1,` … ): the next item is
    /// another host of the same URL.
    HostList,
    /// Inside a URL's query (`…?tags=a,` …): the next item is a query value.
    Query,
}

/// Every address-shaped token of `value`, with the key it was assigned to
/// in `key=value` tokens (`-Dspring.rabbitmq.host=rabbitmq`), else "".
pub fn keyed_addresses(value: &str) -> Vec<(String, Address)> {
    let mut out = Vec::new();
    for token in value.split(|c: char| c.is_whitespace() || c == ';') {
        let mut after = After::Nothing;
        let mut url_key = String::new();
        for item in token.split(',') {
            let (key, v) = split_key(item);
            if let Some(url) = Url::parse(v) {
                url_key = key.to_string();
                after = url.after();
                out.extend(url.hosts.into_iter().map(|a| (url_key.clone(), a)));
                continue;
            }
            match after {
                After::HostList => {
                    // `b:2/x?replicaSet=rs0`: a host, then the URL's path and
                    // query (whose `=` is no key).
                    let (authority, rest) = split_authority(item);
                    if let Some(a) = host_address(authority, true) {
                        out.push((url_key.clone(), a));
                    }
                    after = After::of_rest(rest, After::HostList);
                }
                After::Query => {}
                After::Nothing => {
                    out.extend(
                        v.split('|')
                            .filter_map(|t| parse_token(t).map(|a| (key.to_string(), a))),
                    );
                }
            }
        }
    }
    out
}

impl After {
    /// What follows once `rest` (what comes after an authority) is read:
    /// nothing (`/path`), a query (`/x?a=1`), or more hosts (empty rest).
    fn of_rest(rest: &str, empty: After) -> After {
        if rest.is_empty() {
            empty
        } else if rest.contains('?') {
            After::Query
        } else {
            After::Nothing
        }
    }
}

/// `key=value`, but not the `=` of a URL's query.
fn split_key(item: &str) -> (&str, &str) {
    match (item.find('='), item.find("://")) {
        (Some(eq), scheme) if scheme.is_none_or(|s| eq < s) => (&item[..eq], &item[eq + 1..]),
        _ => ("", item),
    }
}

/// A URL with a scheme, and the hosts of its authority.
struct Url<'v> {
    hosts: Vec<Address>,
    /// What follows the authority (`/path?query`), empty when the
    /// authority ended at a comma.
    rest: &'v str,
}

impl<'v> Url<'v> {
    fn parse(item: &'v str) -> Option<Self> {
        let item = trim_quotes(item);
        if let Some(rest) = oracle_thin(item) {
            // `@//db:1521/XE` or `@db:1521:XE`.
            let rest = rest.strip_prefix("//").unwrap_or(rest);
            let (authority, tail) = split_authority(rest);
            let mut parts = authority.splitn(3, ':');
            let host = parts.next().unwrap_or_default();
            let port = match parts.next() {
                Some(p) => Some(p.parse().ok()?),
                None => None,
            };
            let hosts = is_host(host)
                .then(|| Address {
                    host: normalise(host),
                    port,
                    has_scheme: true,
                })
                .into_iter()
                .collect();
            return Some(Self { hosts, rest: tail });
        }
        let (scheme, rest) = item.split_once("://")?;
        if !scheme.split(':').all(is_scheme) {
            return None;
        }
        let (authority, tail) = split_authority(rest);
        let hosts = host_address(authority, true).into_iter().collect();
        Some(Self { hosts, rest: tail })
    }

    fn after(&self) -> After {
        After::of_rest(self.rest, After::HostList)
    }
}

/// `jdbc:oracle:<driver>:@…`: what follows the `@`.
fn oracle_thin(item: &str) -> Option<&str> {
    let rest = item.strip_prefix("jdbc:oracle:")?;
    let (driver, rest) = rest.split_once(":@")?;
    is_scheme(driver).then_some(rest)
}

/// The authority and what follows it (path, query or fragment).
fn split_authority(s: &str) -> (&str, &str) {
    let end = s.find(['/', '?', '#']).unwrap_or(s.len());
    s.split_at(end)
}

fn trim_quotes(token: &str) -> &str {
    token.trim_matches(|c: char| matches!(c, '"' | '\'' | '(' | ')' | '{' | '}'))
}

fn normalise(host: &str) -> String {
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// The host of `[user@]host[:port]`; with `written_as_address` (a scheme
/// or a port), a host no DNS name can be (`no_such_svc`) is kept too.
fn host_address(authority: &str, has_scheme: bool) -> Option<Address> {
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let (host, port) = split_port(host_port)?;
    let acceptable = is_host(host) || ((has_scheme || port.is_some()) && is_host_like(host));
    acceptable.then(|| Address {
        host: normalise(host),
        port,
        has_scheme,
    })
}

fn parse_token(token: &str) -> Option<Address> {
    let token = trim_quotes(token);
    if token.is_empty() || token.contains("://") {
        // A URL is read by `Url::parse`; one it rejected is no address.
        return None;
    }
    let (authority, rest) = split_authority(token);
    // `host:port/path` without a scheme is still an address; a bare path
    // (`/etc/config`) has an empty authority and is not.
    if authority.is_empty() && !rest.is_empty() {
        return None;
    }
    host_address(authority, false)
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

/// Not a DNS name, but shaped like a host someone meant (`no_such_svc`):
/// letters, digits, `-`, `_` and `.`, with a letter somewhere.
fn is_host_like(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
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

    fn hosts(value: &str) -> Vec<(String, Option<u16>)> {
        addresses(value)
            .into_iter()
            .map(|a| (a.host, a.port))
            .collect()
    }

    #[test]
    fn nested_schemes_and_hosts_of_one_url() {
        let db = vec![("db".to_string(), Some(5432))];
        for value in [
            "jdbc:postgresql://db:5432/app",
            "jdbc:mysql:loadbalance://db:5432/app",
            "jdbc:oracle:thin:@//db:5432/XE",
            "jdbc:oracle:thin:@db:5432:XE",
            "--url=jdbc:postgresql://db:5432/app?ssl=true&x=a,b",
        ] {
            assert_eq!(hosts(value), db, "{value}");
        }
        assert_eq!(
            hosts("mongodb://u:p@a:1,b:2,c/x?replicaSet=rs0,tags=d:3"),
            [
                ("a".to_string(), Some(1)),
                ("b".to_string(), Some(2)),
                ("c".to_string(), None)
            ]
        );
        // A list of URLs, and a list after a URL without a query.
        assert_eq!(
            hosts("http://a:1/p,http://b:2/q?x=1,2 c:3"),
            [
                ("a".to_string(), Some(1)),
                ("b".to_string(), Some(2)),
                ("c".to_string(), Some(3))
            ]
        );
        assert_eq!(
            hosts("http://a:1/p,b:2"),
            [("a".to_string(), Some(1)), ("b".to_string(), Some(2))]
        );
        // Not a DNS name, but written as an address: kept for the report.
        assert_eq!(
            hosts("no_such_svc:4040"),
            [("no_such_svc".to_string(), Some(4040))]
        );
        assert!(hosts("no_such_svc").is_empty());
        assert!(hosts("jdbc:postgresql:app").is_empty());
    }
}
