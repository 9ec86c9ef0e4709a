//! The connectivity graph's layout, computed here so the report needs no
//! layout engine in the browser and no Graphviz: each namespace is a box of
//! its workloads in a near-square grid, the boxes are packed on shelves
//! (left to right, wrapping at a width that keeps the whole drawing about
//! 1.6 times as wide as high), and every edge is a quadratic curve bent to
//! its left, so the two directions between a pair never overlap.

/// Node box size and spacing, in SVG user units (pixels at zoom 1).
pub const NODE_W: f64 = 190.0;
pub const NODE_H: f64 = 30.0;
const GAP_X: f64 = 16.0;
const GAP_Y: f64 = 12.0;
const PAD: f64 = 14.0;
const TITLE_H: f64 = 22.0;
const GROUP_GAP: f64 = 40.0;
const MARGIN: f64 = 20.0;

/// A group's box: its title and where it sits.
#[derive(Clone, Debug, PartialEq)]
pub struct GroupBox {
    pub title: String,
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
}

/// Where each node's box sits (top-left corner).
#[derive(Clone, Debug, PartialEq)]
pub struct Layout {
    pub width: f64,
    pub height: f64,
    pub groups: Vec<GroupBox>,
    /// By node index: the top-left corner of its box.
    pub nodes: Vec<(f64, f64)>,
}

/// Lays out `groups`: each a title and the indices of its nodes (every node
/// index below `node_count` in exactly one group).
pub fn lay_out(groups: &[(String, Vec<usize>)], node_count: usize) -> Layout {
    // Each group's grid and size first, then the shelves.
    let sizes: Vec<(usize, f64, f64)> = groups
        .iter()
        .map(|(_, members)| {
            let n = members.len().max(1);
            let cols = (n as f64).sqrt().ceil() as usize;
            let rows = n.div_ceil(cols);
            let w = 2.0 * PAD + cols as f64 * NODE_W + (cols - 1) as f64 * GAP_X;
            let h = TITLE_H + 2.0 * PAD + rows as f64 * NODE_H + (rows - 1) as f64 * GAP_Y;
            (cols, w, h)
        })
        .collect();
    let area: f64 = sizes
        .iter()
        .map(|(_, w, h)| (w + GROUP_GAP) * (h + GROUP_GAP))
        .sum();
    let widest = sizes.iter().map(|s| s.1).fold(0.0, f64::max);
    let shelf_width = widest.max((area * 1.6).sqrt());

    let mut layout = Layout {
        width: 0.0,
        height: 0.0,
        groups: Vec::with_capacity(groups.len()),
        nodes: vec![(0.0, 0.0); node_count],
    };
    let (mut x, mut y, mut shelf_height) = (MARGIN, MARGIN, 0.0_f64);
    for ((title, members), &(cols, w, h)) in groups.iter().zip(&sizes) {
        if x > MARGIN && x + w > MARGIN + shelf_width {
            x = MARGIN;
            y += shelf_height + GROUP_GAP;
            shelf_height = 0.0;
        }
        for (k, &node) in members.iter().enumerate() {
            let (col, row) = (k % cols, k / cols);
            if let Some(slot) = layout.nodes.get_mut(node) {
                *slot = (
                    x + PAD + col as f64 * (NODE_W + GAP_X),
                    y + TITLE_H + PAD + row as f64 * (NODE_H + GAP_Y),
                );
            }
        }
        layout.groups.push(GroupBox {
            title: title.clone(),
            x,
            y,
            w,
            h,
        });
        layout.width = layout.width.max(x + w + MARGIN);
        shelf_height = shelf_height.max(h);
        x += w + GROUP_GAP;
    }
    layout.height = y + shelf_height + MARGIN;
    layout
}

/// An edge's curve between two node boxes (top-left corners): the start and
/// end on the boxes' borders, the control point, and the curve's midpoint
/// (where its label goes).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Curve {
    pub start: (f64, f64),
    pub control: (f64, f64),
    pub end: (f64, f64),
    pub mid: (f64, f64),
}

impl Curve {
    /// The SVG path data.
    pub fn path(&self) -> String {
        format!(
            "M{:.1},{:.1} Q{:.1},{:.1} {:.1},{:.1}",
            self.start.0, self.start.1, self.control.0, self.control.1, self.end.0, self.end.1
        )
    }
}

/// The curve from box `from` to box `to`, bent to the left of the straight
/// line so that `to → from` bends the other way.
pub fn curve(from: (f64, f64), to: (f64, f64)) -> Curve {
    let a = (from.0 + NODE_W / 2.0, from.1 + NODE_H / 2.0);
    let b = (to.0 + NODE_W / 2.0, to.1 + NODE_H / 2.0);
    let (dx, dy) = (b.0 - a.0, b.1 - a.1);
    let len = (dx * dx + dy * dy).sqrt().max(1.0);
    let bend = (len * 0.15).min(80.0);
    let control = (
        (a.0 + b.0) / 2.0 - dy / len * bend,
        (a.1 + b.1) / 2.0 + dx / len * bend,
    );
    let start = border_point(a, control);
    let end = border_point(b, control);
    let mid = (
        0.25 * start.0 + 0.5 * control.0 + 0.25 * end.0,
        0.25 * start.1 + 0.5 * control.1 + 0.25 * end.1,
    );
    Curve {
        start,
        control,
        end,
        mid,
    }
}

/// Where the ray from a box's centre toward `toward` leaves the box (with a
/// small gap, so arrowheads are not hidden under the box).
fn border_point(center: (f64, f64), toward: (f64, f64)) -> (f64, f64) {
    let (vx, vy) = (toward.0 - center.0, toward.1 - center.1);
    let (hw, hh) = (NODE_W / 2.0 + 3.0, NODE_H / 2.0 + 3.0);
    let tx = if vx.abs() > f64::EPSILON {
        hw / vx.abs()
    } else {
        f64::INFINITY
    };
    let ty = if vy.abs() > f64::EPSILON {
        hh / vy.abs()
    } else {
        f64::INFINITY
    };
    let t = tx.min(ty).min(1.0);
    (center.0 + vx * t, center.1 + vy * t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn overlaps(a: (f64, f64, f64, f64), b: (f64, f64, f64, f64)) -> bool {
        a.0 < b.0 + b.2 && b.0 < a.0 + a.2 && a.1 < b.1 + b.3 && b.1 < a.1 + a.3
    }

    #[test]
    fn nodes_sit_inside_their_group_and_nothing_overlaps() {
        let groups: Vec<(String, Vec<usize>)> = vec![
            ("a".into(), (0..7).collect()),
            ("b".into(), vec![7]),
            ("c".into(), (8..20).collect()),
            ("d".into(), (20..23).collect()),
        ];
        let l = lay_out(&groups, 23);
        assert_eq!(l.groups.len(), 4);
        for (g, (_, members)) in l.groups.iter().zip(&groups) {
            for &m in members {
                let (x, y) = l.nodes[m];
                assert!(
                    x >= g.x && x + NODE_W <= g.x + g.w,
                    "node {m} in {}",
                    g.title
                );
                assert!(
                    y >= g.y + TITLE_H && y + NODE_H <= g.y + g.h,
                    "node {m} in {}",
                    g.title
                );
                assert!(x + NODE_W <= l.width && y + NODE_H <= l.height);
            }
        }
        for i in 0..23 {
            for j in i + 1..23 {
                let (a, b) = (l.nodes[i], l.nodes[j]);
                assert!(
                    !overlaps((a.0, a.1, NODE_W, NODE_H), (b.0, b.1, NODE_W, NODE_H)),
                    "nodes {i} and {j} overlap"
                );
            }
        }
        for i in 0..4 {
            for j in i + 1..4 {
                let (a, b) = (&l.groups[i], &l.groups[j]);
                assert!(!overlaps((a.x, a.y, a.w, a.h), (b.x, b.y, b.w, b.h)));
            }
        }
    }

    #[test]
    fn the_two_directions_of_a_pair_bend_apart() {
        let (a, b) = ((0.0, 0.0), (400.0, 0.0));
        let there = curve(a, b);
        let back = curve(b, a);
        assert!(
            there.control.1 > 0.0 && back.control.1 < 0.0,
            "{there:?} {back:?}"
        );
        // Ends are on the borders, outside the boxes' interiors.
        let inside = |p: (f64, f64), corner: (f64, f64)| {
            p.0 > corner.0 && p.0 < corner.0 + NODE_W && p.1 > corner.1 && p.1 < corner.1 + NODE_H
        };
        for c in [there, back] {
            assert!(!inside(c.start, a) && !inside(c.start, b), "{c:?}");
            assert!(!inside(c.end, a) && !inside(c.end, b), "{c:?}");
        }
    }
}
