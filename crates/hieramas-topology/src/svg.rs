//! A topology as a standalone SVG picture: supernodes in layers by their longest path from a
//! source, edges as arrows (curved when they skip layers), the decision node at the bottom
//! with a dashed arrow from every supernode. Deterministic, no external tools.

use crate::{DECISION, Topology};

const BOX_W: f64 = 150.0;
const BOX_H: f64 = 36.0;
const GAP_X: f64 = 30.0;
const GAP_Y: f64 = 70.0;
const MARGIN: f64 = 24.0;
const TITLE_H: f64 = 28.0;

/// The picture of `t`, with `title` above it (empty: none).
pub fn write(t: &Topology, title: &str) -> String {
    let n = t.len();
    // Layer = longest path from a source; the decision node one below the deepest.
    let mut depth = vec![0usize; n];
    for j in t.topological_order() {
        depth[j] = t
            .predecessors(j)
            .into_iter()
            .map(|i| depth[i] + 1)
            .max()
            .unwrap_or(0);
    }
    let decision_layer = depth.iter().max().map_or(0, |d| d + 1);
    let mut layers: Vec<Vec<usize>> = vec![Vec::new(); decision_layer + 1];
    for j in 0..n {
        layers[depth[j]].push(j);
    }
    layers[decision_layer].push(n); // n stands for the decision node
    let widest = layers.iter().map(Vec::len).max().unwrap_or(1) as f64;
    let width = 2.0 * MARGIN + widest * BOX_W + (widest - 1.0) * GAP_X;
    let top = MARGIN + if title.is_empty() { 0.0 } else { TITLE_H };
    let height = top + MARGIN + layers.len() as f64 * BOX_H + (layers.len() - 1) as f64 * GAP_Y;

    // Box centres.
    let mut centre = vec![(0.0, 0.0); n + 1];
    for (l, members) in layers.iter().enumerate() {
        let row_w = members.len() as f64 * BOX_W + (members.len() as f64 - 1.0) * GAP_X;
        let x0 = (width - row_w) / 2.0 + BOX_W / 2.0;
        let y = top + BOX_H / 2.0 + l as f64 * (BOX_H + GAP_Y);
        for (k, &j) in members.iter().enumerate() {
            centre[j] = (x0 + k as f64 * (BOX_W + GAP_X), y);
        }
    }

    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" \
         viewBox=\"0 0 {width:.0} {height:.0}\" font-family=\"sans-serif\" font-size=\"13\">\n\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"7\" \
         markerHeight=\"7\" orient=\"auto-start-reverse\"><path d=\"M0,0 L10,5 L0,10 z\" \
         fill=\"#444\"/></marker></defs>\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    if !title.is_empty() {
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" font-weight=\"bold\">{}</text>\n",
            width / 2.0,
            MARGIN + 14.0,
            escape(title)
        ));
    }
    let edge = |s: &mut String, from: usize, to: usize, class: &str| {
        let (x1, y1) = (centre[from].0, centre[from].1 + BOX_H / 2.0);
        let (x2, y2) = (centre[to].0, centre[to].1 - BOX_H / 2.0);
        let skip = layer_of(&depth, decision_layer, to) - layer_of(&depth, decision_layer, from);
        // Edges that skip layers bow sideways so they do not run through the boxes between.
        let bow = if skip > 1 && class == "edge" {
            (BOX_W / 2.0 + GAP_X / 2.0) * if x2 >= x1 { 1.0 } else { -1.0 }
        } else {
            0.0
        };
        let dash = if class == "decision-edge" {
            " stroke-dasharray=\"4 3\" stroke=\"#999\""
        } else {
            " stroke=\"#444\""
        };
        s.push_str(&format!(
            "<path class=\"{class}\" data-from=\"{}\" data-to=\"{}\" d=\"M{x1:.1},{y1:.1} C{:.1},{:.1} {:.1},{:.1} {x2:.1},{y2:.1}\" fill=\"none\"{dash} marker-end=\"url(#arrow)\"/>\n",
            escape(name(t, from)),
            escape(name(t, to)),
            x1 + bow,
            y1 + GAP_Y * 0.6,
            x2 + bow,
            y2 - GAP_Y * 0.6,
        ));
    };
    for (from, to) in t.edges() {
        edge(&mut s, from, to, "edge");
    }
    for from in 0..n {
        edge(&mut s, from, n, "decision-edge");
    }
    for (j, &(x, y)) in centre.iter().enumerate() {
        let (fill, label) = if j == n {
            ("#fde9c9", DECISION.to_string())
        } else {
            ("#dbe8fb", t.roles()[j].clone())
        };
        let label = shorten(&label, 20);
        s.push_str(&format!(
            "<g class=\"node\" data-id=\"{}\"><rect x=\"{:.1}\" y=\"{:.1}\" width=\"{BOX_W}\" height=\"{BOX_H}\" rx=\"8\" fill=\"{fill}\" stroke=\"#335\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text></g>\n",
            escape(name(t, j)),
            x - BOX_W / 2.0,
            y - BOX_H / 2.0,
            y + 4.5,
            escape(&label)
        ));
    }
    s.push_str("</svg>\n");
    s
}

fn name(t: &Topology, j: usize) -> &str {
    t.roles().get(j).map_or(DECISION, String::as_str)
}

fn layer_of(depth: &[usize], decision_layer: usize, j: usize) -> usize {
    depth.get(j).copied().unwrap_or(decision_layer)
}

fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max - 1).collect();
        t.push('…');
        t
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{generate, shapes};

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("role <{i}>")).collect()
    }

    #[test]
    fn every_node_and_edge_is_drawn_once() {
        for seed in 0..20 {
            let t = generate::random_dag(&names(6), 0.3, 0.7, seed).unwrap();
            let svg = write(&t, "a & b");
            assert_eq!(svg.matches("class=\"node\"").count(), 7);
            assert_eq!(svg.matches("class=\"edge\"").count(), t.edge_count());
            assert_eq!(svg.matches("class=\"decision-edge\"").count(), 6);
            for (s, d) in t.edges() {
                let tag = format!(
                    "data-from=\"{}\" data-to=\"{}\"",
                    escape(&t.roles()[s]),
                    escape(&t.roles()[d])
                );
                assert!(svg.contains(&tag), "{tag}");
            }
            // Escaped, well-formed enough: no raw '<' inside text and balanced tags.
            assert!(svg.contains("role &lt;0&gt;") && svg.contains("a &amp; b"));
            assert_eq!(svg.matches("<g ").count(), svg.matches("</g>").count());
            assert_eq!(svg, write(&t, "a & b"), "deterministic");
        }
    }

    #[test]
    fn layers_follow_the_longest_path() {
        // A chain puts every role one layer lower than the one before; the decision node last.
        let t = shapes::chain(names(3)).unwrap();
        let svg = write(&t, "");
        let ys: Vec<f64> = svg
            .lines()
            .filter(|l| l.starts_with("<g class=\"node\""))
            .map(|l| {
                let y = l.split(" y=\"").nth(1).unwrap();
                y[..y.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        assert_eq!(ys.len(), 4);
        assert!(ys.windows(2).all(|w| w[0] < w[1]), "{ys:?}");
    }
}
