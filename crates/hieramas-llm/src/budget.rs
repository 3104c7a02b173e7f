//! A spending cap that holds even with many calls in flight, retries, and processes killed
//! mid-call.
//!
//! Before every attempt at a call — a retry is an attempt of its own — the most it could cost is
//! reserved: every byte of the prompt counted as a token (byte-level tokenisers never produce
//! more tokens than bytes), plus a per-message allowance for chat templates, plus `max_tokens` of
//! completion (a request without one is sent with the default the reservation assumed). An
//! attempt that would take spent + reserved past the cap is refused. When the attempt ends, its
//! reservation becomes a charge:
//!
//! - **known**: the provider reported usage; the exact price of it;
//! - **estimated**: the attempt failed in a way a provider may still bill — a timeout, a broken
//!   connection, a garbled or truncated answer, no usage — so the whole reservation is charged
//!   (never less than the provider's bill, documented as the conservative bound);
//! - **free**: the provider answered with an error status (4xx, 5xx, 429: no completion was
//!   produced, and OpenAI, Anthropic and OpenRouter do not bill those), or the call was never
//!   sent.
//!
//! With a ledger file ([`Budget::open`]) every reservation and every charge is appended to it
//! before the call goes out and after it returns; a process killed between the two leaves an
//! open reservation, which the next [`Budget::open`] charges in full ("interrupted"). So across
//! kills and resumes the cap is never exceeded and the money counted is never less than the
//! provider's bill. The file is locked (`flock`) while a budget holds it. [`Budget::summary`]
//! gives calls, attempts, retries and money per model.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::cost::{Price, Usd};
use crate::error::LlmError;
use crate::types::{ChatModel, ChatRequest, ChatResponse, Usage};

/// Template tokens allowed per message on top of its bytes.
const TEMPLATE_TOKENS_PER_MESSAGE: u64 = 16;

/// Completion length reserved (and sent) when a request sets no `max_tokens`.
pub const DEFAULT_MAX_TOKENS: u32 = 4096;

/// How an attempt's reservation was turned into money.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Charge {
    /// The provider reported usage: its exact price.
    Known,
    /// The outcome is unknown to us and may be billed: the whole reservation.
    Estimated,
    /// Not billed: an error status, or never sent.
    Free,
    /// Reserved by a process that was killed before the attempt ended: the whole reservation.
    Interrupted,
}

/// One line of a ledger file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum LedgerEntry {
    /// Written before the attempt is sent.
    Reserve {
        id: u64,
        model: String,
        /// 1 for a call's first attempt, 2.. for its retries.
        attempt: u32,
        /// The reservation, in pico-dollars.
        pico: u64,
    },
    /// Written when the attempt has ended.
    Settle { id: u64, charge: Charge, pico: u64 },
}

/// What one model's calls cost, attempt by attempt.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelLedger {
    /// Calls (first attempts).
    pub calls: u64,
    /// Attempts, first ones and retries.
    pub attempts: u64,
    /// Attempts after the first of their call.
    pub retries: u64,
    /// Attempts that did not return a usable answer (charged `estimated` or `free`), not
    /// counting interrupted ones.
    pub failed: u64,
    /// Attempts of an earlier process that never settled (killed mid-call): charged in full.
    pub interrupted: u64,
    /// Money from reported usage.
    pub known: Usd,
    /// Money charged conservatively: failed attempts that may be billed, interrupted ones.
    pub estimated: Usd,
}

impl ModelLedger {
    /// Everything charged to this model.
    pub fn total(&self) -> Usd {
        self.known + self.estimated
    }
}

#[derive(Debug, Default)]
struct Ledger {
    spent: Usd,
    reserved: Usd,
    models: BTreeMap<String, ModelLedger>,
    next_id: u64,
    /// Open reservations: id → (model, amount).
    open: BTreeMap<u64, (String, Usd)>,
}

impl Ledger {
    fn apply(&mut self, e: &LedgerEntry) {
        match e {
            LedgerEntry::Reserve {
                id,
                model,
                attempt,
                pico,
            } => {
                let m = self.models.entry(model.clone()).or_default();
                m.attempts += 1;
                if *attempt <= 1 {
                    m.calls += 1;
                } else {
                    m.retries += 1;
                }
                self.reserved += Usd::from_pico(*pico);
                self.open
                    .insert(*id, (model.clone(), Usd::from_pico(*pico)));
                self.next_id = self.next_id.max(id + 1);
            }
            LedgerEntry::Settle { id, charge, pico } => {
                let Some((model, amount)) = self.open.remove(id) else {
                    return;
                };
                self.reserved = self.reserved.saturating_sub(amount);
                let cost = Usd::from_pico(*pico);
                self.spent += cost;
                let m = self.models.entry(model).or_default();
                match charge {
                    Charge::Known => m.known += cost,
                    Charge::Estimated => {
                        m.failed += 1;
                        m.estimated += cost;
                    }
                    Charge::Free => m.failed += 1,
                    Charge::Interrupted => {
                        m.interrupted += 1;
                        m.estimated += cost;
                    }
                }
            }
        }
    }

    /// Charges every open reservation in full (an earlier process was killed mid-call).
    fn close_interrupted(&mut self) -> Vec<LedgerEntry> {
        let open: Vec<(u64, Usd)> = self.open.iter().map(|(id, (_, a))| (*id, *a)).collect();
        let mut settled = Vec::new();
        for (id, amount) in open {
            let e = LedgerEntry::Settle {
                id,
                charge: Charge::Interrupted,
                pico: amount.pico(),
            };
            self.apply(&e);
            settled.push(e);
        }
        settled
    }
}

/// The ledger file a budget appends to.
#[derive(Debug)]
struct Journal {
    path: PathBuf,
    file: File,
}

impl Journal {
    fn append(&mut self, e: &LedgerEntry) -> Result<(), LlmError> {
        let mut line = serde_json::to_vec(e).map_err(|err| ledger_error(&self.path, err))?;
        line.push(b'\n');
        // One write of a whole line: a kill leaves it whole or cut, and a cut last line is
        // dropped when the ledger is read back.
        self.file
            .write_all(&line)
            .map_err(|err| ledger_error(&self.path, err))
    }
}

fn ledger_error(path: &Path, e: impl std::fmt::Display) -> LlmError {
    LlmError::Ledger {
        path: path.display().to_string(),
        detail: e.to_string(),
    }
}

/// The entries of a ledger file; a last line cut by a kill is dropped, any other bad line is an
/// error naming it.
pub fn read_ledger(path: &Path) -> Result<Vec<LedgerEntry>, LlmError> {
    let mut bytes = Vec::new();
    match File::open(path) {
        Ok(mut f) => f
            .read_to_end(&mut bytes)
            .map_err(|e| ledger_error(path, e))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ledger_error(path, e)),
    };
    parse_ledger(path, &bytes)
}

fn parse_ledger(path: &Path, bytes: &[u8]) -> Result<Vec<LedgerEntry>, LlmError> {
    let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut out = Vec::new();
    for (n, line) in bytes[..complete].split(|&b| b == b'\n').enumerate() {
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let e: LedgerEntry = serde_json::from_slice(line)
            .map_err(|e| ledger_error(path, format!("line {}: {e}", n + 1)))?;
        out.push(e);
    }
    Ok(out)
}

/// Calls, attempts, retries and money per model of a ledger file, reservations left open
/// counted as interrupted (as [`Budget::open`] would charge them).
pub fn ledger_summary(path: &Path) -> Result<BTreeMap<String, ModelLedger>, LlmError> {
    let mut l = Ledger::default();
    for e in read_ledger(path)? {
        l.apply(&e);
    }
    l.close_interrupted();
    Ok(l.models)
}

/// A USD cap shared by every model charged to it.
#[derive(Debug)]
pub struct Budget {
    cap: Usd,
    ledger: Mutex<Ledger>,
    journal: Option<Mutex<Journal>>,
}

impl Budget {
    /// A budget kept in memory only.
    pub fn new(cap: Usd) -> Arc<Budget> {
        Arc::new(Budget {
            cap,
            ledger: Mutex::new(Ledger::default()),
            journal: None,
        })
    }

    /// A budget whose ledger is the file at `path` (created if absent): what earlier processes
    /// spent counts against `cap`, their open reservations charged in full. The file stays
    /// locked until the budget is dropped; a second process gets [`LlmError::Ledger`].
    pub fn open(cap: Usd, path: &Path) -> Result<Arc<Budget>, LlmError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| ledger_error(path, e))?;
        }
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(path)
            .map_err(|e| ledger_error(path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(ledger_error(
                    path,
                    "another process holds this budget ledger (it is locked)",
                ));
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(ledger_error(path, e)),
        }
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| ledger_error(path, e))?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        if complete < bytes.len() {
            // A line cut by a kill: drop it so the next one starts on a line of its own.
            file.set_len(complete as u64)
                .map_err(|e| ledger_error(path, e))?;
        }
        let mut ledger = Ledger::default();
        for e in parse_ledger(path, &bytes)? {
            ledger.apply(&e);
        }
        let mut journal = Journal {
            path: path.to_path_buf(),
            file,
        };
        for e in ledger.close_interrupted() {
            journal.append(&e)?;
        }
        if ledger.spent > Usd::ZERO {
            tracing::info!(
                ledger = %path.display(),
                spent = %ledger.spent,
                "budget: resuming with what earlier runs spent"
            );
        }
        Ok(Arc::new(Budget {
            cap,
            ledger: Mutex::new(ledger),
            journal: Some(Mutex::new(journal)),
        }))
    }

    pub fn cap(&self) -> Usd {
        self.cap
    }

    /// Money charged: attempts settled (known and estimated), this process's and, with a
    /// ledger file, earlier ones'.
    pub fn spent(&self) -> Usd {
        self.ledger().spent
    }

    /// Money held for attempts in flight.
    pub fn reserved(&self) -> Usd {
        self.ledger().reserved
    }

    /// Calls, attempts, retries and money per model.
    pub fn summary(&self) -> BTreeMap<String, ModelLedger> {
        self.ledger().models.clone()
    }

    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self, e: &LedgerEntry) -> Result<(), LlmError> {
        match &self.journal {
            Some(j) => j.lock().unwrap_or_else(|e| e.into_inner()).append(e),
            None => Ok(()),
        }
    }

    /// Holds `worst_case` for the first attempt of a call to `model`, or refuses. Dropped
    /// unsettled, the reservation is released (for calls that cannot be billed once
    /// abandoned: in-process models).
    pub fn reserve(
        self: &Arc<Self>,
        model: &str,
        worst_case: Usd,
    ) -> Result<Reservation, LlmError> {
        self.reserve_attempt(model, 1, worst_case, Charge::Free)
    }

    /// Holds `worst_case` for attempt number `attempt` (1-based) of a call to `model`, or
    /// refuses; `dropped` is how a reservation dropped unsettled is charged (`Estimated` for a
    /// request that may have reached a provider).
    pub fn reserve_attempt(
        self: &Arc<Self>,
        model: &str,
        attempt: u32,
        worst_case: Usd,
        dropped: Charge,
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
        let e = LedgerEntry::Reserve {
            id: l.next_id,
            model: model.to_string(),
            attempt,
            pico: worst_case.pico(),
        };
        // Journal first: if it cannot be written, the call is not made.
        self.write(&e)?;
        l.apply(&e);
        Ok(Reservation {
            budget: self.clone(),
            id: l.next_id - 1,
            amount: worst_case,
            dropped,
            settled: false,
        })
    }

    /// Records a cost that was not reserved (e.g. an embedding call); may pass the cap.
    pub fn record(&self, cost: Usd) {
        self.ledger().spent += cost;
    }

    fn settle(&self, id: u64, charge: Charge, cost: Usd) {
        let e = LedgerEntry::Settle {
            id,
            charge,
            pico: cost.pico(),
        };
        if let Err(err) = self.write(&e) {
            // The open reservation in the file is charged in full when it is read back.
            tracing::error!(error = %err, "budget ledger: cannot record a charge");
        }
        self.ledger().apply(&e);
    }
}

/// Money held for one attempt in flight; settled into a charge.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<Budget>,
    id: u64,
    amount: Usd,
    dropped: Charge,
    settled: bool,
}

impl Reservation {
    /// What was reserved.
    pub fn amount(&self) -> Usd {
        self.amount
    }

    /// The attempt answered with reported usage costing `actual`.
    pub fn settle(mut self, actual: Usd) {
        self.settled = true;
        self.budget.settle(self.id, Charge::Known, actual);
    }

    /// The attempt failed with `err`: charged in full if a provider may bill it
    /// ([`LlmError::may_be_billed`]), else free.
    pub fn settle_failed(mut self, err: &LlmError) {
        self.settled = true;
        let (charge, cost) = if err.may_be_billed() {
            (Charge::Estimated, self.amount)
        } else {
            (Charge::Free, Usd::ZERO)
        };
        self.budget.settle(self.id, charge, cost);
    }

    /// Nothing was sent, or nothing can be billed: released.
    pub fn release(mut self) {
        self.settled = true;
        self.budget.settle(self.id, Charge::Free, Usd::ZERO);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let cost = match self.dropped {
                Charge::Estimated => self.amount,
                _ => Usd::ZERO,
            };
            self.budget.settle(self.id, self.dropped, cost);
        }
    }
}

/// `req` with `max_tokens` set to `default` when it has none: what a budgeted call sends, so
/// that no answer can cost more than its reservation.
pub fn capped(req: &ChatRequest, default: u32) -> std::borrow::Cow<'_, ChatRequest> {
    match req.max_tokens {
        Some(_) => std::borrow::Cow::Borrowed(req),
        None => std::borrow::Cow::Owned(req.clone().max_tokens(default)),
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

/// An in-process model (local inference, SIMULATED) whose calls are charged to a [`Budget`];
/// HTTP clients charge each attempt themselves ([`crate::ModelSpec::connect_budgeted`]).
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
            default_max_tokens: DEFAULT_MAX_TOKENS,
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
        // The model is told the completion length the reservation assumed: a request without
        // `max_tokens` goes out with `default_max_tokens`, so no answer can cost more than was
        // reserved.
        let req = capped(req, self.default_max_tokens);
        let worst = worst_case_cost(self.inner.price(), &req, self.default_max_tokens);
        let reservation = self.budget.reserve(self.inner.id(), worst)?;
        match self.inner.chat(&req).await {
            Ok(resp) => {
                // A response can only cost more than its worst case if the model ignored
                // max_tokens; it is charged in full either way. A cache hit was not paid for.
                reservation.settle(if resp.cached { Usd::ZERO } else { resp.cost });
                Ok(resp)
            }
            Err(e) => {
                reservation.settle_failed(&e);
                Err(e)
            }
        }
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

    fn ledger_lines(entries: &[LedgerEntry]) -> String {
        entries
            .iter()
            .map(|e| serde_json::to_string(e).unwrap() + "\n")
            .collect()
    }

    #[test]
    fn a_ledger_file_carries_spending_across_processes_and_charges_interrupted_calls() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("budget.jsonl");
        let cap = Usd::from_pico(1_000);
        {
            let b = Budget::open(cap, &path).unwrap();
            b.reserve_attempt("a", 1, Usd::from_pico(100), Charge::Estimated)
                .unwrap()
                .settle(Usd::from_pico(30));
            let r = b
                .reserve_attempt("a", 2, Usd::from_pico(100), Charge::Estimated)
                .unwrap();
            r.settle_failed(&LlmError::Timeout {
                model: "a".into(),
                url: "u".into(),
                after: std::time::Duration::from_secs(1),
            });
            b.reserve_attempt("b", 1, Usd::from_pico(50), Charge::Estimated)
                .unwrap()
                .settle_failed(&LlmError::Http {
                    model: "b".into(),
                    status: 503,
                    url: "u".into(),
                    message: "m".into(),
                    retry_after: None,
                });
            assert_eq!(b.spent(), Usd::from_pico(130));
        }
        // A process killed mid-call: its reservation is in the file, its charge is not; and
        // the kill cut the next line in the middle.
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str(&ledger_lines(&[LedgerEntry::Reserve {
            id: 99,
            model: "b".into(),
            attempt: 1,
            pico: 70,
        }]));
        text.push_str("{\"event\":\"settle\",\"id\":99,\"cha");
        std::fs::write(&path, &text).unwrap();

        let b = Budget::open(cap, &path).unwrap();
        assert_eq!(
            b.spent(),
            Usd::from_pico(200),
            "the open reservation charged in full"
        );
        let s = b.summary();
        assert_eq!(
            s["a"],
            ModelLedger {
                calls: 1,
                attempts: 2,
                retries: 1,
                failed: 1,
                interrupted: 0,
                known: Usd::from_pico(30),
                estimated: Usd::from_pico(100),
            }
        );
        assert_eq!(
            (
                s["b"].calls,
                s["b"].failed,
                s["b"].interrupted,
                s["b"].total()
            ),
            (2, 1, 1, Usd::from_pico(70))
        );
        // The cap counts what earlier processes spent.
        let held = b.reserve("a", Usd::from_pico(800)).unwrap();
        assert!(b.reserve("a", Usd::from_pico(1)).is_err());
        drop(held);
        // A second holder of the same ledger is refused while this one is open.
        let e = Budget::open(cap, &path).unwrap_err();
        assert!(
            matches!(e, LlmError::Ledger { .. }) && e.to_string().contains("locked"),
            "{e}"
        );
        let seen = b.summary();
        drop(b);
        // Reading it back gives what the budget saw (the cut line dropped, the interrupted
        // call settled once, not again).
        assert_eq!(ledger_summary(&path).unwrap(), seen);
        let reopened = Budget::open(cap, &path).unwrap();
        assert_eq!(reopened.spent(), Usd::from_pico(200));
    }

    #[test]
    fn a_bad_line_inside_a_ledger_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l.jsonl");
        std::fs::write(&path, "{\"event\":\"nope\"}\n\n").unwrap();
        let e = Budget::open(Usd::from_pico(1), &path).unwrap_err();
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn a_dropped_http_attempt_is_charged_in_full_an_in_process_one_is_not() {
        let b = Budget::new(Usd::from_pico(1_000));
        drop(
            b.reserve_attempt("h", 1, Usd::from_pico(40), Charge::Estimated)
                .unwrap(),
        );
        drop(b.reserve("l", Usd::from_pico(40)).unwrap());
        assert_eq!((b.spent(), b.reserved()), (Usd::from_pico(40), Usd::ZERO));
        b.reserve("l", Usd::from_pico(10)).unwrap().release();
        assert_eq!(b.summary()["l"].failed, 2);
    }
}
