//! Topologies: validation errors, adjacency convention, order, JSON and DOT round-trips, and
//! the generator's properties (method §4.2).

#![allow(clippy::unwrap_used)]

use std::collections::HashSet;

use hieramas_topology::{Topology, TopologyError, generate, shapes};
use proptest::prelude::*;

fn roles(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("role{i}")).collect()
}

#[test]
fn invalid_topologies_say_what_is_wrong() {
    let r = roles(3);
    let e = |edges: &[(usize, usize)]| Topology::new(r.clone(), edges).unwrap_err();
    assert_eq!(e(&[(0, 0)]), TopologyError::SelfLoop("role0".into()));
    assert!(matches!(
        e(&[(0, 1), (0, 1)]),
        TopologyError::DuplicateEdge { .. }
    ));
    assert!(matches!(
        e(&[(0, 1), (1, 2), (2, 0)]),
        TopologyError::Cycle(_)
    ));
    assert!(e(&[(0, 5)]).to_string().contains("unknown role \"#5\""));
    let err = Topology::from_names(r.clone(), &[("role0", "critic")]).unwrap_err();
    assert!(
        err.to_string().contains("\"critic\"") && err.to_string().contains("role0, role1, role2")
    );
    assert_eq!(
        Topology::new(vec![], &[]).unwrap_err(),
        TopologyError::NoRoles
    );
    let dup = vec!["a".to_string(), "a".to_string()];
    assert_eq!(
        Topology::new(dup, &[]).unwrap_err(),
        TopologyError::DuplicateRole("a".into())
    );
    let reserved = vec!["decision".to_string()];
    assert!(matches!(
        Topology::new(reserved, &[]).unwrap_err(),
        TopologyError::ReservedRole(_)
    ));
}

#[test]
fn adjacency_is_dst_by_src() {
    let t = Topology::new(roles(3), &[(0, 2), (1, 2)]).unwrap();
    assert_eq!(
        t.adjacency(),
        vec![vec![0, 0, 0], vec![0, 0, 0], vec![1, 1, 0]]
    );
    assert_eq!(
        Topology::from_adjacency(roles(3), &t.adjacency()).unwrap(),
        t
    );
    assert!(Topology::from_adjacency(roles(3), &[vec![0, 2, 0], vec![0; 3], vec![0; 3]]).is_err());
    assert!(Topology::from_adjacency(roles(2), &[vec![0, 0]]).is_err());
}

#[test]
fn order_is_topological_and_stable() {
    // 2 → 0 → 1: 2 must run first although it comes last in role order.
    let t = Topology::new(roles(3), &[(2, 0), (0, 1)]).unwrap();
    assert_eq!(t.topological_order(), vec![2, 0, 1]);
    assert_eq!(
        shapes::full(roles(4)).unwrap().topological_order(),
        vec![0, 1, 2, 3]
    );
    assert_eq!(shapes::full(roles(4)).unwrap().edge_count(), 6);
    assert_eq!(shapes::chain(roles(4)).unwrap().predecessors(3), vec![2]);
    assert_eq!(shapes::star(roles(4)).unwrap().successors(0), vec![1, 2, 3]);
    let e = shapes::empty(roles(2)).unwrap();
    assert_eq!(e.edges_with_decision().len(), 2);
    assert!(!e.is_weakly_connected());
}

#[test]
fn dot_from_other_writers_is_read() {
    let text = r#"
        // written by hand
        strict digraph G {
          graph [rankdir=TB]; node [shape=box];
          a; "b c" [label="B"];
          a -> "b c" -> d [color=red]
          d -> decision
        }"#;
    let t = Topology::from_dot(text).unwrap();
    assert_eq!(t.roles(), ["a", "b c", "d"]);
    assert_eq!(t.edges().collect::<Vec<_>>(), vec![(0, 1), (1, 2)]);
    assert!(
        Topology::from_dot("graph G { a -- b }")
            .unwrap_err()
            .to_string()
            .contains("digraph")
    );
    assert!(
        Topology::from_dot("digraph { a -> b; b -> a }")
            .unwrap_err()
            .to_string()
            .contains("cycle")
    );
    assert!(Topology::from_dot("digraph { a -> ").is_err());
}

#[test]
fn three_roles_below_full_density_have_nine_graphs() {
    // Method §4.2: with N = 3 and dmax < 1 only the 2 spanning-tree edges remain, and no node
    // gets two incoming edges: 6 paths and 3 out-forks.
    let r = roles(3);
    let mut seen = HashSet::new();
    for seed in 0..2000 {
        let g = generate::random_dag(&r, 0.3, 0.8, seed).unwrap();
        assert_eq!(g.edge_count(), 2);
        assert!((0..3).all(|i| g.predecessors(i).len() <= 1));
        seen.insert(g.edges().collect::<Vec<_>>());
    }
    assert_eq!(seen.len(), 9);
    let pool = generate::pool(&r, 100, 0.3, 0.7, 1).unwrap();
    assert_eq!(pool.graphs.len(), 9);
    assert_eq!(pool.attempts, 1000);
}

#[test]
fn pools_are_distinct_seeded_and_uncapped() {
    let r = roles(8);
    let p = generate::pool(&r, 200, 0.3, 0.7, 7).unwrap();
    assert_eq!(
        p.graphs.len(),
        200,
        "the official code caps pools at 100; we do not"
    );
    let distinct: HashSet<_> = p
        .graphs
        .iter()
        .map(|g| g.edges().collect::<Vec<_>>())
        .collect();
    assert_eq!(distinct.len(), 200);
    assert_eq!(p, generate::pool(&r, 200, 0.3, 0.7, 7).unwrap());
    assert_ne!(
        p.graphs,
        generate::pool(&r, 200, 0.3, 0.7, 8).unwrap().graphs
    );
    assert!(generate::random_dag(&r, 0.8, 0.3, 0).is_err());
}

proptest! {
    #[test]
    fn generated_graphs_are_connected_dags_in_range(
        n in 1usize..12, lo in 0.0f64..1.0, span in 0.0f64..1.0, seed in any::<u64>()
    ) {
        let hi = (lo + span).min(1.0);
        let r = roles(n);
        let g = generate::random_dag(&r, lo, hi, seed).unwrap();
        // Acyclic by construction of Topology; order covers every role.
        prop_assert_eq!(g.topological_order().len(), n);
        prop_assert!(g.is_weakly_connected());
        let max = n * n.saturating_sub(1) / 2;
        let e = g.edge_count();
        prop_assert!(e >= n.saturating_sub(1));
        prop_assert!(e <= max);
        prop_assert!(e <= (n.saturating_sub(1)).max((hi * max as f64).floor() as usize));
        prop_assert!(e >= (n.saturating_sub(1)).max((lo * max as f64).floor() as usize).min(max));
        prop_assert_eq!(&g, &generate::random_dag(&r, lo, hi, seed).unwrap());
    }

    #[test]
    fn json_and_dot_round_trip(n in 1usize..9, seed in any::<u64>(), quoted in any::<bool>()) {
        let names: Vec<String> = (0..n)
            .map(|i| if quoted { format!("r \"{i}\" \\x") } else { format!("r{i}") })
            .collect();
        let g = generate::random_dag(&names, 0.0, 1.0, seed).unwrap();
        prop_assert_eq!(&Topology::from_json(&g.to_json()).unwrap(), &g);
        prop_assert_eq!(&Topology::from_dot(&g.to_dot()).unwrap(), &g);
        prop_assert_eq!(&Topology::from_adjacency(names, &g.adjacency()).unwrap(), &g);
    }

    #[test]
    fn every_edge_goes_forward_in_the_order(n in 1usize..10, seed in any::<u64>()) {
        let g = generate::random_dag(&roles(n), 0.0, 1.0, seed).unwrap();
        let order = g.topological_order();
        let pos = |i: usize| order.iter().position(|&x| x == i).unwrap();
        for (s, d) in g.edges() {
            prop_assert!(pos(s) < pos(d));
        }
    }
}

#[test]
fn half_the_generated_edges_point_backwards_in_role_order() {
    // Method §4.2/§10: the permutation makes ~50 % of edges go from a later role to an
    // earlier one — edges the official config-order execution silently drops.
    let r = roles(8);
    let (mut back, mut all) = (0usize, 0usize);
    for seed in 0..500 {
        let g = generate::random_dag(&r, 0.3, 0.7, seed).unwrap();
        back += g.edges().filter(|(s, d)| s > d).count();
        all += g.edge_count();
    }
    let share = back as f64 / all as f64;
    assert!((0.45..0.55).contains(&share), "{share}");
}
