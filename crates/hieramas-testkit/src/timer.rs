//! Sleeps kept to a fraction of a millisecond, for the server's `latency`.
//!
//! Tokio's timer counts whole milliseconds and rounds every deadline up, so a 50 ms
//! `tokio::time::sleep` lasts 50.2–51.9 ms (mean 51.2 ms measured here; this timer: mean
//! 50.2). A benchmark that chains seven calls per query and compares wall time with
//! `7 × 50 ms` would charge that rounding to the client. Here one thread keeps the deadlines in
//! a heap and waits on a condition variable with a nanosecond timeout (a futex wait: the
//! kernel's timer slack, ~50 µs), then wakes the sleeping tasks.

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use crate::lock;

struct Entry {
    at: Instant,
    seq: u64,
    wake: oneshot::Sender<()>,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Entry {}
impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Entry {
    fn cmp(&self, other: &Self) -> Ordering {
        (self.at, self.seq).cmp(&(other.at, other.seq))
    }
}

/// A timer thread; it ends when the `PreciseTimer` is dropped.
pub(crate) struct PreciseTimer {
    shared: Arc<Shared>,
}

struct Shared {
    due: Mutex<Due>,
    /// Signalled when a new deadline is the earliest, or on shutdown.
    changed: Condvar,
}

struct Due {
    heap: BinaryHeap<Reverse<Entry>>,
    seq: u64,
    closed: bool,
}

impl PreciseTimer {
    /// Starts the thread, or `None` when no thread can be spawned (callers fall back to
    /// tokio's timer).
    pub fn start() -> Option<PreciseTimer> {
        let shared = Arc::new(Shared {
            due: Mutex::new(Due {
                heap: BinaryHeap::new(),
                seq: 0,
                closed: false,
            }),
            changed: Condvar::new(),
        });
        let thread_shared = shared.clone();
        std::thread::Builder::new()
            .name("testkit-timer".into())
            .spawn(move || run(&thread_shared))
            .ok()?;
        Some(PreciseTimer { shared })
    }

    /// Sleeps for `d`, measured from now.
    pub async fn sleep(&self, d: Duration) {
        let at = Instant::now() + d;
        let (wake, woken) = oneshot::channel();
        let earliest = {
            let mut due = lock(&self.shared.due);
            due.seq += 1;
            let seq = due.seq;
            due.heap.push(Reverse(Entry { at, seq, wake }));
            due.heap.peek().is_some_and(|Reverse(e)| e.seq == seq)
        };
        // Sleeps of one length end in the order they began: the thread, already waiting for
        // an earlier deadline, needs no wake-up for a later one.
        if earliest {
            self.shared.changed.notify_one();
        }
        if woken.await.is_err() {
            // The thread is gone: finish the sleep on tokio's timer.
            tokio::time::sleep_until(at.into()).await;
        }
    }
}

impl Drop for PreciseTimer {
    fn drop(&mut self) {
        lock(&self.shared.due).closed = true;
        self.shared.changed.notify_one();
    }
}

fn run(shared: &Shared) {
    let mut due = lock(&shared.due);
    loop {
        if due.closed {
            // The server is gone; dropping the entries ends their sleeps.
            return;
        }
        let now = Instant::now();
        while due.heap.peek().is_some_and(|Reverse(e)| e.at <= now) {
            if let Some(Reverse(e)) = due.heap.pop() {
                // The sleeper may have been cancelled (client went away): nothing to wake.
                let _ = e.wake.send(());
            }
        }
        due = match due.heap.peek() {
            None => shared.changed.wait(due).unwrap_or_else(|e| e.into_inner()),
            Some(Reverse(e)) => {
                let wait = e.at.saturating_duration_since(now);
                match shared.changed.wait_timeout(due, wait) {
                    Ok((g, _)) => g,
                    Err(e) => e.into_inner().0,
                }
            }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sleeps_are_never_early() {
        let timer = std::sync::Arc::new(PreciseTimer::start().unwrap());
        let start = Instant::now();
        let tasks: Vec<_> = [30u64, 10, 20, 10]
            .into_iter()
            .map(|ms| {
                let timer = timer.clone();
                tokio::spawn(async move {
                    timer.sleep(Duration::from_millis(ms)).await;
                    (ms, start.elapsed())
                })
            })
            .collect();
        for t in tasks {
            // A timer that never fires must fail the test, not hang it.
            let (ms, took) = tokio::time::timeout(Duration::from_secs(10), t)
                .await
                .expect("sleeper never woken")
                .unwrap();
            // Never early; lateness is bounded loosely (a loaded CI machine).
            assert!(
                took >= Duration::from_millis(ms),
                "{ms} ms sleep took {took:?}"
            );
            assert!(
                took < Duration::from_millis(ms + 500),
                "{ms} ms sleep took {took:?}"
            );
        }
    }
}
