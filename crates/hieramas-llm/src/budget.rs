//! A spending cap that holds even with many calls in flight.
//!
//! Before a call, [`Budgeted`] reserves the most that call could cost — every byte of the
//! prompt counted as a token (byte-level tokenisers never produce more tokens than bytes),
//! plus a per-message allowance for chat templates, plus `max_tokens` of completion — and
//! refuses the call if spent + reserved + that worst case would pass the cap. When the call
//! returns, the reservation is replaced by the call's actual cost. So the cap is never
//! exceeded, and the refusal says why.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::cost::{Price, Usd};
use crate::error::LlmError;
use crate::types::{ChatModel, ChatRequest, ChatResponse, Usage};

/// Template tokens allowed per message on top of its bytes.
const TEMPLATE_TOKENS_PER_MESSAGE: u64 = 16;

#[derive(Debug, Default, Clone, Copy)]
struct Ledger {
    spent: Usd,
    reserved: Usd,
}

/// A USD cap shared by every model wrapped with it.
#[derive(Debug)]
pub struct Budget {
    cap: Usd,
    ledger: Mutex<Ledger>,
}

impl Budget {
    pub fn new(cap: Usd) -> Arc<Budget> {
        Arc::new(Budget {
            cap,
            ledger: Mutex::new(Ledger::default()),
        })
    }

    pub fn cap(&self) -> Usd {
        self.cap
    }

    /// Money spent by finished calls.
    pub fn spent(&self) -> Usd {
        self.ledger().spent
    }

    /// Money held for calls in flight.
    pub fn reserved(&self) -> Usd {
        self.ledger().reserved
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `worst_case` for a call to `model`, or refuses.
    pub fn reserve(
        self: &Arc<Self>,
        model: &str,
        worst_case: Usd,
    ) -> Result<Reservation, LlmError> {
        let mut l = self.ledger();
        let committed = l.spent + l.reserved;
        if committed
            .checked_add(worst_case)
            .is_none_or(|total| total > self.cap)
        {
            return Err(LlmError::BudgetExceeded {
                model: model.to_string(),
                cap: self.cap,
                spent: l.spent,
                reserved: l.reserved,
                needed: worst_case,
            });
        }
        l.reserved += worst_case;
        Ok(Reservation {
            budget: self.clone(),
            amount: worst_case,
            settled: false,
        })
    }

    /// Records a cost that was not reserved (e.g. an embedding call); may pass the cap.
    pub fn record(&self, cost: Usd) {
        self.ledger().spent += cost;
    }
}

/// Money held for one call in flight; released on drop if not settled.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    amount: Usd,
    settled: bool,
}

impl Reservation {
    /// Replaces the reservation with what the call actually cost.
    pub fn settle(mut self, actual: Usd) {
        let mut l = self.budget.ledger();
        l.reserved = l.reserved.saturating_sub(self.amount);
        l.spent += actual;
        self.settled = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let mut l = self.budget.ledger();
            l.reserved = l.reserved.saturating_sub(self.amount);
        }
    }
}

/// The most `req` can cost at `price`.
pub fn worst_case_cost(price: Price, req: &ChatRequest, default_max_tokens: u32) -> Usd {
    let prompt: u64 = req
        .messages
        .iter()
        .map(|m| m.content.len() as u64 + TEMPLATE_TOKENS_PER_MESSAGE)
        .sum();
    price.cost(Usage {
        prompt_tokens: prompt,
        completion_tokens: u64::from(req.max_tokens.unwrap_or(default_max_tokens)),
    })
}

/// A model whose calls are charged to a [`Budget`].
pub struct Budgeted<M> {
    inner: M,
    budget: Arc<Budget>,
    /// Completion length assumed when a request sets no `max_tokens`.
    pub default_max_tokens: u32,
}

impl<M: ChatModel> Budgeted<M> {
    pub fn new(inner: M, budget: Arc<Budget>) -> Budgeted<M> {
        Budgeted {
            inner,
            budget,
            default_max_tokens: 4096,
        }
    }
}

#[async_trait]
impl<M: ChatModel> ChatModel for Budgeted<M> {
    fn id(&self) -> &str {
        self.inner.id()
    }
    fn price(&self) -> Price {
        self.inner.price()
    }
    async fn chat(&self, req: &ChatRequest) -> Result<ChatResponse, LlmError> {
        // The provider is told the completion length the reservation assumed: a request
        // without `max_tokens` goes out with `default_max_tokens`, so no answer can cost more
        // than was reserved.
        let capped;
        let req = match req.max_tokens {
            Some(_) => req,
            None => {
                capped = req.clone().max_tokens(self.default_max_tokens);
                &capped
            }
        };
        let worst = worst_case_cost(self.inner.price(), req, self.default_max_tokens);
        let reservation = self.budget.reserve(self.inner.id(), worst)?;
        let resp = self.inner.chat(req).await?;
        // A response can only cost more than its worst case if the provider ignored
        // max_tokens; it is charged in full either way. A cache hit was not paid for.
        reservation.settle(if resp.cached { Usd::ZERO } else { resp.cost });
        Ok(resp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_past_cap_and_releases_on_drop() {
        let b = Budget::new(Usd::from_pico(100));
        let r1 = b.reserve("m", Usd::from_pico(60)).unwrap();
        let err = b.reserve("m", Usd::from_pico(50)).unwrap_err();
        assert!(matches!(err, LlmError::BudgetExceeded { ref model, .. } if model == "m"));
        assert!(err.to_string().contains("reserved"), "{err}");
        drop(r1);
        assert_eq!(b.reserved(), Usd::ZERO);
        let r2 = b.reserve("m", Usd::from_pico(50)).unwrap();
        r2.settle(Usd::from_pico(10));
        assert_eq!((b.spent(), b.reserved()), (Usd::from_pico(10), Usd::ZERO));
        assert!(b.reserve("m", Usd::from_pico(90)).is_ok());
        assert!(b.reserve("m", Usd::from_pico(91)).is_err());
    }

    #[test]
    fn worst_case_counts_bytes_and_max_tokens() {
        let price = Price {
            input_pico_per_token: 1,
            output_pico_per_token: 10,
        };
        let req = ChatRequest::user("hello").max_tokens(7);
        assert_eq!(
            worst_case_cost(price, &req, 100),
            Usd::from_pico(5 + 16 + 70)
        );
        let req = ChatRequest::user("hello");
        assert_eq!(
            worst_case_cost(price, &req, 100),
            Usd::from_pico(5 + 16 + 1000)
        );
    }
}
