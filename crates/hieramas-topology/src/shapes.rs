//! Fixed topologies over roles in their configured order.

use crate::{Topology, TopologyError};

/// Every forward edge in role order (`i → j` for `i < j`): the complete DAG. The official
/// "full graph" baseline behaves like this (method §7.1).
pub fn full(roles: Vec<String>) -> Result<Topology, TopologyError> {
    let n = roles.len();
    let edges: Vec<(usize, usize)> = (0..n)
        .flat_map(|i| (i + 1..n).map(move |j| (i, j)))
        .collect();
    Topology::new(roles, &edges)
}

/// `0 → 1 → … → N-1`.
pub fn chain(roles: Vec<String>) -> Result<Topology, TopologyError> {
    let edges: Vec<(usize, usize)> = (1..roles.len()).map(|j| (j - 1, j)).collect();
    Topology::new(roles, &edges)
}

/// The first role feeds every other (`0 → j`); the others run in parallel after it.
pub fn star(roles: Vec<String>) -> Result<Topology, TopologyError> {
    let edges: Vec<(usize, usize)> = (1..roles.len()).map(|j| (0, j)).collect();
    Topology::new(roles, &edges)
}

/// No edges: every role works alone, the decision node reads them all.
pub fn empty(roles: Vec<String>) -> Result<Topology, TopologyError> {
    Topology::new(roles, &[])
}
