//! A per-model cap on calls in flight, for any [`ChatModel`].
//!
//! The HTTP clients already hold their pool entry's `max_concurrency`; [`Limited`] gives the
//! same guarantee to any other model (in-process ones, test models, wrappers). Share one
//! `Limited` per model id and the cap holds across every query and every task using it.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

use crate::cost::Price;
use crate::error::LlmError;
use crate::types::{ChatModel, ChatRequest, ChatResponse};

/// `inner` with at most `max_in_flight` calls running at once; the others wait in turn (FIFO).
pub struct Limited {
    inner: Arc<dyn ChatModel>,
    permits: Semaphore,
    max_in_flight: usize,
}

impl Limited {
    /// `max_in_flight` is raised to 1 when given 0.
    pub fn new(inner: Arc<dyn ChatModel>, max_in_flight: usize) -> Limited {
        let max_in_flight = max_in_flight.max(1);
        Limited {
            inner,
            permits: Semaphore::new(max_in_flight),
            max_in_flight,
        }
    }

    pub fn max_in_flight(&self) -> usize {
        self.max_in_flight
    }

    /// Calls running now.
    pub fn in_flight(&self) -> usize {
        self.max_in_flight - self.permits.available_permits()
    }
}

#[async_trait]
impl ChatModel for Limited {
    fn id(&self) -> &str {
        self.inner.id()
    }

    fn price(&self) -> Price {
        self.inner.price()
    }

    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        // The semaphore is never closed, so acquiring only fails if it were.
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| LlmError::Backend {
                model: self.inner.id().to_string(),
                detail: "concurrency limiter closed".into(),
            })?;
        self.inner.chat(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{FinishReason, Usage};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// Sleeps 40 ms per call (long enough that calls started together overlap) and remembers the most calls it saw at once.
    #[derive(Default)]
    struct Slow {
        now: AtomicUsize,
        peak: AtomicUsize,
    }

    #[async_trait]
    impl ChatModel for Slow {
        fn id(&self) -> &str {
            "slow"
        }
        fn price(&self) -> Price {
            Price::default()
        }
        async fn chat(&self, _req: &ChatRequest) -> Result<ChatResponse, LlmError> {
            let n = self.now.fetch_add(1, Ordering::SeqCst) + 1;
            self.peak.fetch_max(n, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(40)).await;
            self.now.fetch_sub(1, Ordering::SeqCst);
            Ok(ChatResponse {
                model: "slow".into(),
                provider_model: "slow".into(),
                text: "ok".into(),
                finish_reason: FinishReason::Stop,
                usage: Usage::default(),
                cost: Default::default(),
                latency: Duration::ZERO,
                attempts: 1,
                cached: false,
                saved: Default::default(),
            })
        }
    }

    async fn peak_with(limit: usize, calls: usize) -> usize {
        let slow = Arc::new(Slow::default());
        let limited = Arc::new(Limited::new(slow.clone(), limit));
        let req = ChatRequest::user("hi");
        let mut tasks = Vec::new();
        for _ in 0..calls {
            let (m, r) = (limited.clone(), req.clone());
            tasks.push(tokio::spawn(async move { m.chat(&r).await }));
        }
        for t in tasks {
            assert!(t.await.unwrap().is_ok());
        }
        assert_eq!(limited.in_flight(), 0);
        slow.peak.load(Ordering::SeqCst)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn holds_the_cap_across_tasks() {
        assert_eq!(peak_with(3, 12).await, 3);
        assert_eq!(peak_with(1, 8).await, 1);
        // Without contention the wrapper does not serialise.
        assert_eq!(peak_with(16, 8).await, 8);
    }
}
