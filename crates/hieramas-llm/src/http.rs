//! What the HTTP clients share: endpoint settings, the per-model concurrency limit, the request
//! timeout, and turning transport and status failures into [`LlmError`]s.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::budget::{Budget, Charge, DEFAULT_MAX_TOKENS, worst_case_cost};
use crate::cost::Price;
use crate::error::LlmError;
use crate::retry::{RetryPolicy, parse_retry_after};
use crate::types::{ChatRequest, Usage};

/// An API key. Its `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> ApiKey {
        ApiKey(key.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Where and how to reach one model over HTTP.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Pool id (what calls are recorded under).
    pub id: String,
    /// The provider's model name, sent as `model`.
    pub model: String,
    /// Base URL including the version segment, e.g. `https://openrouter.ai/api/v1`.
    pub base_url: String,
    pub api_key: Option<ApiKey>,
    /// Extra headers sent with every request (e.g. OpenRouter attribution).
    pub headers: Vec<(String, String)>,
    pub price: Price,
    /// Calls to this model in flight at once, at most.
    pub max_concurrency: usize,
    /// Limit for one attempt, from sending the request to the last byte of the answer.
    pub timeout: Duration,
    pub retry: RetryPolicy,
    /// Provider parameters sent verbatim with every request ([`crate::ModelSpec::params`]).
    pub params: std::collections::BTreeMap<String, serde_json::Value>,
    /// Every attempt (retries included) is reserved on and charged to this budget
    /// ([`crate::budget`]); a request without `max_tokens` is then sent with the default the
    /// reservation assumed.
    pub budget: Option<Arc<Budget>>,
}

impl Endpoint {
    /// An endpoint with defaults: no key, 16 concurrent calls, 120 s timeout (the official
    /// setting), the default retry policy, and the given price.
    pub fn new(
        id: impl Into<String>,
        model: impl Into<String>,
        base_url: impl Into<String>,
        price: Price,
    ) -> Endpoint {
        Endpoint {
            id: id.into(),
            model: model.into(),
            base_url: base_url.into().trim_end_matches('/').to_string(),
            api_key: None,
            headers: Vec::new(),
            price,
            max_concurrency: 16,
            timeout: Duration::from_secs(120),
            retry: RetryPolicy::default(),
            params: Default::default(),
            budget: None,
        }
    }

    /// Adds the endpoint's `params`, then the request's `extra` (which win), to a request
    /// `body`; the keys the client itself sets (`model`, `messages`, `stream`) stay its own.
    pub fn add_params(
        &self,
        body: &mut serde_json::Value,
        extra: &std::collections::BTreeMap<String, serde_json::Value>,
    ) {
        let Some(b) = body.as_object_mut() else {
            return;
        };
        for (k, v) in self.params.iter().chain(extra) {
            if !matches!(
                k.as_str(),
                "model" | "messages" | "stream" | "stream_options"
            ) {
                b.insert(k.clone(), v.clone());
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url, path.trim_start_matches('/'))
    }
}

/// A reqwest client suited to LLM APIs: connect timeout 30 s (official), large idle pool.
/// Share one between clients so they share connections.
pub fn http_client() -> Result<reqwest::Client, LlmError> {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(512)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| LlmError::Backend {
            model: "-".into(),
            detail: format!("cannot build HTTP client: {e}"),
        })
}

/// The part of a client that sends one request.
pub(crate) struct HttpCore {
    pub endpoint: Endpoint,
    pub http: reqwest::Client,
    limit: Arc<Semaphore>,
    /// Send the key as `Authorization: Bearer` (OpenAI style); off for APIs with their own header.
    bearer: bool,
}

impl HttpCore {
    pub fn new(endpoint: Endpoint, http: reqwest::Client) -> HttpCore {
        let limit = Arc::new(Semaphore::new(endpoint.max_concurrency.max(1)));
        HttpCore {
            endpoint,
            http,
            limit,
            bearer: true,
        }
    }

    /// For APIs that take the key in a header of their own (Anthropic's `x-api-key`).
    pub fn without_bearer(mut self) -> HttpCore {
        self.bearer = false;
        self
    }

    /// `req` as this endpoint sends it: with a budget, `max_tokens` is always set (to the
    /// default the reservation assumes when the request has none).
    pub fn capped<'r>(&self, req: &'r ChatRequest) -> std::borrow::Cow<'r, ChatRequest> {
        match self.endpoint.budget {
            Some(_) => crate::budget::capped(req, DEFAULT_MAX_TOKENS),
            None => std::borrow::Cow::Borrowed(req),
        }
    }

    /// Runs one attempt (number `attempt`, 1-based) at `req`, charged to the endpoint's budget
    /// when it has one: the worst case is reserved before the request goes out, then settled
    /// as the price of the reported `usage`, or by how the attempt failed
    /// ([`LlmError::may_be_billed`]); an attempt abandoned mid-flight is charged in full.
    pub async fn charged<T>(
        &self,
        attempt: u32,
        req: &ChatRequest,
        run: impl std::future::Future<Output = Result<T, LlmError>>,
        usage: impl FnOnce(&T) -> Usage,
    ) -> Result<T, LlmError> {
        let Some(budget) = &self.endpoint.budget else {
            return run.await;
        };
        let ep = &self.endpoint;
        let worst = worst_case_cost(ep.price, req, DEFAULT_MAX_TOKENS);
        let reservation = budget.reserve_attempt(&ep.id, attempt, worst, Charge::Estimated)?;
        match run.await {
            Ok(v) => {
                reservation.settle(ep.price.cost(usage(&v)));
                Ok(v)
            }
            Err(e) => {
                reservation.settle_failed(&e);
                Err(e)
            }
        }
    }

    pub async fn permit(&self) -> OwnedSemaphorePermit {
        // The semaphore is never closed, so acquiring cannot fail.
        match self.limit.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => unreachable!("per-model semaphore is never closed"),
        }
    }

    /// Sends a POST with a JSON body; returns the response if its status is a success.
    pub async fn post(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Result<reqwest::Response, LlmError> {
        let url = self.endpoint.url(path);
        let mut rb = self
            .http
            .post(&url)
            .timeout(self.endpoint.timeout)
            .json(body);
        if let (true, Some(key)) = (self.bearer, &self.endpoint.api_key) {
            rb = rb.bearer_auth(key.expose());
        }
        for (k, v) in &self.endpoint.headers {
            rb = rb.header(k.as_str(), v.as_str());
        }
        for (k, v) in headers {
            rb = rb.header(*k, *v);
        }
        let resp = rb.send().await.map_err(|e| self.transport_error(&url, e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let retry_after = retry_after(resp.headers());
        let text = resp.text().await.unwrap_or_default();
        Err(LlmError::Http {
            model: self.endpoint.id.clone(),
            status: status.as_u16(),
            url,
            message: provider_message(&text),
            retry_after,
        })
    }

    /// POSTs and parses the successful answer as JSON. An error object inside a 200 body
    /// (OpenRouter does this) becomes an [`LlmError::Http`] with the code it names.
    pub async fn post_json(
        &self,
        path: &str,
        body: &Value,
        headers: &[(&str, &str)],
    ) -> Result<Value, LlmError> {
        let url = self.endpoint.url(path);
        let resp = self.post(path, body, headers).await?;
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| self.transport_error(&url, e))?;
        let v: Value = serde_json::from_slice(&bytes)
            .map_err(|e| self.malformed(&url, e.to_string(), &bytes))?;
        if let Some(err) = in_body_error(&v) {
            return Err(LlmError::Http {
                model: self.endpoint.id.clone(),
                status: err.0,
                url,
                message: err.1,
                retry_after: None,
            });
        }
        Ok(v)
    }

    pub fn transport_error(&self, url: &str, e: reqwest::Error) -> LlmError {
        let model = self.endpoint.id.clone();
        if e.is_timeout() {
            LlmError::Timeout {
                model,
                url: url.to_string(),
                after: self.endpoint.timeout,
            }
        } else {
            LlmError::Connection {
                model,
                url: url.to_string(),
                detail: error_chain(&e),
            }
        }
    }

    pub fn malformed(&self, url: &str, detail: String, body: &[u8]) -> LlmError {
        LlmError::Malformed {
            model: self.endpoint.id.clone(),
            url: url.to_string(),
            detail,
            excerpt: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
        }
    }
}

/// `{"error": {"code": 429, "message": "..."}}` in a success body → (status, message).
pub(crate) fn in_body_error(v: &Value) -> Option<(u16, String)> {
    let err = v.get("error")?;
    if err.is_null() {
        return None;
    }
    let code = err
        .get("code")
        .and_then(|c| {
            c.as_u64()
                .or_else(|| c.as_str().and_then(|s| s.parse().ok()))
        })
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(502);
    let message = err
        .get("message")
        .and_then(Value::as_str)
        .map(String::from)
        .unwrap_or_else(|| err.to_string());
    Some((code, message))
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after)
}

/// The provider's own error message: `error.message` (OpenAI, OpenRouter, Anthropic),
/// `message`, a string `error`, or the start of the body.
pub(crate) fn provider_message(body: &str) -> String {
    if let Ok(v) = serde_json::from_str::<Value>(body) {
        let candidates = [
            &v["error"]["message"],
            &v["message"],
            &v["error"],
            &v["detail"],
        ];
        if let Some(s) = candidates.iter().find_map(|c| c.as_str()) {
            return s.to_string();
        }
    }
    let t = body.trim();
    if t.is_empty() {
        "(empty body)".to_string()
    } else {
        t.chars().take(300).collect()
    }
}

/// An error and its sources, joined: reqwest's top-level message alone hides the cause.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let msg = src.to_string();
        if !s.contains(&msg) {
            s.push_str(": ");
            s.push_str(&msg);
        }
        cur = src.source();
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn extracts_provider_messages() {
        assert_eq!(
            provider_message(r#"{"error":{"message":"bad key","type":"x"}}"#),
            "bad key"
        );
        assert_eq!(
            provider_message(r#"{"type":"error","error":{"type":"x","message":"overloaded"}}"#),
            "overloaded"
        );
        assert_eq!(provider_message(r#"{"error":"nope"}"#), "nope");
        assert_eq!(provider_message("  "), "(empty body)");
        assert_eq!(provider_message("<html>502</html>"), "<html>502</html>");
    }

    #[test]
    fn in_body_errors() {
        assert_eq!(
            in_body_error(&json!({"error": {"code": 429, "message": "slow"}})),
            Some((429, "slow".into()))
        );
        assert_eq!(
            in_body_error(&json!({"error": {"code": "503", "message": "m"}})),
            Some((503, "m".into()))
        );
        assert_eq!(
            in_body_error(&json!({"error": {"message": "m"}})),
            Some((502, "m".into()))
        );
        assert_eq!(in_body_error(&json!({"error": null, "choices": []})), None);
        assert_eq!(in_body_error(&json!({"choices": []})), None);
    }

    #[test]
    fn api_key_is_redacted() {
        let e = Endpoint {
            api_key: Some(ApiKey::new("sk-secret")),
            ..Endpoint::new("m", "m", "http://x/v1/", Price::FREE)
        };
        let shown = format!("{e:?}");
        assert!(!shown.contains("sk-secret"), "{shown}");
        assert_eq!(e.url("/chat/completions"), "http://x/v1/chat/completions");
    }
}
