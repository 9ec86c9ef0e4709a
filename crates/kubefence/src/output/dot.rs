//! Graphviz: `kubefence analyze -f m/ -o dot | dot -Tsvg > graph.svg`.
//! Workloads are boxes grouped by namespace, external ranges ellipses, and
//! every allowed connection an edge labelled with its ports.

use std::io::{self, Write};

use kubefence_core::engine::{Connectivity, EndpointFilter};

/// A DOT double-quoted string.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Every endpoint, and an edge per connection that `filter` keeps.
pub fn write_connectivity_where<W: Write>(
    w: &mut W,
    conn: &Connectivity,
    filter: &EndpointFilter,
) -> io::Result<()> {
    writeln!(w, "digraph connectivity {{")?;
    writeln!(w, "  rankdir=LR;")?;
    writeln!(w, "  node [shape=box, fontname=\"Helvetica\"];")?;
    writeln!(w, "  edge [fontname=\"Helvetica\", fontsize=10];")?;
    // Endpoints are sorted by id, so a namespace's workloads are adjacent.
    let mut open: Option<&str> = None;
    for (i, e) in conn.endpoints.iter().enumerate() {
        let ns = e.namespace.as_deref();
        if open != ns {
            if open.is_some() {
                writeln!(w, "  }}")?;
            }
            if let Some(ns) = ns {
                writeln!(w, "  subgraph {} {{", quote(&format!("cluster_{ns}")))?;
                writeln!(w, "    label={};", quote(ns))?;
            }
            open = ns;
        }
        let indent = if ns.is_some() { "    " } else { "  " };
        if e.is_external() {
            writeln!(w, "{indent}n{i} [label={}, shape=ellipse];", quote(&e.id))?;
        } else {
            let label = format!("{}/{}", e.kind_str(), e.name);
            writeln!(
                w,
                "{indent}n{i} [label={}, tooltip={}];",
                quote(&label),
                quote(&e.id)
            )?;
        }
    }
    if open.is_some() {
        writeln!(w, "  }}")?;
    }
    for c in conn.connections_where(filter) {
        writeln!(
            w,
            "  n{} -> n{} [label={}];",
            c.from,
            c.to,
            quote(&c.allowed.to_string())
        )?;
    }
    writeln!(w, "}}")
}

#[cfg(test)]
mod tests {
    use kubefence_core::engine::{AnalyzeOptions, analyze};

    use super::*;
    use crate::output::fixtures::shop;

    #[test]
    fn dot_digraph() {
        let conn = analyze(&shop(true), &AnalyzeOptions::default());
        let mut out = Vec::new();
        write_connectivity_where(&mut out, &conn, &EndpointFilter::NONE).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("digraph connectivity {\n"), "{out}");
        assert!(
            out.contains("  subgraph \"cluster_shop\" {\n    label=\"shop\";\n"),
            "{out}"
        );
        assert!(out.contains("    n0 [label=\"Deployment/db\", tooltip=\"shop/Deployment/db\"];"));
        assert!(
            out.contains("  n2 [label=\"0.0.0.0/0\", shape=ellipse];"),
            "{out}"
        );
        assert!(
            out.contains("  n1 -> n0 [label=\"TCP/5432,TCP/8000-8010\"];"),
            "{out}"
        );
        assert!(out.contains("  n0 -> n2 [label=\"all\"];"), "{out}");
        assert!(out.ends_with("}\n"));
        assert_eq!(out.matches(" -> ").count(), conn.connection_count());
        assert_eq!(quote("a\"b\\"), "\"a\\\"b\\\\\"");
    }
}
