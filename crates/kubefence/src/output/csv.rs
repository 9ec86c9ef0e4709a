//! CSV (RFC 4180): a header row, then one row per connection or change.

use std::io::{self, Write};

use kubefence_core::engine::{
    Connectivity, ConnectivityDiff, DiffEntry, EndpointFilter, GroupMatrix,
};

/// Quotes a field when it holds a comma, a quote or a line break.
fn field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\"")).into()
    } else {
        s.into()
    }
}

/// `from,to,allowed`; `allowed` is `all` or the port strings joined by
/// commas. One row per connection that `filter` keeps.
pub fn write_connectivity_where<W: Write>(
    w: &mut W,
    conn: &Connectivity,
    filter: &EndpointFilter,
) -> io::Result<()> {
    writeln!(w, "from,to,allowed")?;
    for c in conn.connections_where(filter) {
        writeln!(
            w,
            "{},{},{}",
            field(&conn.endpoints[c.from].id),
            field(&conn.endpoints[c.to].id),
            field(&c.allowed.to_string())
        )?;
    }
    Ok(())
}

/// `from,to,pairs,of,allowed`: one row per pair of groups with something
/// allowed.
pub fn write_groups<W: Write>(w: &mut W, matrix: &GroupMatrix) -> io::Result<()> {
    writeln!(w, "from,to,pairs,of,allowed")?;
    for c in &matrix.connections {
        writeln!(
            w,
            "{},{},{},{},{}",
            field(&c.from),
            field(&c.to),
            c.pairs,
            c.of,
            field(&c.allowed.to_string())
        )?;
    }
    Ok(())
}

/// `change,from,to,before,after` with change `added`, `removed` or `changed`.
pub fn write_diff<W: Write>(w: &mut W, diff: &ConnectivityDiff) -> io::Result<()> {
    writeln!(w, "change,from,to,before,after")?;
    let mut row = |change: &str, e: &DiffEntry| {
        writeln!(
            w,
            "{change},{},{},{},{}",
            field(&e.from),
            field(&e.to),
            field(&e.before.to_string()),
            field(&e.after.to_string())
        )
    };
    for e in diff.added() {
        row("added", e)?;
    }
    for e in diff.removed() {
        row("removed", e)?;
    }
    for e in diff.changed() {
        row("changed", e)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use kubefence_core::engine::{AnalyzeOptions, analyze, diff};

    use super::*;
    use crate::output::fixtures::shop;

    #[test]
    fn csv_has_header_and_quotes_lists() {
        let conn = analyze(&shop(true), &AnalyzeOptions::default());
        let mut out = Vec::new();
        write_connectivity_where(&mut out, &conn, &EndpointFilter::NONE).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "from,to,allowed");
        assert!(
            lines.contains(&"shop/Deployment/web,shop/Deployment/db,\"TCP/5432,TCP/8000-8010\"")
        );
        assert!(lines.contains(&"shop/Deployment/db,0.0.0.0/0,all"));
        assert_eq!(lines.len(), 1 + conn.connection_count());
    }

    #[test]
    fn diff_csv() {
        let d = diff(&shop(false), &shop(true), &AnalyzeOptions::default());
        let mut out = Vec::new();
        write_diff(&mut out, &d).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(out.starts_with("change,from,to,before,after\n"));
        assert!(
            out.contains("removed,shop/Deployment/db,shop/Deployment/web,all,none\n"),
            "{out}"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(field("a"), "a");
        assert_eq!(field("a,b"), "\"a,b\"");
        assert_eq!(field("a\"b"), "\"a\"\"b\"");
    }
}
