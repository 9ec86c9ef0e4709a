//! Mermaid `flowchart LR` (renders in GitHub Markdown): namespaces are
//! subgraphs, external ranges stadium-shaped nodes, edges carry the ports.

use std::io::{self, Write};

use kubefence_core::engine::{Connectivity, EndpointFilter};

/// A Mermaid quoted label; `"` becomes the `#quot;` entity.
fn label(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "#quot;"))
}

/// Every endpoint, and an edge per connection that `filter` keeps.
pub fn write_connectivity_where<W: Write>(
    w: &mut W,
    conn: &Connectivity,
    filter: &EndpointFilter,
) -> io::Result<()> {
    writeln!(w, "flowchart LR")?;
    let mut open: Option<&str> = None;
    let mut subgraphs = 0usize;
    for (i, e) in conn.endpoints.iter().enumerate() {
        let ns = e.namespace.as_deref();
        if open != ns {
            if open.is_some() {
                writeln!(w, "  end")?;
            }
            if let Some(ns) = ns {
                writeln!(w, "  subgraph ns{subgraphs}[{}]", label(ns))?;
                subgraphs += 1;
            }
            open = ns;
        }
        let indent = if ns.is_some() { "    " } else { "  " };
        if e.is_external() {
            writeln!(w, "{indent}n{i}([{}])", label(&e.id))?;
        } else {
            writeln!(
                w,
                "{indent}n{i}[{}]",
                label(&format!("{}/{}", e.kind_str(), e.name))
            )?;
        }
    }
    if open.is_some() {
        writeln!(w, "  end")?;
    }
    for c in conn.connections_where(filter) {
        writeln!(
            w,
            "  n{} -->|{}| n{}",
            c.from,
            label(&c.allowed.to_string()),
            c.to
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kubefence_core::engine::{AnalyzeOptions, analyze};

    use super::*;
    use crate::output::fixtures::shop;

    #[test]
    fn mermaid_flowchart() {
        let conn = analyze(&shop(true), &AnalyzeOptions::default());
        let mut out = Vec::new();
        write_connectivity_where(&mut out, &conn, &EndpointFilter::NONE).unwrap();
        let out = String::from_utf8(out).unwrap();
        let expected = "\
flowchart LR
  subgraph ns0[\"shop\"]
    n0[\"Deployment/db\"]
    n1[\"Deployment/web\"]
  end
  n2([\"0.0.0.0/0\"])
  n3([\"::/0\"])
  n0 -->|\"all\"| n2
  n0 -->|\"all\"| n3
  n1 -->|\"TCP/5432,TCP/8000-8010\"| n0
  n1 -->|\"all\"| n2
  n1 -->|\"all\"| n3
";
        assert_eq!(out, expected);
        assert_eq!(label("a\"b"), "\"a#quot;b\"");
    }
}
