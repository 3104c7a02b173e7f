//! The scheduler against a real OpenAI-compatible server on 127.0.0.1 (hieramas-testkit:
//! `echo: <last user message>`, 100 ms per answer): topological order, parallel branches,
//! faithful config order, decision input, exact totals, the trace format.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::Duration;

use hieramas_llm::{ChatModel, Endpoint, OpenAiClient, Price, RetryPolicy, http_client};
use hieramas_supernode::{Members, Sampling};
use hieramas_testkit::{ServerOptions, TestServer};
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::schedule::{Extractor, Plan, Trace, run_query};
use hieramas_topology::{Topology, shapes};

/// A loopback server that answers after 100 ms.
async fn fresh() -> TestServer {
    TestServer::start_with(ServerOptions {
        latency: Duration::from_millis(100),
        ..ServerOptions::default()
    })
    .await
    .unwrap()
}

fn model(s: &TestServer, id: &str) -> Arc<dyn ChatModel> {
    let endpoint = Endpoint {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..Endpoint::new(
            id,
            id,
            s.base_url(),
            Price::per_million("0.5", "1.5").unwrap(),
        )
    };
    Arc::new(OpenAiClient::new(endpoint, http_client().unwrap()))
}

/// A role set with the given role names and plain templates.
fn roles(names: &[&str], width: usize) -> RoleSet {
    let mut t = format!(
        "benchmark = \"test\"\nwidth = {width}\n[decision_input]\nintro = \"INTRO\"\nclosing = \"CLOSING\"\n[decision]\nsystem = \"decide\"\nuser = \"D: {{task}}\"\n"
    );
    for n in names {
        t.push_str(&format!(
            "[[roles]]\nname = \"{n}\"\nproposer_system = \"p\"\nproposer_user = \"{n} asks: {{task}}\"\nsynth_system = \"s\"\nsynth_user = \"{{task}} {{proposals}}\"\n"
        ));
    }
    RoleSet::from_toml(&t).unwrap()
}

async fn run(
    server: &TestServer,
    t: &Topology,
    set: &RoleSet,
    width: usize,
    faithful: bool,
) -> Trace {
    run_with(server, t, set, width, faithful, None).await
}

async fn run_with(
    server: &TestServer,
    t: &Topology,
    set: &RoleSet,
    width: usize,
    faithful: bool,
    consensus: Option<Extractor>,
) -> Trace {
    let m = model(server, "m");
    let plan = Plan {
        topology: t,
        roles: set,
        members: (0..t.len())
            .map(|_| Members::fixed(m.clone(), width))
            .collect(),
        decision: model(server, "judge"),
        sampling: Sampling::default(),
        faithful,
        consensus,
        observer: None,
    };
    run_query(&plan, "TASK").await.unwrap()
}

/// The last (user) message of every request the server received that starts with `prefix`.
fn user_prompts(server: &TestServer, prefix: &str) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter_map(|r| {
            let last = r.body["messages"].as_array()?.last()?;
            last["content"].as_str().map(String::from)
        })
        .filter(|p| p.starts_with(prefix))
        .collect()
}

/// Every call of an edge's target starts after every call of its source finished.
fn respects_edges(trace: &Trace) {
    for [from, to] in &trace.edges {
        let last_from = trace
            .calls
            .iter()
            .filter(|c| &c.node == from)
            .map(|c| c.finished_ms)
            .max();
        let first_to = trace
            .calls
            .iter()
            .filter(|c| &c.node == to)
            .map(|c| c.started_ms)
            .min();
        if let (Some(f), Some(t)) = (last_from, first_to) {
            assert!(f <= t, "{from} -> {to}: {f} > {t}");
        }
    }
}

#[tokio::test]
async fn branches_run_in_parallel_and_edges_are_respected() {
    let server = fresh().await;
    let set = roles(&["a", "b", "c", "d"], 1);
    let t = Topology::from_names(set.names(), &[("a", "c"), ("b", "c"), ("c", "d")]).unwrap();
    let trace = run(&server, &t, &set, 1, false).await;
    respects_edges(&trace);
    let call = |n: &str| trace.calls.iter().find(|c| c.node == n).unwrap();
    // a and b have no predecessors: they overlap.
    assert!(
        call("a").started_ms < call("b").finished_ms
            && call("b").started_ms < call("a").finished_ms
    );
    // 4 levels of 100 ms (a|b, c, d, decision), not 5.
    let end = trace.calls.iter().map(|c| c.finished_ms).max().unwrap();
    assert!(end < 490, "took {end} ms");
    assert_eq!(trace.calls.len(), 5);
    // c saw both predecessors' outputs; the decision node saw every node.
    let prompt_of = |prefix: &str| user_prompts(&server, prefix).into_iter().next().unwrap();
    let c_prompt = prompt_of("c asks");
    assert!(
        c_prompt.contains("Agent a:\necho: a asks: TASK")
            && c_prompt.contains("Agent b:\necho: b asks: TASK"),
        "{c_prompt}"
    );
    let d_prompt = prompt_of("D: ");
    assert!(
        d_prompt.starts_with("D: TASK\n\nINTRO\n\na:\n") && d_prompt.ends_with("CLOSING"),
        "{d_prompt}"
    );
    assert_eq!(trace.answer, format!("echo: {d_prompt}"));
    // Totals are the exact sums of the calls.
    assert_eq!(
        trace.total_cost_pico,
        trace.calls.iter().map(|c| c.cost_pico).sum::<u64>()
    );
    assert_eq!(
        trace.total_tokens,
        trace
            .calls
            .iter()
            .map(|c| c.usage.prompt_tokens + c.usage.completion_tokens)
            .sum::<u64>()
    );
    assert!(trace.total_cost_pico > 0);
}

#[tokio::test]
async fn faithful_mode_drops_backward_edges() {
    let set = roles(&["x", "y"], 2);
    // y -> x points backwards in role order.
    let t = Topology::from_names(set.names(), &[("y", "x")]).unwrap();

    let server = fresh().await;
    let trace = run(&server, &t, &set, 2, false).await;
    respects_edges(&trace);
    let x_prompts = user_prompts(&server, "x asks");
    assert!(
        x_prompts.iter().all(|p| p.contains("Agent y:")),
        "{x_prompts:?}"
    );
    assert_eq!(trace.calls.len(), 2 * 3 + 1);

    let server2 = fresh().await;
    let trace = run(&server2, &t, &set, 2, true).await;
    assert!(trace.faithful);
    let x_prompts = user_prompts(&server2, "x asks");
    assert_eq!(x_prompts.len(), 2);
    assert!(
        x_prompts.iter().all(|p| !p.contains("Agent y:")),
        "{x_prompts:?}"
    );
    // Config order: every call of x finished before y's started.
    let x_end = trace
        .calls
        .iter()
        .filter(|c| c.node == "x")
        .map(|c| c.finished_ms)
        .max()
        .unwrap();
    let y_start = trace
        .calls
        .iter()
        .filter(|c| c.node == "y")
        .map(|c| c.started_ms)
        .min()
        .unwrap();
    assert!(x_end <= y_start);
}

#[tokio::test]
async fn consensus_overrides_the_decision_only_when_every_prediction_agrees() {
    let server = fresh().await;
    let set = roles(&["a", "b", "c"], 2);
    let t = shapes::chain(set.names()).unwrap();
    let synth_text = |trace: &Trace, node: &str| {
        trace
            .calls
            .iter()
            .find(|c| c.node == node && c.position == hieramas_supernode::Slot::Synth)
            .unwrap()
            .text
            .clone()
    };

    // Every node "predicts" the same thing (node c predicts nothing and is left out): the first
    // agreeing node's output is the answer; the decision node was still called and paid for.
    let same: Extractor = |t| (!t.contains("c asks")).then(|| "42".to_string());
    let trace = run_with(&server, &t, &set, 2, false, Some(same)).await;
    assert_eq!(trace.consensus.as_deref(), Some("42"));
    assert_eq!(trace.answer, synth_text(&trace, "a"));
    assert!(trace.decision_answer.starts_with("echo: D: "));
    assert_ne!(trace.answer, trace.decision_answer);
    assert_eq!(trace.calls.len(), 3 * 3 + 1);
    assert_eq!(
        trace.total_cost_pico,
        trace.calls.iter().map(|c| c.cost_pico).sum::<u64>()
    );

    // The outputs differ: the decision node's answer stands.
    let whole: Extractor = |t| Some(t.to_string());
    let trace = run_with(&server, &t, &set, 2, false, Some(whole)).await;
    assert_eq!(trace.consensus, None);
    assert_eq!(trace.answer, trace.decision_answer);

    // Node c predicts something else: no consensus — unless c is a role that gives no answer.
    let split: Extractor = |t| Some(if t.contains("c asks") { "7" } else { "42" }.to_string());
    let trace = run_with(&server, &t, &set, 2, false, Some(split)).await;
    assert_eq!(trace.consensus, None);
    let mut silent_c = set.clone();
    silent_c.roles[2].answer = false;
    let trace = run_with(&server, &t, &silent_c, 2, false, Some(split)).await;
    assert_eq!(trace.consensus.as_deref(), Some("42"));

    // Nobody predicts anything: no override either.
    let nothing: Extractor = |_| None;
    let trace = run_with(&server, &t, &set, 2, false, Some(nothing)).await;
    assert_eq!(trace.consensus, None);
    assert_eq!(trace.answer, trace.decision_answer);
}

/// A DAG whose topological order is not the role order (c and b before a): every role's output
/// reaches the decision node under its own name, and only answer roles vote.
#[tokio::test]
async fn outputs_stay_with_their_roles_when_the_order_is_not_the_role_order() {
    let server = fresh().await;
    let set = roles(&["a", "b", "c"], 1);
    let t = Topology::from_names(set.names(), &[("c", "a"), ("b", "a")]).unwrap();
    assert_eq!(t.topological_order(), vec![1, 2, 0]);
    let trace = run(&server, &t, &set, 1, false).await;
    let decision = &user_prompts(&server, "D: ")[0];
    for r in ["a", "b", "c"] {
        // "\n\n<r>:\necho: <r> asks: …" — the name followed by its own output.
        assert!(
            decision.contains(&format!("\n\n{r}:\necho: {r} asks")),
            "{r}'s output is not under its name:\n{decision}"
        );
    }
    let ids: Vec<&str> = trace.nodes.iter().map(|n| n.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"]);
    // Only a (the sink) gives an answer: b and c predict something else but do not vote.
    let mut only_a = set.clone();
    only_a.roles[1].answer = false;
    only_a.roles[2].answer = false;
    let split: Extractor = |t| {
        Some(
            if t.contains("echo: a asks") {
                "42"
            } else {
                "7"
            }
            .to_string(),
        )
    };
    let plan_trace = run_with(&server, &t, &only_a, 1, false, Some(split)).await;
    assert_eq!(plan_trace.consensus.as_deref(), Some("42"));
}

#[tokio::test]
async fn the_trace_has_the_documented_shape() {
    let server = fresh().await;
    let set = roles(&["a", "b", "c"], 2);
    let t = shapes::chain(set.names()).unwrap();
    let trace = run(&server, &t, &set, 2, false).await;
    respects_edges(&trace);
    let v: serde_json::Value = serde_json::from_str(&trace.to_json()).unwrap();
    for key in [
        "answer",
        "nodes",
        "edges",
        "calls",
        "total_cost_usd",
        "total_tokens",
    ] {
        assert!(v.get(key).is_some(), "no {key}");
    }
    assert_eq!(
        v["nodes"][0],
        serde_json::json!({"id": "a", "role": "a", "skipped": false})
    );
    assert!(
        v["edges"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["a", "b"]))
    );
    assert!(
        v["edges"]
            .as_array()
            .unwrap()
            .contains(&serde_json::json!(["c", "decision"]))
    );
    let c = &v["calls"][0];
    for key in [
        "node",
        "position",
        "model",
        "started_ms",
        "finished_ms",
        "usage",
        "cost_usd",
    ] {
        assert!(c.get(key).is_some(), "call has no {key}");
    }
    let positions: Vec<&serde_json::Value> = v["calls"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["position"])
        .collect();
    assert!(
        positions.contains(&&serde_json::json!(0))
            && positions.contains(&&serde_json::json!("synth"))
            && positions.contains(&&serde_json::json!("decision"))
    );
    assert_eq!(v["calls"].as_array().unwrap().len(), 3 * 3 + 1);
}

#[test]
fn builtin_role_sets_load() {
    for (b, roles, width) in [("math", 3, 2), ("mmlu", 8, 2), ("humaneval-plus", 5, 2)] {
        let set = RoleSet::builtin(b).unwrap();
        assert_eq!((set.roles.len(), set.width), (roles, width), "{b}");
    }
    assert!(RoleSet::builtin("gsm8k").is_err());
    let he = RoleSet::builtin("humaneval-plus").unwrap();
    let non_answer: Vec<&str> = he
        .roles
        .iter()
        .filter(|r| !r.answer)
        .map(|r| r.name.as_str())
        .collect();
    assert_eq!(
        non_answer,
        ["Project Manager", "Algorithm Designer", "Test Analyst"]
    );
}
