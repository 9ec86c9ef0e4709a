//! JSON output. `analyze` writes the stable format of `docs/analyze-json.md`
//! one endpoint or connection per line, so it streams.

use std::io::{self, Write};

use kubefence_core::Labels;
use kubefence_core::engine::{
    Connectivity, ConnectivityDiff, DiffEntry, Endpoint, EndpointFilter, GroupMatrix,
    class_connections_where, open_blocks_where,
};
use serde::Serialize;

use super::Allowed;

#[derive(Serialize)]
struct JsonEndpoint<'a> {
    id: &'a str,
    namespace: Option<&'a str>,
    kind: &'a str,
    name: &'a str,
    labels: &'a Labels,
    /// External endpoints only: the CIDRs that cover exactly their addresses.
    #[serde(skip_serializing_if = "Option::is_none")]
    addresses: Option<Vec<String>>,
}

impl<'a> From<&'a Endpoint> for JsonEndpoint<'a> {
    fn from(e: &'a Endpoint) -> Self {
        Self {
            id: &e.id,
            namespace: e.namespace.as_deref(),
            kind: e.kind_str(),
            name: &e.name,
            labels: &e.labels,
            addresses: e
                .addresses
                .as_ref()
                .map(|set| set.to_cidrs().iter().map(ToString::to_string).collect()),
        }
    }
}

#[derive(Serialize)]
struct JsonConnection<'a> {
    from: &'a str,
    to: &'a str,
    allowed: Allowed,
}

/// Keeps the kind of a write error (a closed pipe stays a closed pipe).
fn to_io(e: serde_json::Error) -> io::Error {
    match e.io_error_kind() {
        Some(kind) => io::Error::new(kind, e),
        None => io::Error::other(e),
    }
}

/// `{"endpoints":[...],"connections":[...]}`, one element per line: every
/// endpoint, and the connections `filter` keeps.
pub fn write_connectivity_where<W: Write>(
    w: &mut W,
    conn: &Connectivity,
    filter: &EndpointFilter,
) -> io::Result<()> {
    w.write_all(b"{\"endpoints\":[")?;
    for (i, e) in conn.endpoints.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        serde_json::to_writer(&mut *w, &JsonEndpoint::from(e)).map_err(to_io)?;
    }
    w.write_all(b"\n],\"connections\":[")?;
    for (i, c) in conn.connections_where(filter).enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        let row = JsonConnection {
            from: &conn.endpoints[c.from].id,
            to: &conn.endpoints[c.to].id,
            allowed: Allowed::from(c.allowed),
        };
        serde_json::to_writer(&mut *w, &row).map_err(to_io)?;
    }
    w.write_all(b"\n]}\n")
}

#[derive(Serialize)]
struct JsonClass<'a> {
    id: usize,
    members: Vec<&'a str>,
}

#[derive(Serialize)]
struct JsonOpenBlock<'a> {
    from: &'a [usize],
    to: &'a [usize],
    allowed: Allowed,
}

#[derive(Serialize)]
struct JsonClassConnection {
    from: usize,
    to: usize,
    allowed: Allowed,
}

/// `{"classes":[{id,members}],"open":[{from,to,allowed}],
/// "connections":[{from,to,allowed}]}`, one element per line: endpoints
/// that behave alike form one class (each endpoint is a member of exactly
/// one); a connection from class A to class B means every member of A may
/// open `allowed` to every member of B other than itself; an open block
/// means that of every class in its `from` to every class in its `to`
/// (classes not isolated for egress to classes not isolated for ingress),
/// except from addresses to addresses. With a filter, only the class
/// connections that hold at least one kept pair and the open blocks that
/// cover the kept pairs are listed, and only the classes they name.
pub fn write_classes<W: Write>(
    w: &mut W,
    conn: &Connectivity,
    filter: &EndpointFilter,
) -> io::Result<()> {
    let members = conn.class_members();
    let kept = class_connections_where(conn, filter);
    let open = open_blocks_where(conn, filter);
    let mut listed = vec![filter.is_empty(); members.len()];
    for c in &kept {
        listed[c.from] = true;
        listed[c.to] = true;
    }
    for &c in open.iter().flat_map(|(from, to)| from.iter().chain(to)) {
        listed[c] = true;
    }
    w.write_all(b"{\"classes\":[")?;
    let mut first = true;
    for (id, class) in members.iter().enumerate().filter(|(id, _)| listed[*id]) {
        w.write_all(if first { b"\n" } else { b",\n" })?;
        first = false;
        let row = JsonClass {
            id,
            members: class
                .iter()
                .map(|&e| conn.endpoints[e].id.as_str())
                .collect(),
        };
        serde_json::to_writer(&mut *w, &row).map_err(to_io)?;
    }
    w.write_all(b"\n],\"open\":[")?;
    for (i, (from, to)) in open.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        let block = JsonOpenBlock {
            from,
            to,
            allowed: Allowed::All("all"),
        };
        serde_json::to_writer(&mut *w, &block).map_err(to_io)?;
    }
    w.write_all(b"\n],\"connections\":[")?;
    for (i, c) in kept.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        let row = JsonClassConnection {
            from: c.from,
            to: c.to,
            allowed: Allowed::from(c.allowed),
        };
        serde_json::to_writer(&mut *w, &row).map_err(to_io)?;
    }
    w.write_all(b"\n]}\n")
}

#[derive(Serialize)]
struct JsonGroup<'a> {
    id: &'a str,
    endpoints: usize,
}

#[derive(Serialize)]
struct JsonGroupConnection<'a> {
    from: &'a str,
    to: &'a str,
    pairs: u64,
    of: u64,
    allowed: Allowed,
}

/// `{"groups":[{id,endpoints}],"connections":[{from,to,pairs,of,allowed}]}`:
/// `pairs` of the `of` ordered endpoint pairs from group `from` to group
/// `to` may connect, and `allowed` is what at least one of them may open.
pub fn write_groups<W: Write>(w: &mut W, matrix: &GroupMatrix) -> io::Result<()> {
    w.write_all(b"{\"groups\":[")?;
    for (i, (id, endpoints)) in matrix.groups.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        let row = JsonGroup {
            id,
            endpoints: *endpoints,
        };
        serde_json::to_writer(&mut *w, &row).map_err(to_io)?;
    }
    w.write_all(b"\n],\"connections\":[")?;
    for (i, c) in matrix.connections.iter().enumerate() {
        w.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        let row = JsonGroupConnection {
            from: &c.from,
            to: &c.to,
            pairs: c.pairs,
            of: c.of,
            allowed: Allowed::from(&c.allowed),
        };
        serde_json::to_writer(&mut *w, &row).map_err(to_io)?;
    }
    w.write_all(b"\n]}\n")
}

#[derive(Serialize)]
struct JsonDiff<'a> {
    added: Vec<JsonConnection<'a>>,
    removed: Vec<JsonConnection<'a>>,
    changed: Vec<JsonChange<'a>>,
}

#[derive(Serialize)]
struct JsonChange<'a> {
    from: &'a str,
    to: &'a str,
    before: Allowed,
    after: Allowed,
    gained: Allowed,
    lost: Allowed,
}

/// `{"added":[{from,to,allowed}],"removed":[{from,to,allowed}],
/// "changed":[{from,to,before,after,gained,lost}]}`; `removed` reports what
/// was allowed before.
pub fn write_diff<W: Write>(w: &mut W, diff: &ConnectivityDiff) -> io::Result<()> {
    fn conn(e: &DiffEntry, before: bool) -> JsonConnection<'_> {
        JsonConnection {
            from: &e.from,
            to: &e.to,
            allowed: Allowed::from(if before { &e.before } else { &e.after }),
        }
    }
    let doc = JsonDiff {
        added: diff.added().map(|e| conn(e, false)).collect(),
        removed: diff.removed().map(|e| conn(e, true)).collect(),
        changed: diff
            .changed()
            .map(|e| JsonChange {
                from: &e.from,
                to: &e.to,
                before: Allowed::from(&e.before),
                after: Allowed::from(&e.after),
                gained: Allowed::from(&e.gained()),
                lost: Allowed::from(&e.lost()),
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *w, &doc).map_err(to_io)?;
    w.write_all(b"\n")
}

#[cfg(test)]
mod tests {
    use kubefence_core::engine::{AnalyzeOptions, analyze, diff};
    use serde_json::{Value, json};

    use super::*;
    use crate::output::fixtures::shop;

    fn render(conn: &Connectivity) -> Value {
        let mut out = Vec::new();
        write_connectivity_where(&mut out, conn, &EndpointFilter::NONE).unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn analyze_json_has_the_documented_shape() {
        let conn = analyze(&shop(true), &AnalyzeOptions::default());
        let v = render(&conn);
        let endpoints = v["endpoints"].as_array().unwrap();
        assert_eq!(
            endpoints[0],
            json!({"id": "shop/Deployment/db", "namespace": "shop", "kind": "Deployment",
                   "name": "db", "labels": {"app": "db"}})
        );
        let external = endpoints.iter().find(|e| e["kind"] == "External").unwrap();
        assert_eq!(external["namespace"], Value::Null);
        assert_eq!(external["id"], "0.0.0.0/0");
        assert_eq!(external["addresses"], json!(["0.0.0.0/0"]));
        assert_eq!(external["labels"], json!({}));

        let connections = v["connections"].as_array().unwrap();
        // db may reach web? No: web admits nothing. web -> db on its ports.
        assert!(connections.contains(&json!({
            "from": "shop/Deployment/web", "to": "shop/Deployment/db",
            "allowed": ["TCP/5432", "TCP/8000-8010"]
        })));
        assert!(connections.contains(&json!({
            "from": "shop/Deployment/db", "to": "0.0.0.0/0", "allowed": "all"
        })));
        assert!(
            !connections.iter().any(|c| c["to"] == "shop/Deployment/web"),
            "web is isolated with no rules: {connections:?}"
        );
        assert_eq!(connections.len(), conn.connection_count());
    }

    #[test]
    fn analyze_json_without_policies_allows_all() {
        let v = render(&analyze(&shop(false), &AnalyzeOptions::default()));
        let connections = v["connections"].as_array().unwrap();
        // 2 workloads and 2 external ranges (IPv4, IPv6): every ordered
        // pair but ext->ext.
        assert_eq!(connections.len(), 10);
        assert!(connections.iter().all(|c| c["allowed"] == "all"));
    }

    #[test]
    fn empty_cluster_is_valid_json() {
        let v = render(&analyze(&Default::default(), &AnalyzeOptions::default()));
        assert_eq!(v["connections"], json!([]));
    }

    #[test]
    fn diff_json_lists_added_removed_changed() {
        let d = diff(&shop(false), &shop(true), &AnalyzeOptions::default());
        let mut out = Vec::new();
        write_diff(&mut out, &d).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["added"], json!([]));
        let removed = v["removed"].as_array().unwrap();
        assert!(removed.contains(&json!({
            "from": "shop/Deployment/db", "to": "shop/Deployment/web", "allowed": "all"
        })));
        let changed = v["changed"].as_array().unwrap();
        assert!(changed.iter().any(|c| c["from"] == "shop/Deployment/web"
            && c["to"] == "shop/Deployment/db"
            && c["before"] == "all"
            && c["after"] == json!(["TCP/5432", "TCP/8000-8010"])
            && c["gained"] == json!([])));
    }
}
