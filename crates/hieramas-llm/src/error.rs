//! One error type for every call; each variant names the model (pool id) and the cause.

use std::time::Duration;

use crate::cost::Usd;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum LlmError {
    /// The provider answered with an error status (or an error object in a 200 body).
    #[error("{model}: HTTP {status} from {url}: {message}")]
    Http {
        model: String,
        status: u16,
        url: String,
        /// The provider's own message (its error JSON's `message`), or the start of the body.
        message: String,
        /// What the provider's `Retry-After` asked for, if anything.
        retry_after: Option<Duration>,
    },
    /// No complete answer within the request timeout.
    #[error("{model}: no answer from {url} within {after:?} (request timeout)")]
    Timeout {
        model: String,
        url: String,
        after: Duration,
    },
    /// Could not connect, or the connection broke before a complete answer.
    #[error("{model}: connection to {url} failed: {detail}")]
    Connection {
        model: String,
        url: String,
        detail: String,
    },
    /// A success status with a body that is not the expected JSON.
    #[error("{model}: malformed response from {url}: {detail} (body starts: {excerpt:?})")]
    Malformed {
        model: String,
        url: String,
        detail: String,
        excerpt: String,
    },
    /// The answer lacks token usage, so its cost cannot be known. Never priced as $0.
    #[error("{model}: response from {url} has no token usage, so its cost cannot be computed")]
    MissingUsage { model: String, url: String },
    /// A streamed answer ended before it was complete.
    #[error("{model}: stream from {url} ended early: {detail}")]
    TruncatedStream {
        model: String,
        url: String,
        detail: String,
        /// Text already delivered to a streaming callback: a retry would repeat it, so such a
        /// failure is not retried.
        delivered: bool,
    },
    /// Retryable failures continued until the attempt or time limit.
    #[error("{model}: gave up after {attempts} attempts in {elapsed:?}; last error: {last}")]
    RetriesExhausted {
        model: String,
        attempts: u32,
        elapsed: Duration,
        last: Box<LlmError>,
    },
    /// The budget guard refused the call before it was made.
    #[error(
        "{model}: budget of {cap} would be exceeded: spent {spent}, {reserved} reserved by calls in flight, this call may cost up to {needed}"
    )]
    BudgetExceeded {
        model: String,
        cap: Usd,
        spent: Usd,
        reserved: Usd,
        needed: Usd,
    },
    /// Replay-only cache mode and no recorded answer for this request.
    #[error("{model}: replay-only cache has no recorded answer for this request (key {key})")]
    CacheMiss { model: String, key: String },
    /// The response cache could not be read or written.
    #[error("response cache {path}: {detail}")]
    Cache { path: String, detail: String },
    /// The budget's ledger file could not be read, written or locked.
    #[error("budget ledger {path}: {detail}")]
    Ledger { path: String, detail: String },
    /// A required API key is not in the environment.
    #[error("{model}: no API key: environment variable {var} is not set")]
    MissingApiKey { model: String, var: String },
    /// A request this backend cannot send as given.
    #[error("{model}: invalid request: {detail}")]
    InvalidRequest { model: String, detail: String },
    /// A pool file that cannot be used.
    #[error("model pool {source_name}: {detail}")]
    Pool { source_name: String, detail: String },
    /// A model whose backend this crate does not build (e.g. `provider = "local"`).
    #[error("{model}: provider {provider:?} is not built by hieramas-llm: {hint}")]
    UnsupportedProvider {
        model: String,
        provider: String,
        hint: String,
    },
    /// A backend-specific failure (local inference, …).
    #[error("{model}: {detail}")]
    Backend { model: String, detail: String },
}

impl LlmError {
    /// Whether trying the same call again may succeed: rate limits, server errors, timeouts,
    /// broken connections, garbled bodies and cut streams. Client errors (400/401/403/404/422),
    /// missing usage, budget refusals and cache misses are final.
    pub fn is_retryable(&self) -> bool {
        match self {
            LlmError::Http { status, .. } => matches!(status, 408 | 409 | 425 | 429 | 500..=599),
            LlmError::Timeout { .. } | LlmError::Connection { .. } | LlmError::Malformed { .. } => {
                true
            }
            LlmError::TruncatedStream { delivered, .. } => !delivered,
            _ => false,
        }
    }

    /// Whether a provider may have billed the failed attempt although we got no usage: the
    /// request may have been processed — a timeout, a connection broken after sending, a
    /// garbled, truncated or usage-less answer. An error status (the provider refused or failed
    /// the request and says so) and failures before sending are not billed.
    pub fn may_be_billed(&self) -> bool {
        match self {
            LlmError::Timeout { .. }
            | LlmError::Connection { .. }
            | LlmError::Malformed { .. }
            | LlmError::MissingUsage { .. }
            | LlmError::TruncatedStream { .. } => true,
            LlmError::RetriesExhausted { last, .. } => last.may_be_billed(),
            _ => false,
        }
    }

    /// The pool id of the model the failed call was for, where there is one.
    pub fn model(&self) -> Option<&str> {
        match self {
            LlmError::Http { model, .. }
            | LlmError::Timeout { model, .. }
            | LlmError::Connection { model, .. }
            | LlmError::Malformed { model, .. }
            | LlmError::MissingUsage { model, .. }
            | LlmError::TruncatedStream { model, .. }
            | LlmError::RetriesExhausted { model, .. }
            | LlmError::BudgetExceeded { model, .. }
            | LlmError::CacheMiss { model, .. }
            | LlmError::MissingApiKey { model, .. }
            | LlmError::InvalidRequest { model, .. }
            | LlmError::UnsupportedProvider { model, .. }
            | LlmError::Backend { model, .. } => Some(model),
            LlmError::Cache { .. } | LlmError::Pool { .. } | LlmError::Ledger { .. } => None,
        }
    }

    /// The error behind a `RetriesExhausted`, or this one.
    pub fn root(&self) -> &LlmError {
        match self {
            LlmError::RetriesExhausted { last, .. } => last.root(),
            e => e,
        }
    }

    /// How long the provider asked us to wait before retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            LlmError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}
