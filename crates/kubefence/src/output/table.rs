//! Aligned tables for people. Column widths come from the endpoint ids, so
//! rows stream without being collected first.

use std::io::{self, Write};

use kubefence_core::engine::{Connectivity, ConnectivityDiff, DiffEntry};

/// `FROM  TO  ALLOWED`, one row per allowed connection, ordered by source
/// then destination.
pub fn write_connectivity<W: Write>(w: &mut W, conn: &Connectivity) -> io::Result<()> {
    let width = conn
        .endpoints
        .iter()
        .map(|e| e.id.chars().count())
        .max()
        .unwrap_or(0)
        .max("FROM".len());
    writeln!(w, "{:width$}  {:width$}  ALLOWED", "FROM", "TO")?;
    let mut rows = 0usize;
    for c in conn.connections() {
        let (from, to) = (&conn.endpoints[c.from].id, &conn.endpoints[c.to].id);
        writeln!(w, "{from:width$}  {to:width$}  {}", c.allowed)?;
        rows += 1;
    }
    if rows == 0 {
        writeln!(w, "(no connection is allowed)")?;
    }
    Ok(())
}

/// One row per changed pair, grouped: added, removed, changed.
pub fn write_diff<W: Write>(w: &mut W, diff: &ConnectivityDiff) -> io::Result<()> {
    if diff.is_empty() {
        return writeln!(w, "no connectivity changes");
    }
    let rows: Vec<[String; 6]> = diff
        .added()
        .map(|e| row("added", e))
        .chain(diff.removed().map(|e| row("removed", e)))
        .chain(diff.changed().map(|e| row("changed", e)))
        .collect();
    let header = ["CHANGE", "FROM", "TO", "BEFORE", "AFTER", "GAINED/LOST"].map(String::from);
    let mut widths = [0usize; 6];
    for r in std::iter::once(&header).chain(&rows) {
        for (wd, cell) in widths.iter_mut().zip(r) {
            *wd = (*wd).max(cell.chars().count());
        }
    }
    for r in std::iter::once(&header).chain(&rows) {
        let line = r
            .iter()
            .zip(widths)
            .map(|(cell, wd)| format!("{cell:wd$}"))
            .collect::<Vec<_>>()
            .join("  ");
        writeln!(w, "{}", line.trim_end())?;
    }
    Ok(())
}

fn row(change: &str, e: &DiffEntry) -> [String; 6] {
    let (gained, lost) = (e.gained(), e.lost());
    let mut delta = Vec::new();
    if !gained.is_empty() {
        delta.push(format!("+{gained}"));
    }
    if !lost.is_empty() {
        delta.push(format!("-{lost}"));
    }
    [
        change.to_string(),
        e.from.clone(),
        e.to.clone(),
        e.before.to_string(),
        e.after.to_string(),
        delta.join(" "),
    ]
}

#[cfg(test)]
mod tests {
    use kubefence_core::engine::{AnalyzeOptions, analyze, diff};

    use super::*;
    use crate::output::fixtures::shop;

    fn text(f: impl FnOnce(&mut Vec<u8>) -> io::Result<()>) -> String {
        let mut out = Vec::new();
        f(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn table_is_aligned() {
        let conn = analyze(&shop(true), &AnalyzeOptions::default());
        let out = text(|w| write_connectivity(w, &conn));
        let expected = "\
FROM                 TO                   ALLOWED
shop/Deployment/db   0.0.0.0/0            all
shop/Deployment/db   ::/0                 all
shop/Deployment/web  shop/Deployment/db   TCP/5432,TCP/8000-8010
shop/Deployment/web  0.0.0.0/0            all
shop/Deployment/web  ::/0                 all
";
        assert_eq!(out, expected);
    }

    #[test]
    fn empty_table_says_so() {
        let conn = analyze(&Default::default(), &AnalyzeOptions::default());
        let out = text(|w| write_connectivity(w, &conn));
        assert!(out.ends_with("(no connection is allowed)\n"), "{out}");
    }

    #[test]
    fn diff_table_groups_changes() {
        let d = diff(&shop(false), &shop(true), &AnalyzeOptions::default());
        let out = text(|w| write_diff(w, &d));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[0].starts_with("CHANGE"), "{out}");
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("removed  shop/Deployment/db")),
            "{out}"
        );
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with("changed") && l.contains("-all")
                    || l.starts_with("changed") && l.contains("-TCP/1-5431")),
            "{out}"
        );
        let same = diff(&shop(true), &shop(true), &AnalyzeOptions::default());
        assert_eq!(text(|w| write_diff(w, &same)), "no connectivity changes\n");
    }
}

#[cfg(test)]
mod scale {
    use kubefence_core::Cluster;
    use kubefence_core::engine::{AnalyzeOptions, analyze};

    use crate::output::fixtures::workload;

    /// A million connections stream to the writer in bounded memory.
    #[test]
    #[ignore = "slow in debug builds: cargo test --release -- --ignored"]
    fn a_million_connections_stream() {
        let mut cluster = Cluster::default();
        for i in 0..1000 {
            cluster
                .workloads
                .push(workload("big", &format!("w{i}"), 80));
        }
        cluster.add_implicit_namespaces();
        let conn = analyze(&cluster, &AnalyzeOptions::default());
        let mut sink = CountingSink(0);
        super::write_connectivity(&mut sink, &conn).unwrap();
        assert_eq!(conn.connection_count(), 1000 * 999 + 2000);
        assert!(sink.0 > 30_000_000, "{}", sink.0);
        let mut sink = CountingSink(0);
        crate::output::json::write_connectivity(&mut sink, &conn).unwrap();
        assert!(sink.0 > 50_000_000);
    }

    struct CountingSink(usize);

    impl std::io::Write for CountingSink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
