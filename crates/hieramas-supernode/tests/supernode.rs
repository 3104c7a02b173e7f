//! Supernodes against a real OpenAI-compatible server on 127.0.0.1 (hieramas-testkit answers
//! `echo: <last user message>`): calls, proposal order, skips, W = 1, concurrency, costs.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use hieramas_llm::{ChatModel, Endpoint, OpenAiClient, Price, RetryPolicy, Usd, http_client};
use hieramas_supernode::{Members, RolePrompts, Sampling, Slot, Supernode, SupernodeError, fill};
use hieramas_testkit::{Fault, TestServer};

fn model(s: &TestServer, id: &str) -> Arc<dyn ChatModel> {
    let endpoint = Endpoint {
        timeout: Duration::from_secs(5),
        retry: RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        },
        ..Endpoint::new(id, id, s.base_url(), Price::per_million("1", "2").unwrap())
    };
    Arc::new(OpenAiClient::new(endpoint, http_client().unwrap()))
}

fn role() -> RolePrompts {
    RolePrompts {
        name: "Solver".into(),
        proposer_system: "solve".into(),
        proposer_user: "Q: {task}".into(),
        synth_system: "combine".into(),
        synth_user: "Task: {task}\n{count} {role}s said:\n{proposals}\nBest?".into(),
    }
}

#[tokio::test]
async fn proposers_then_one_synthesis_over_numbered_proposals() {
    let server = TestServer::start().await.unwrap();
    let members = Members {
        proposers: vec![Some(model(&server, "a")), Some(model(&server, "b"))],
        synthesizer: Some(model(&server, "c")),
    };
    let role = role();
    let node = Supernode {
        id: "solver",
        role: &role,
        members: &members,
        sampling: Sampling::default(),
    };
    let out = node.run("2+2", Instant::now()).await.unwrap();
    assert_eq!(out.calls.len(), 3);
    let positions: Vec<Slot> = out.calls.iter().map(|c| c.position).collect();
    assert_eq!(
        positions,
        [Slot::Proposer(0), Slot::Proposer(1), Slot::Synth]
    );
    assert_eq!(out.calls[0].model, "a");
    assert_eq!(out.calls[2].model, "c");
    assert_eq!(out.calls[0].text, "echo: Q: 2+2");
    // The synthesiser saw both proposals, numbered in position order.
    let synth_prompt = &server.requests()[2].body["messages"][1]["content"];
    assert_eq!(
        synth_prompt.as_str().unwrap(),
        "Task: 2+2\n2 Solvers said:\nSolution 1:\necho: Q: 2+2\n\nSolution 2:\necho: Q: 2+2\nBest?"
    );
    assert_eq!(
        out.text.as_deref(),
        Some(format!("echo: {}", synth_prompt.as_str().unwrap()).as_str())
    );
    // Every call priced from its own usage; the node total is their exact sum.
    for c in &out.calls {
        let want = c.usage.prompt_tokens * 1_000_000 + c.usage.completion_tokens * 2_000_000;
        assert_eq!(c.cost, Usd::from_pico(want));
        assert!(c.started_ms <= c.finished_ms);
    }
}

#[tokio::test]
async fn skips_and_single_agents() {
    let server = TestServer::start().await.unwrap();
    let role = role();
    let run = |members: Members| {
        let role = role.clone();
        async move {
            Supernode {
                id: "n",
                role: &role,
                members: &members,
                sampling: Sampling::default(),
            }
            .run("t", Instant::now())
            .await
        }
    };
    // A skipped synthesiser skips the node: no calls, no output.
    let out = run(Members {
        proposers: vec![Some(model(&server, "a"))],
        synthesizer: None,
    })
    .await
    .unwrap();
    assert_eq!((out.text, out.calls.len()), (None, 0));
    assert_eq!(server.request_count(), 0);
    // A skipped proposer is dropped; the synthesis sees one proposal.
    let out = run(Members {
        proposers: vec![None, Some(model(&server, "b"))],
        synthesizer: Some(model(&server, "c")),
    })
    .await
    .unwrap();
    assert_eq!(out.calls.len(), 2);
    assert_eq!(out.calls[0].position, Slot::Proposer(1));
    assert!(out.text.unwrap().contains("1 Solvers said:\nSolution 1:"));
    // W = 1: a single agent, no synthesis call.
    let out = run(Members::fixed(model(&server, "a"), 1)).await.unwrap();
    assert_eq!(out.calls.len(), 1);
    assert_eq!(out.text.as_deref(), Some("echo: Q: t"));
    // Every proposer skipped: an error naming the node.
    let err = run(Members {
        proposers: vec![None, None],
        synthesizer: Some(model(&server, "c")),
    })
    .await
    .unwrap_err();
    assert!(matches!(err, SupernodeError::NoProposers { .. }));
    assert!(err.to_string().contains("node n"));
}

#[tokio::test]
async fn proposers_run_concurrently_and_failures_name_the_position() {
    let server = TestServer::start().await.unwrap();
    server.push_faults([
        Fault::Delay(Duration::from_millis(300)),
        Fault::Delay(Duration::from_millis(300)),
    ]);
    let role = role();
    let members = Members::fixed(model(&server, "m"), 2);
    let node = Supernode {
        id: "n",
        role: &role,
        members: &members,
        sampling: Sampling::default(),
    };
    let out = node.run("t", Instant::now()).await.unwrap();
    let (p0, p1) = (&out.calls[0], &out.calls[1]);
    assert!(
        p0.started_ms < p1.finished_ms && p1.started_ms < p0.finished_ms,
        "{out:?}"
    );
    assert!(out.calls[2].started_ms >= p0.finished_ms.max(p1.finished_ms));
    assert_eq!(server.max_in_flight(), 2);

    server.push_fault(Fault::status(400));
    let err = node.run("t", Instant::now()).await.unwrap_err();
    assert!(err.llm().is_some());
    assert!(
        err.to_string()
            .contains("node n (Solver), position Proposer(0)"),
        "{err}"
    );
}

#[test]
fn fill_is_one_pass() {
    let t = fill(
        "{task}|{role}|{count}|{nope}|{proposals}",
        "a {role} b",
        "R",
        &["x {task}".into()],
    );
    assert_eq!(t, "a {role} b|R|1|{nope}|Solution 1:\nx {task}");
    let json = serde_json::to_string(&[Slot::Proposer(1), Slot::Synth, Slot::Decision]).unwrap();
    assert_eq!(json, r#"[1,"synth","decision"]"#);
    let back: Vec<Slot> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, [Slot::Proposer(1), Slot::Synth, Slot::Decision]);
}
