//! Aligned tables for people. Rows stream in pages: each page of
//! [`PAGE_ROWS`] rows is padded to its own widest cell, so one long id
//! (an external endpoint of many ranges) widens its page only, not every
//! row of the output.

use std::io::{self, Write};

use super::color;

use kubefence_core::engine::{
    Connectivity, ConnectivityDiff, DiffEntry, EndpointFilter, GroupMatrix,
    class_connections_where, open_blocks_where,
};

/// Rows per page of a streamed table.
pub const PAGE_ROWS: usize = 100;

/// Writes rows of `N` cells, padded per page; the header is written with
/// the first page. The last column is never padded.
pub struct PagedTable<'w, W: Write, const N: usize> {
    w: &'w mut W,
    header: Option<[String; N]>,
    page: Vec<[String; N]>,
    rows: usize,
}

impl<'w, W: Write, const N: usize> PagedTable<'w, W, N> {
    pub fn new(w: &'w mut W, header: [&str; N]) -> Self {
        Self {
            w,
            header: Some(header.map(str::to_string)),
            page: Vec::with_capacity(PAGE_ROWS),
            rows: 0,
        }
    }

    pub fn row(&mut self, cells: [String; N]) -> io::Result<()> {
        self.page.push(cells);
        self.rows += 1;
        if self.page.len() >= PAGE_ROWS {
            self.flush_page()?;
        }
        Ok(())
    }

    fn flush_page(&mut self) -> io::Result<()> {
        let header = self.header.take();
        let mut widths = [0usize; N];
        for r in header.iter().chain(&self.page) {
            for (wd, cell) in widths.iter_mut().zip(r) {
                *wd = (*wd).max(cell.chars().count());
            }
        }
        let is_header = header.is_some();
        for (row, r) in header.iter().chain(&self.page).enumerate() {
            let mut line = String::new();
            for (i, (cell, wd)) in r.iter().zip(widths).enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                if i + 1 == N {
                    line.push_str(cell);
                } else {
                    line.push_str(&format!("{cell:wd$}"));
                }
            }
            let line = line.trim_end();
            if is_header && row == 0 {
                writeln!(self.w, "{}", color::paint(color::HEADER, line))?;
            } else {
                writeln!(self.w, "{line}")?;
            }
        }
        self.page.clear();
        Ok(())
    }

    /// Writes what is left; `empty` when no row was written at all (the
    /// header is still written).
    pub fn finish(mut self, empty: &str) -> io::Result<()> {
        self.flush_page()?;
        if self.rows == 0 {
            writeln!(self.w, "{empty}")?;
        }
        Ok(())
    }
}

/// `FROM  TO  ALLOWED`, one row per allowed connection, ordered by source
/// then destination.
pub fn write_connectivity<W: Write>(w: &mut W, conn: &Connectivity) -> io::Result<()> {
    write_connectivity_where(w, conn, &EndpointFilter::NONE)
}

/// [`write_connectivity`] of the connections `filter` keeps.
pub fn write_connectivity_where<W: Write>(
    w: &mut W,
    conn: &Connectivity,
    filter: &EndpointFilter,
) -> io::Result<()> {
    let mut table = PagedTable::new(w, ["FROM", "TO", "ALLOWED"]);
    for c in conn.connections_where(filter) {
        table.row([
            conn.endpoints[c.from].id.clone(),
            conn.endpoints[c.to].id.clone(),
            c.allowed.to_string(),
        ])?;
    }
    table.finish("(no connection is allowed)")
}

/// `CLASS  MEMBERS` (one row per class, members comma-separated), the open
/// block (classes not isolated for egress to classes not isolated for
/// ingress), then `FROM  TO  ALLOWED` between classes: every member of FROM
/// may open ALLOWED to every member of TO other than itself.
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
    let mut table = PagedTable::new(&mut *w, ["CLASS", "MEMBERS"]);
    for (id, class) in members.iter().enumerate().filter(|(id, _)| listed[*id]) {
        let names: Vec<&str> = class
            .iter()
            .map(|&e| conn.endpoints[e].id.as_str())
            .collect();
        table.row([format!("c{id}"), names.join(",")])?;
    }
    table.finish("(no class)")?;
    let names = |classes: &[usize]| {
        classes
            .iter()
            .map(|c| format!("c{c}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    for (from, to) in &open {
        writeln!(w)?;
        writeln!(
            w,
            "OPEN (not isolated): every member of FROM may open all to every member of TO \
             (not from an address to an address)"
        )?;
        writeln!(w, "FROM  {}", names(from))?;
        writeln!(w, "TO    {}", names(to))?;
    }
    writeln!(w)?;
    let mut table = PagedTable::new(&mut *w, ["FROM", "TO", "ALLOWED"]);
    for c in kept {
        table.row([
            format!("c{}", c.from),
            format!("c{}", c.to),
            c.allowed.to_string(),
        ])?;
    }
    table.finish("(no connection is allowed)")
}

/// `FROM  TO  PAIRS  ALLOWED`, one row per pair of groups with something
/// allowed; PAIRS is `allowed/all` ordered endpoint pairs.
pub fn write_groups<W: Write>(w: &mut W, matrix: &GroupMatrix) -> io::Result<()> {
    let mut table = PagedTable::new(w, ["FROM", "TO", "PAIRS", "ALLOWED"]);
    for c in &matrix.connections {
        table.row([
            c.from.clone(),
            c.to.clone(),
            format!("{}/{}", c.pairs, c.of),
            c.allowed.to_string(),
        ])?;
    }
    table.finish("(no connection is allowed)")
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
    for (i, r) in std::iter::once(&header).chain(&rows).enumerate() {
        let line = r
            .iter()
            .zip(widths)
            .map(|(cell, wd)| format!("{cell:wd$}"))
            .collect::<Vec<_>>()
            .join("  ");
        let style = match (i, r[0].as_str()) {
            (0, _) => color::HEADER,
            (_, "added") => color::GOOD,
            (_, "removed") => color::BAD,
            _ => color::CHANGED,
        };
        writeln!(w, "{}", color::paint(style, line.trim_end()))?;
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
FROM                 TO                  ALLOWED
shop/Deployment/db   0.0.0.0/0           all
shop/Deployment/db   ::/0                all
shop/Deployment/web  shop/Deployment/db  TCP/5432,TCP/8000-8010
shop/Deployment/web  0.0.0.0/0           all
shop/Deployment/web  ::/0                all
";
        assert_eq!(out, expected);
    }

    #[test]
    fn a_long_id_widens_its_own_page_only() {
        let mut cluster = kubefence_core::Cluster::default();
        for i in 0..150 {
            cluster.workloads.push(crate::output::fixtures::workload(
                "a",
                &format!("w{i:03}"),
                80,
            ));
        }
        let long = "x".repeat(200);
        cluster
            .workloads
            .push(crate::output::fixtures::workload("z", &long, 80));
        cluster.add_implicit_namespaces();
        let conn = analyze(&cluster, &AnalyzeOptions::default());
        let out = text(|w| write_connectivity(w, &conn));
        let first = out.lines().nth(1).unwrap();
        assert!(
            first.len() < 100,
            "the first page has no long id, so it is not padded to it: {first:?}"
        );
        let long_rows = out.lines().filter(|l| l.contains(&long)).count();
        assert!(long_rows > 0);
        // Every row of a page is aligned: the TO column starts at one place.
        let page: Vec<&str> = out.lines().skip(1).take(PAGE_ROWS).collect();
        let to_at = |l: &str| l.find("  a/").or_else(|| l.find("  z/"));
        let starts: std::collections::BTreeSet<_> = page.iter().filter_map(|l| to_at(l)).collect();
        assert_eq!(starts.len(), 1, "{page:?}");
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
        crate::output::json::write_connectivity_where(
            &mut sink,
            &conn,
            &kubefence_core::engine::EndpointFilter::NONE,
        )
        .unwrap();
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
