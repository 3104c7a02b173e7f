//! A trained system as an OpenAI chat model: the conversation becomes one question, the
//! system answers it, and the reply carries the sum of every call's usage, the exact cost and
//! a trace id (`GET /v1/traces/{id}`).

use std::sync::Arc;

use axum::extract::{Path as AxPath, State as AxState};
use axum::http::StatusCode;
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use hieramas::System;
use hieramas::system::{NodeEvent, Reply};
use hieramas_llm::{Message, Role, Usd};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::Shared;
use crate::api::{ApiError, ChatBody, unix_now};

/// A system served as the model `id` (`hieramas/<name>` for a bundle).
pub struct ServedSystem {
    pub id: String,
    pub system: Arc<System>,
}

/// The extension field of every system reply: what the whole system spent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Extension {
    /// Exact cost in USD of every call (cache hits at their recorded cost).
    pub cost_usd: String,
    /// The same in pico-dollars (10^-12 USD), exact.
    pub cost_pico: u64,
    /// What was paid: `cost` less what cache hits saved.
    pub paid_usd: String,
    /// `GET /v1/traces/{trace_id}` returns the trace.
    pub trace_id: String,
    /// Model calls the system made.
    pub calls: usize,
    /// Of them, answered from the response cache.
    pub cached_calls: usize,
    /// What those hits saved, USD.
    pub saved_usd: String,
}

/// What `GET /v1/traces/{id}` returns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredTrace {
    pub id: String,
    pub model: String,
    pub created: u64,
    pub question: String,
    pub reply: Reply,
}

/// The question a conversation asks: the last user message, with the system messages and the
/// earlier turns before it as context.
pub fn question(messages: &[Message]) -> Result<String, ApiError> {
    let Some(last) = messages.iter().rposition(|m| m.role == Role::User) else {
        return Err(ApiError::bad("the conversation has no user message").param("messages"));
    };
    if last + 1 != messages.len() {
        return Err(ApiError::bad(
            "a system answers the last user message: end the conversation with one",
        )
        .param("messages"));
    }
    let instructions: Vec<&str> = messages
        .iter()
        .filter(|m| m.role == Role::System)
        .map(|m| m.content.as_str())
        .collect();
    let turns: Vec<String> = messages[..last]
        .iter()
        .filter(|m| m.role != Role::System)
        .map(|m| {
            let who = if m.role == Role::User {
                "User"
            } else {
                "Assistant"
            };
            format!("{who}: {}", m.content)
        })
        .collect();
    let ask = &messages[last].content;
    if instructions.is_empty() && turns.is_empty() {
        return Ok(ask.clone());
    }
    let mut q = String::new();
    if !instructions.is_empty() {
        q.push_str(&instructions.join("\n\n"));
        q.push_str("\n\n");
    }
    if !turns.is_empty() {
        q.push_str("Conversation so far:\n");
        q.push_str(&turns.join("\n"));
        q.push_str("\n\n");
    }
    q.push_str(ask);
    Ok(q)
}

fn usage(reply: &Reply) -> Value {
    let prompt: u64 = reply
        .trace
        .calls
        .iter()
        .map(|c| c.usage.prompt_tokens)
        .sum();
    let completion: u64 = reply
        .trace
        .calls
        .iter()
        .map(|c| c.usage.completion_tokens)
        .sum();
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

fn extension(reply: &Reply, trace_id: &str) -> Extension {
    let t = &reply.trace;
    Extension {
        cost_usd: Usd::from_pico(t.total_cost_pico).to_string(),
        cost_pico: t.total_cost_pico,
        paid_usd: Usd::from_pico(t.total_cost_pico.saturating_sub(t.saved_pico)).to_string(),
        trace_id: trace_id.to_string(),
        calls: t.calls.len(),
        cached_calls: t.cached_calls,
        saved_usd: Usd::from_pico(t.saved_pico).to_string(),
    }
}

/// Keeps the reply's trace (serialised only when asked for); the stored trace.
fn keep(
    state: &crate::State,
    model: &str,
    created: u64,
    question: String,
    reply: Reply,
) -> Arc<StoredTrace> {
    let stored = Arc::new(StoredTrace {
        id: state.trace_id(),
        model: model.to_string(),
        created,
        question,
        reply,
    });
    state.store_trace(stored.clone());
    stored
}

/// `POST /v1/chat/completions` for a system.
pub async fn chat(state: Shared, system: Arc<System>, b: ChatBody) -> Result<Response, ApiError> {
    let model = b.model.clone();
    let stream = b.stream;
    let include_usage = b.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let req = crate::api::to_request(b)?;
    let q = question(&req.messages)?;
    let id = format!(
        "chatcmpl-{}",
        state
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let created = unix_now();
    if !stream {
        let reply = system
            .answer_with(&q, None)
            .await
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.report()))?;
        let kept = keep(&state, &model, created, q, reply);
        let (reply, trace_id) = (&kept.reply, &kept.id);
        return Ok(axum::Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": created,
            "model": model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": reply.answer},
                "finish_reason": "stop",
            }],
            "usage": usage(reply),
            "hieramas": extension(reply, trace_id),
        }))
        .into_response());
    }
    let (etx, erx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: Value, finish: Option<&str>| {
            json!({
                "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
        }
    };
    let _ = etx.send(
        Event::default().data(chunk(json!({"role": "assistant", "content": ""}), None).to_string()),
    );
    tokio::spawn(async move {
        let progress = etx.clone();
        let observer: hieramas::system::Observer = Arc::new(move |e: NodeEvent<'_>| {
            let models: Vec<&str> = e.calls.iter().map(|c| c.model.as_str()).collect();
            let tokens: u64 = e.calls.iter().map(|c| c.usage.total()).sum();
            let line = if e.skipped {
                format!("hieramas node {:?} skipped", e.node)
            } else {
                format!(
                    "hieramas node {:?} done: {} · {tokens} tokens",
                    e.node,
                    models.join(", ")
                )
            };
            let _ = progress.send(Event::default().comment(line));
        });
        let run = system.answer_with(&q, Some(observer));
        let result = tokio::select! {
            r = run => r,
            () = etx.closed() => return, // the client went away: dropping `run` ends its calls
        };
        let reply = match result {
            Ok(r) => r,
            Err(e) => {
                let err = ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.report());
                let _ = etx.send(Event::default().data(err.body().to_string()));
                return;
            }
        };
        let kept = keep(&state, &model, created, q, reply);
        let (reply, trace_id) = (&kept.reply, &kept.id);
        for piece in reply.answer.split_inclusive(' ') {
            let _ =
                etx.send(Event::default().data(chunk(json!({"content": piece}), None).to_string()));
        }
        let ext = serde_json::to_value(extension(reply, trace_id)).unwrap_or(Value::Null);
        let mut last = chunk(json!({}), Some("stop"));
        last["hieramas"] = ext.clone();
        let _ = etx.send(Event::default().data(last.to_string()));
        if include_usage {
            let mut u = chunk(json!({}), None);
            u["choices"] = json!([]);
            u["usage"] = usage(reply);
            u["hieramas"] = ext;
            let _ = etx.send(Event::default().data(u.to_string()));
        }
        let _ = etx.send(Event::default().data("[DONE]"));
    });
    let events = futures_util::stream::unfold(erx, |mut rx| async move {
        rx.recv()
            .await
            .map(|e| (Ok::<_, std::convert::Infallible>(e), rx))
    });
    Ok(Sse::new(events).into_response())
}

/// `GET /v1/traces/{id}`.
pub async fn trace(
    AxState(state): AxState<Shared>,
    AxPath(id): AxPath<String>,
) -> Result<Response, ApiError> {
    match state.trace(&id) {
        Some(t) => Ok(axum::Json(t.as_ref()).into_response()),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "no trace {id:?} here (this server keeps the last {})",
                state.limits.traces_kept
            ),
        )
        .code("trace_not_found")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_conversation_becomes_one_question() {
        assert_eq!(question(&[Message::user("7*8?")]).unwrap(), "7*8?");
        let q = question(&[
            Message::system("Answer briefly."),
            Message::user("What is 7*8?"),
            Message::assistant("56"),
            Message::user("And 7*9?"),
        ])
        .unwrap();
        assert_eq!(
            q,
            "Answer briefly.\n\nConversation so far:\nUser: What is 7*8?\nAssistant: 56\n\nAnd 7*9?"
        );
        let e = question(&[Message::system("s")]).unwrap_err();
        assert_eq!(e.param, Some("messages"));
        let e = question(&[Message::user("q"), Message::assistant("a")]).unwrap_err();
        assert!(e.message.contains("last user message"), "{}", e.message);
    }
}
