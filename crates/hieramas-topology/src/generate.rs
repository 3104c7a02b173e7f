//! The random DAG generator of method §4.2, seeded, and candidate pools.
//!
//! 1. A random permutation `π` of the roles fixes the topological order.
//! 2. Spanning tree: for `k = 1..N-1`, an edge `π[r] → π[k]` with `r` uniform in `[0, k-1]`.
//! 3. `d ~ U(dmin, dmax)`; target edges `max(N-1, floor(d · N(N-1)/2))`, at most `N(N-1)/2`.
//! 4. The unused forward pairs `π[a] → π[b]` (`a < b`), shuffled, fill up to the target.
//!
//! The random stream is ChaCha8 seeded with the `u64` seed, so a seed gives the same graph on
//! every platform and release.

use std::collections::HashSet;

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Topology, TopologyError};

/// One random DAG from `seed`.
pub fn random_dag(
    roles: &[String],
    dmin: f64,
    dmax: f64,
    seed: u64,
) -> Result<Topology, TopologyError> {
    random_dag_with(roles, dmin, dmax, &mut ChaCha8Rng::seed_from_u64(seed))
}

/// One random DAG drawn from `rng`.
pub fn random_dag_with(
    roles: &[String],
    dmin: f64,
    dmax: f64,
    rng: &mut impl Rng,
) -> Result<Topology, TopologyError> {
    if !(0.0..=1.0).contains(&dmin) || !(0.0..=1.0).contains(&dmax) || dmin > dmax {
        return Err(TopologyError::Density { dmin, dmax });
    }
    let n = roles.len();
    let mut perm: Vec<usize> = (0..n).collect();
    perm.shuffle(rng);
    let mut edges: Vec<(usize, usize)> = Vec::new();
    let mut used = HashSet::new();
    for k in 1..n {
        let r = rng.random_range(0..k);
        edges.push((perm[r], perm[k]));
        used.insert((r, k));
    }
    let d = if dmin < dmax {
        rng.random_range(dmin..dmax)
    } else {
        dmin
    };
    let max = n * n.saturating_sub(1) / 2;
    let target = (n.saturating_sub(1))
        .max((d * max as f64).floor() as usize)
        .min(max);
    let mut rest: Vec<(usize, usize)> = (0..n)
        .flat_map(|a| (a + 1..n).map(move |b| (a, b)))
        .filter(|p| !used.contains(p))
        .collect();
    rest.shuffle(rng);
    edges.extend(
        rest.into_iter()
            .take(target.saturating_sub(edges.len()))
            .map(|(a, b)| (perm[a], perm[b])),
    );
    Topology::new(roles.to_vec(), &edges)
}

/// A pool of distinct random DAGs.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool {
    pub graphs: Vec<Topology>,
    /// Draws made (at most `10 × requested`).
    pub attempts: usize,
    pub requested: usize,
}

/// Up to `count` distinct DAGs from one seeded stream, giving up after `10 × count` draws (the
/// space can be small: 3 roles with `dmax < 1` have only 9 distinct graphs). Unlike the
/// official code, `count` is not capped at 100.
pub fn pool(
    roles: &[String],
    count: usize,
    dmin: f64,
    dmax: f64,
    seed: u64,
) -> Result<Pool, TopologyError> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = HashSet::new();
    let mut graphs = Vec::with_capacity(count);
    let mut attempts = 0;
    while graphs.len() < count && attempts < count.saturating_mul(10) {
        attempts += 1;
        let g = random_dag_with(roles, dmin, dmax, &mut rng)?;
        if seen.insert(g.edges().collect::<Vec<_>>()) {
            graphs.push(g);
        }
    }
    if graphs.len() < count {
        tracing::warn!(
            "asked for {count} distinct graphs over {} roles with density [{dmin}, {dmax}], found {} in {attempts} draws",
            roles.len(),
            graphs.len()
        );
    }
    Ok(Pool {
        graphs,
        attempts,
        requested: count,
    })
}
