//! HieraMAS topologies: a DAG over the role supernodes of a benchmark, followed by the
//! decision node, which reads every supernode's output.
//!
//! - [`Topology`]: validated on construction (roles exist and are unique, no self-loops, no
//!   duplicate edges, acyclic); the paper's adjacency matrix (`A[dst][src]`, method §4.1);
//!   a deterministic topological order; JSON and Graphviz DOT that round-trip.
//! - [`generate`]: the seeded random DAG generator of method §4.2 and candidate pools.
//! - [`shapes`]: fixed shapes — full (complete forward DAG in role order), chain, star.
//! - [`roleset`]: the roles of each benchmark and the decision node's prompts, as data
//!   (`roles/*.toml`).
//! - [`svg`]: a topology as an SVG picture (layered, decision node last).
//! - [`schedule`]: runs one query over a topology — supernodes in true topological order,
//!   independent branches in parallel, then the decision node — and returns its trace
//!   (`faithful` switches to the official config-order execution).
//!
//! ```
//! use hieramas_topology::{Topology, generate};
//!
//! let roles = ["analyst", "solver", "checker"].map(String::from).to_vec();
//! let t = Topology::from_names(roles.clone(), &[("analyst", "solver"), ("solver", "checker")]).unwrap();
//! assert_eq!(t.topological_order(), vec![0, 1, 2]);
//! assert_eq!(t.predecessors(2), vec![1]);
//! assert_eq!(Topology::from_json(&t.to_json()).unwrap(), t);
//! assert_eq!(Topology::from_dot(&t.to_dot()).unwrap(), t);
//!
//! // A cycle is refused, naming the roles.
//! let err = Topology::from_names(roles.clone(), &[("solver", "checker"), ("checker", "solver")]);
//! assert!(err.unwrap_err().to_string().contains("cycle"));
//!
//! // The paper's generator: seeded, always a connected DAG, density in range.
//! let g = generate::random_dag(&roles, 0.3, 0.7, 42).unwrap();
//! assert_eq!(g, generate::random_dag(&roles, 0.3, 0.7, 42).unwrap());
//! assert!(g.is_weakly_connected());
//! ```

pub mod dot;
pub mod generate;
pub mod roleset;
pub mod schedule;
pub mod shapes;
pub mod svg;

use std::collections::BTreeSet;

use petgraph::graph::{DiGraph, NodeIndex};
use serde::{Deserialize, Serialize};

/// The id of the decision node in JSON, DOT and traces.
pub const DECISION: &str = "decision";

/// Errors of this crate, each naming what is wrong.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TopologyError {
    #[error("a topology needs at least one role")]
    NoRoles,
    #[error("role {0:?} appears twice")]
    DuplicateRole(String),
    #[error("role name {0:?} is reserved for the decision node")]
    ReservedRole(String),
    #[error("edge {from} -> {to}: unknown role {unknown:?} (roles: {known})")]
    UnknownRole {
        from: String,
        to: String,
        unknown: String,
        known: String,
    },
    #[error("edge {0} -> {0} is a self-loop")]
    SelfLoop(String),
    #[error("edge {from} -> {to} is given twice")]
    DuplicateEdge { from: String, to: String },
    #[error("the edges form a cycle through {0:?}")]
    Cycle(String),
    #[error("adjacency matrix: {0}")]
    Adjacency(String),
    #[error("density range [{dmin}, {dmax}] is not within [0, 1]")]
    Density { dmin: f64, dmax: f64 },
    #[error("{format}: {detail}")]
    Parse {
        format: &'static str,
        detail: String,
    },
}

/// A DAG over named roles (node `i` is role `i`); the decision node follows all of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topology {
    roles: Vec<String>,
    /// `(src, dst)` role indices, sorted.
    edges: BTreeSet<(usize, usize)>,
}

impl Topology {
    /// A topology over `roles` with `edges` as `(src, dst)` indices.
    pub fn new(roles: Vec<String>, edges: &[(usize, usize)]) -> Result<Topology, TopologyError> {
        check_roles(&roles)?;
        let n = roles.len();
        let name = |i: usize| roles.get(i).cloned().unwrap_or_else(|| format!("#{i}"));
        let mut set = BTreeSet::new();
        for &(s, d) in edges {
            for (i, _) in [(s, 0), (d, 1)] {
                if i >= n {
                    return Err(TopologyError::UnknownRole {
                        from: name(s),
                        to: name(d),
                        unknown: format!("#{i}"),
                        known: roles.join(", "),
                    });
                }
            }
            if s == d {
                return Err(TopologyError::SelfLoop(name(s)));
            }
            if !set.insert((s, d)) {
                return Err(TopologyError::DuplicateEdge {
                    from: name(s),
                    to: name(d),
                });
            }
        }
        let t = Topology { roles, edges: set };
        if let Err(cycle) = petgraph::algo::toposort(&t.graph(), None) {
            return Err(TopologyError::Cycle(
                t.roles[cycle.node_id().index()].clone(),
            ));
        }
        Ok(t)
    }

    /// A topology from role names and `(from, to)` name pairs.
    pub fn from_names(
        roles: Vec<String>,
        edges: &[(&str, &str)],
    ) -> Result<Topology, TopologyError> {
        check_roles(&roles)?;
        let index = |from: &str, to: &str, r: &str| {
            roles
                .iter()
                .position(|x| x == r)
                .ok_or_else(|| TopologyError::UnknownRole {
                    from: from.to_string(),
                    to: to.to_string(),
                    unknown: r.to_string(),
                    known: roles.join(", "),
                })
        };
        let pairs = edges
            .iter()
            .map(|(f, t)| Ok((index(f, t, f)?, index(f, t, t)?)))
            .collect::<Result<Vec<_>, TopologyError>>()?;
        Topology::new(roles, &pairs)
    }

    /// From the paper's `N×N` matrix with `A[dst][src] = 1` for an edge `src → dst`.
    pub fn from_adjacency(roles: Vec<String>, a: &[Vec<u8>]) -> Result<Topology, TopologyError> {
        let n = roles.len();
        if a.len() != n || a.iter().any(|row| row.len() != n) {
            return Err(TopologyError::Adjacency(format!(
                "expected {n}x{n} for {n} roles"
            )));
        }
        let mut edges = Vec::new();
        for (dst, row) in a.iter().enumerate() {
            for (src, &v) in row.iter().enumerate() {
                match v {
                    0 => {}
                    1 => edges.push((src, dst)),
                    other => {
                        return Err(TopologyError::Adjacency(format!(
                            "entry [{dst}][{src}] is {other}, not 0 or 1"
                        )));
                    }
                }
            }
        }
        Topology::new(roles, &edges)
    }

    /// The paper's matrix: `A[dst][src] = 1` for an edge `src → dst`.
    pub fn adjacency(&self) -> Vec<Vec<u8>> {
        let n = self.roles.len();
        let mut a = vec![vec![0u8; n]; n];
        for &(s, d) in &self.edges {
            a[d][s] = 1;
        }
        a
    }

    pub fn roles(&self) -> &[String] {
        &self.roles
    }

    pub fn len(&self) -> usize {
        self.roles.len()
    }

    pub fn is_empty(&self) -> bool {
        self.roles.is_empty()
    }

    /// `(src, dst)` role indices, sorted.
    pub fn edges(&self) -> impl ExactSizeIterator<Item = (usize, usize)> + '_ {
        self.edges.iter().copied()
    }

    pub fn edge_count(&self) -> usize {
        self.edges.len()
    }

    /// Edges over the `N(N-1)/2` a DAG on `N` nodes can have (method §4.2); 0 for one role.
    pub fn density(&self) -> f64 {
        let n = self.roles.len();
        let max = n * n.saturating_sub(1) / 2;
        if max == 0 {
            0.0
        } else {
            self.edges.len() as f64 / max as f64
        }
    }

    /// The roles with an edge into `i`, ascending.
    pub fn predecessors(&self, i: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter(|(_, d)| *d == i)
            .map(|(s, _)| *s)
            .collect()
    }

    /// The roles `i` has an edge to, ascending.
    pub fn successors(&self, i: usize) -> Vec<usize> {
        self.edges
            .iter()
            .filter(|(s, _)| *s == i)
            .map(|(_, d)| *d)
            .collect()
    }

    /// A topological order; among the roles ready at once, the lowest index first (so a
    /// graph whose edges all point forward in role order runs in role order).
    pub fn topological_order(&self) -> Vec<usize> {
        let n = self.roles.len();
        let mut indegree = vec![0usize; n];
        for &(_, d) in &self.edges {
            indegree[d] += 1;
        }
        let mut ready: BTreeSet<usize> = (0..n).filter(|&i| indegree[i] == 0).collect();
        let mut order = Vec::with_capacity(n);
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for d in self.successors(i) {
                indegree[d] -= 1;
                if indegree[d] == 0 {
                    ready.insert(d);
                }
            }
        }
        order
    }

    /// Whether the graph is connected when edge directions are ignored.
    pub fn is_weakly_connected(&self) -> bool {
        petgraph::algo::connected_components(&self.graph()) <= 1
    }

    /// The petgraph view: node weights are role indices.
    pub fn graph(&self) -> DiGraph<usize, ()> {
        let mut g = DiGraph::with_capacity(self.roles.len(), self.edges.len());
        let nodes: Vec<NodeIndex> = (0..self.roles.len()).map(|i| g.add_node(i)).collect();
        for &(s, d) in &self.edges {
            g.add_edge(nodes[s], nodes[d], ());
        }
        g
    }

    /// Every edge by node id, the decision node's incoming edges included (as in traces).
    pub fn edges_with_decision(&self) -> Vec<[String; 2]> {
        let mut out: Vec<[String; 2]> = self
            .edges
            .iter()
            .map(|&(s, d)| [self.roles[s].clone(), self.roles[d].clone()])
            .collect();
        out.extend(self.roles.iter().map(|r| [r.clone(), DECISION.to_string()]));
        out
    }

    /// `{"roles": [...], "edges": [["from", "to"], ...]}` (role-to-role edges only; the
    /// decision node follows every role).
    pub fn to_json(&self) -> String {
        let json = TopologyJson {
            roles: self.roles.clone(),
            edges: self
                .edges
                .iter()
                .map(|&(s, d)| [self.roles[s].clone(), self.roles[d].clone()])
                .collect(),
        };
        serde_json::to_string_pretty(&json).unwrap_or_default()
    }

    /// An SVG picture with `title` above it (see [`svg`]).
    pub fn to_svg(&self, title: &str) -> String {
        svg::write(self, title)
    }

    /// Reads [`Topology::to_json`]'s format; edges into the decision node are accepted and
    /// ignored (they are implied).
    pub fn from_json(text: &str) -> Result<Topology, TopologyError> {
        let j: TopologyJson = serde_json::from_str(text).map_err(|e| TopologyError::Parse {
            format: "topology JSON",
            detail: e.to_string(),
        })?;
        let edges: Vec<(&str, &str)> = j
            .edges
            .iter()
            .filter(|[_, to]| to != DECISION)
            .map(|[f, t]| (f.as_str(), t.as_str()))
            .collect();
        Topology::from_names(j.roles.clone(), &edges)
    }

    /// Graphviz DOT: role nodes in order, the decision node, role edges solid, decision
    /// edges dashed. [`Topology::from_dot`] reads it back.
    pub fn to_dot(&self) -> String {
        dot::write(self)
    }

    /// Reads the DOT subset [`Topology::to_dot`] writes (node and `->` edge statements,
    /// attributes ignored).
    pub fn from_dot(text: &str) -> Result<Topology, TopologyError> {
        dot::read(text)
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct TopologyJson {
    roles: Vec<String>,
    edges: Vec<[String; 2]>,
}

fn check_roles(roles: &[String]) -> Result<(), TopologyError> {
    if roles.is_empty() {
        return Err(TopologyError::NoRoles);
    }
    let mut seen = BTreeSet::new();
    for r in roles {
        if r == DECISION {
            return Err(TopologyError::ReservedRole(r.clone()));
        }
        if !seen.insert(r.as_str()) {
            return Err(TopologyError::DuplicateRole(r.clone()));
        }
    }
    Ok(())
}
