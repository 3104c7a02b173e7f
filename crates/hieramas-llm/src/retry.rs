//! Bounded retries with exponential back-off and full jitter, honouring `Retry-After`.

use std::future::Future;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::error::LlmError;

/// When and how often to retry a failed call.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = never retry).
    pub max_attempts: u32,
    /// Back-off ceiling before the first retry; doubles per retry.
    #[serde(with = "secs_f64")]
    pub base_delay: Duration,
    /// Back-off ceiling for any single wait (a longer `Retry-After` is still honoured, within
    /// `max_elapsed`).
    #[serde(with = "secs_f64")]
    pub max_delay: Duration,
    /// No retry starts after this much time has passed since the first attempt.
    #[serde(with = "secs_f64")]
    pub max_elapsed: Duration,
}

impl Default for RetryPolicy {
    /// The official pipeline's outer wrapper: 4 attempts, random exponential back-off capped at
    /// 60 s; we add a 10-minute bound on the whole.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 4,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(60),
            max_elapsed: Duration::from_secs(600),
        }
    }
}

impl RetryPolicy {
    /// Whether this is [`RetryPolicy::default`] (for leaving it out of serialised specs).
    pub fn is_default(&self) -> bool {
        *self == RetryPolicy::default()
    }

    /// A policy that never retries.
    pub fn none() -> RetryPolicy {
        RetryPolicy {
            max_attempts: 1,
            ..RetryPolicy::default()
        }
    }

    /// The wait before retry number `retry` (0-based): uniform in [0, min(max, base·2^retry)]
    /// ("full jitter"), but never shorter than what the server asked for.
    pub fn backoff(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let ceiling = self
            .base_delay
            .saturating_mul(1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX))
            .min(self.max_delay);
        let jitter = if ceiling.is_zero() {
            Duration::ZERO
        } else {
            ceiling.mul_f64(jitter_fraction())
        };
        match retry_after {
            Some(ra) => jitter.max(ra),
            None => jitter,
        }
    }

    /// Runs `attempt` until it succeeds, fails with a final error, or the limits are reached.
    /// Returns the value and the number of attempts made.
    pub async fn run<T, F, Fut>(&self, model: &str, mut attempt: F) -> Result<(T, u32), LlmError>
    where
        F: FnMut(u32) -> Fut,
        Fut: Future<Output = Result<T, LlmError>>,
    {
        let mut retrier = self.retrier(model);
        loop {
            let n = retrier.start_attempt();
            match attempt(n).await {
                Ok(v) => return Ok((v, n)),
                Err(e) => retrier.wait_or_give_up(e).await?,
            }
        }
    }

    /// The retry loop as a value, for callers whose attempts borrow state mutably:
    /// `loop { r.start_attempt(); match try().await { Ok(v) => break v, Err(e) => r.wait_or_give_up(e).await? } }`.
    pub fn retrier<'a>(&'a self, model: &'a str) -> Retrier<'a> {
        Retrier {
            policy: self,
            model,
            start: Instant::now(),
            attempts: 0,
        }
    }
}

/// State of one retried call; see [`RetryPolicy::retrier`].
pub struct Retrier<'a> {
    policy: &'a RetryPolicy,
    model: &'a str,
    start: Instant,
    attempts: u32,
}

impl Retrier<'_> {
    /// Counts an attempt; returns its number (1-based).
    pub fn start_attempt(&mut self) -> u32 {
        self.attempts += 1;
        self.attempts
    }

    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// After a failed attempt: sleeps the back-off and returns `Ok` if another attempt may be
    /// made, or returns the error to give up with (the error itself when it is final or no
    /// retries were allowed, [`LlmError::RetriesExhausted`] when the limits ran out).
    pub async fn wait_or_give_up(&mut self, err: LlmError) -> Result<(), LlmError> {
        if !err.is_retryable() {
            return Err(err);
        }
        let max_attempts = self.policy.max_attempts.max(1);
        let elapsed = self.start.elapsed();
        let wait = self
            .policy
            .backoff(self.attempts.saturating_sub(1), err.retry_after());
        if self.attempts >= max_attempts || elapsed + wait > self.policy.max_elapsed {
            if max_attempts == 1 {
                return Err(err);
            }
            return Err(LlmError::RetriesExhausted {
                model: self.model.to_string(),
                attempts: self.attempts,
                elapsed,
                last: Box::new(err),
            });
        }
        tracing::warn!(
            model = self.model,
            attempt = self.attempts,
            wait_ms = wait.as_millis() as u64,
            error = %err,
            "retrying LLM call"
        );
        tokio::time::sleep(wait).await;
        Ok(())
    }
}

#[cfg(feature = "http")]
fn jitter_fraction() -> f64 {
    use rand::Rng;
    rand::rng().random_range(0.0..=1.0)
}

#[cfg(not(feature = "http"))]
fn jitter_fraction() -> f64 {
    // Without `rand`: a cheap per-call value from the clock's nanoseconds.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1_000_000) / 1_000_000.0
}

/// Parses a `Retry-After` header: delta-seconds (integer or decimal) or an HTTP date.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return Duration::try_from_secs_f64(secs.max(0.0)).ok();
    }
    #[cfg(feature = "http")]
    if let Ok(when) = httpdate::parse_http_date(v) {
        return Some(
            when.duration_since(std::time::SystemTime::now())
                .unwrap_or(Duration::ZERO),
        );
    }
    None
}

mod secs_f64 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Duration::try_from_secs_f64(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_is_bounded_and_honours_retry_after() {
        let p = RetryPolicy {
            max_attempts: 10,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
            max_elapsed: Duration::from_secs(60),
        };
        for retry in 0..20 {
            let d = p.backoff(retry, None);
            let ceiling =
                Duration::from_millis(100 * (1u64 << retry.min(10))).min(Duration::from_secs(1));
            assert!(d <= ceiling, "retry {retry}: {d:?} > {ceiling:?}");
        }
        assert!(p.backoff(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    }

    #[test]
    fn jitter_varies() {
        let p = RetryPolicy::default();
        let waits: std::collections::HashSet<Duration> =
            (0..20).map(|_| p.backoff(3, None)).collect();
        assert!(
            waits.len() > 1,
            "full jitter should not give one fixed wait"
        );
    }

    #[test]
    fn parses_retry_after_forms() {
        assert_eq!(parse_retry_after("2"), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after(" 0.5 "), Some(Duration::from_millis(500)));
        assert_eq!(parse_retry_after("soon"), None);
        // A date in the past means "now".
        #[cfg(feature = "http")]
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
    }
}
