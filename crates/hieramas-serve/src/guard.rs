//! The checks in front of every route: the `Host` header (loopback servers), the bearer
//! token, and the cap on requests in flight (a streamed answer holds its place until its
//! last byte).

use axum::body::Body;
use axum::extract::{Request, State as AxState};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;

use crate::{ApiError, Shared};

/// The `Host` values a loopback server on `port` accepts.
pub fn loopback_hosts(port: u16) -> Vec<String> {
    ["localhost", "127.0.0.1", "[::1]"]
        .iter()
        .flat_map(|h| [h.to_string(), format!("{h}:{port}")])
        .collect()
}

/// Constant-time equality of two byte strings (the token check must not leak its prefix).
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub async fn guard(AxState(state): AxState<Shared>, req: Request, next: Next) -> Response {
    if let Some(allowed) = &state.allowed_hosts {
        let host = req
            .headers()
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_ascii_lowercase);
        if !host
            .as_deref()
            .is_some_and(|h| allowed.iter().any(|a| a == h))
        {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "Host {:?} is not this loopback server's (one of {}): refused, as a DNS-rebinding guard",
                    host.unwrap_or_default(),
                    allowed.join(", ")
                ),
            )
            .code("host_not_allowed")
            .into_response();
        }
    }
    if let Some(key) = &state.limits.api_key {
        let given = req
            .headers()
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), key.as_bytes())) {
            return ApiError::new(
                StatusCode::UNAUTHORIZED,
                "missing or wrong API key: send Authorization: Bearer <key>",
            )
            .code("invalid_api_key")
            .into_response();
        }
    }
    let Ok(permit) = state.in_flight.clone().try_acquire_owned() else {
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "{} requests are in flight, this server's limit: retry shortly",
                state.limits.max_in_flight
            ),
        )
        .code("rate_limit_exceeded");
        e.retry_after = Some(1);
        return e.into_response();
    };
    let response = next.run(req).await;
    // The permit goes with the body, so a stream holds its place until it ends.
    let (parts, body) = response.into_parts();
    let body = Body::from_stream(body.into_data_stream().map(move |chunk| {
        let _held = &permit;
        chunk
    }));
    Response::from_parts(parts, body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_compare_whole() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret2"));
        assert!(!same(b"", b"x"));
    }

    #[test]
    fn loopback_hosts_name_the_port() {
        let h = loopback_hosts(8080);
        assert!(h.contains(&"localhost:8080".to_string()));
        assert!(h.contains(&"127.0.0.1".to_string()));
        assert!(h.contains(&"[::1]:8080".to_string()));
        assert!(!h.iter().any(|x| x.contains("evil")));
    }
}
