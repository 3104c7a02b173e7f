//! HumanEval+ grading with evalplus semantics, each program in a sandboxed `python3`.
//!
//! Expected outputs come from the canonical solution, run once per task on this machine and
//! cached (pickle + the sums of the per-input time limits) under the cache directory; each input's
//! time limit is `max(1 s, 4 × the canonical run time)`, as in evalplus. A candidate runs in a
//! fresh temporary directory, its own process group, with an emptied environment (no API keys),
//! new network and PID namespaces when `unshare` works here, rlimits (address space, CPU, file
//! size, processes), an unprivileged user when started as root, and an audit hook refusing
//! processes, sockets, signals and writes outside its directory (see `harness.py`). The whole
//! process group is killed at the deadline. Tasks run in parallel.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::TasksError;
use crate::data::HumanEvalTask;

const HARNESS: &str = include_str!("harness.py");

/// `$HIERAMAS_HOME/humaneval-plus`, else `$HOME/.cache/hieramas/humaneval-plus`: where the
/// expected outputs are cached.
pub fn default_cache_dir() -> PathBuf {
    std::env::var_os("HIERAMAS_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hieramas")))
        .unwrap_or_else(|| PathBuf::from(".cache/hieramas"))
        .join("humaneval-plus")
}

/// Limits and knobs of the sandbox; the defaults follow evalplus.
#[derive(Clone, Debug)]
pub struct SandboxOptions {
    pub python: PathBuf,
    /// Floor of the per-input time limit, seconds (evalplus: 1).
    pub min_time_limit: f64,
    /// Per-input limit = this × the canonical run time (evalplus: 4).
    pub time_factor: f64,
    /// Cap on the summed limits of one part (base or plus), seconds (evalplus: 60).
    pub part_time_cap: f64,
    pub address_space_bytes: u64,
    pub file_size_bytes: u64,
    pub processes: u64,
    /// Most bytes read back from the harness before it is killed.
    pub max_output_bytes: usize,
    /// Programs run at once.
    pub parallelism: usize,
    /// Use new network and PID namespaces when `unshare` works here.
    pub namespaces: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            python: PathBuf::from("python3"),
            min_time_limit: 1.0,
            time_factor: 4.0,
            part_time_cap: 60.0,
            address_space_bytes: 4 << 30,
            file_size_bytes: 16 << 20,
            processes: 256,
            max_output_bytes: 1 << 20,
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
            namespaces: true,
        }
    }
}

/// How one part (base or plus inputs) went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    Timeout,
    /// Not run: the program already failed the base inputs (so it fails plus as well).
    Skipped,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartResult {
    pub status: Status,
    /// Index of the first failing input.
    #[serde(default)]
    pub failed_input: Option<usize>,
    #[serde(default)]
    pub error: Option<String>,
}

/// The verdict on one program.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    pub base: PartResult,
    pub plus: PartResult,
}

impl Outcome {
    pub fn base_pass(&self) -> bool {
        self.base.status == Status::Pass
    }
    /// Base and plus inputs all pass (evalplus "plus" pass@1).
    pub fn plus_pass(&self) -> bool {
        self.base_pass() && self.plus.status == Status::Pass
    }
    /// The first failure, for reports.
    pub fn first_error(&self) -> Option<String> {
        [("base", &self.base), ("plus", &self.plus)]
            .into_iter()
            .find(|(_, p)| !matches!(p.status, Status::Pass | Status::Skipped))
            .map(|(name, p)| {
                let at = p
                    .failed_input
                    .map(|i| format!(" at {name} input {i}"))
                    .unwrap_or_default();
                format!(
                    "{:?}{at}: {}",
                    p.status,
                    p.error.as_deref().unwrap_or("no detail")
                )
            })
    }
}

impl PartResult {
    fn skipped() -> PartResult {
        PartResult {
            status: Status::Skipped,
            failed_input: None,
            error: None,
        }
    }
}

/// Time-limit sums measured by the reference run.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Reference {
    base_limit_sum: f64,
    plus_limit_sum: f64,
}

/// Grades programs against the HumanEval+ tasks.
pub struct Grader {
    tasks: HashMap<String, HumanEvalTask>,
    cache_dir: PathBuf,
    opts: SandboxOptions,
    references: std::sync::Mutex<HashMap<String, Reference>>,
    /// Verdicts by sha256(task id, program): an identical program of a task is run once per
    /// grader (only verdicts the program decided: no timeout, no sandbox failure).
    verdicts: std::sync::Mutex<HashMap<[u8; 32], Outcome>>,
    /// Programs run in the sandbox so far.
    runs: std::sync::atomic::AtomicUsize,
}

impl Grader {
    /// `cache_dir` holds the expected outputs (one pickle per task, made on first use).
    pub fn new(
        tasks: Vec<HumanEvalTask>,
        cache_dir: impl Into<PathBuf>,
        opts: SandboxOptions,
    ) -> Grader {
        Grader {
            tasks: tasks.into_iter().map(|t| (t.task_id.clone(), t)).collect(),
            cache_dir: cache_dir.into(),
            opts,
            references: Default::default(),
            verdicts: Default::default(),
            runs: Default::default(),
        }
    }

    /// Programs this grader has run in the sandbox (identical programs of a task run once).
    pub fn sandbox_runs(&self) -> usize {
        self.runs.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn task(&self, task_id: &str) -> Option<&HumanEvalTask> {
        self.tasks.get(task_id)
    }

    /// Whether programs get their own network and PID namespaces here.
    pub fn uses_namespaces(&self) -> bool {
        self.opts.namespaces && unshare_works()
    }

    /// Runs the canonical solutions of all tasks whose expected outputs are not cached yet.
    pub fn prepare(&self) -> Result<(), TasksError> {
        let ids: Vec<&String> = self.tasks.keys().collect();
        let results = parallel_map(&ids, self.opts.parallelism, |id| {
            self.reference(id).map(drop)
        });
        results.into_iter().collect()
    }

    /// Grades `solution` (a whole program: prompt + completion) on task `task_id`. The verdict
    /// on a program this grader has already run to a decision is reused.
    pub fn grade(&self, task_id: &str, solution: &str) -> Result<Outcome, TasksError> {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(task_id.as_bytes());
        h.update([0u8]);
        h.update(solution.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let known = self
            .verdicts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(o) = known {
            return Ok(o);
        }
        let (outcome, decided) = self.run_program(task_id, solution)?;
        if decided {
            self.verdicts
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .insert(key, outcome.clone());
        }
        Ok(outcome)
    }

    /// Runs one program; `true` with the outcome when the program decided it (it was not
    /// killed at a deadline and the sandbox replied).
    fn run_program(&self, task_id: &str, solution: &str) -> Result<(Outcome, bool), TasksError> {
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let task = self
            .tasks
            .get(task_id)
            .ok_or_else(|| TasksError::UnknownTask(task_id.to_string()))?;
        let reference = self.reference(task_id)?;
        // evalplus: each part may take min(cap, sum of its per-input limits) + 1 s; loading
        // the program and starting python get 2 s more in the first phase.
        let part = |sum: f64| sum.min(self.opts.part_time_cap) + 1.0;
        let first = part(reference.base_limit_sum) + 2.0;
        let plus = part(reference.plus_limit_sum);
        let request = serde_json::json!({
            "mode": "candidate",
            "code": solution,
            "entry_point": task.entry_point,
            "base_input": task.base_input.get(),
            "plus_input": task.plus_input.get(),
            "atol": task.atol,
            "expected": self.expected_path(task),
            "min_time_limit": self.opts.min_time_limit,
            "time_factor": self.opts.time_factor,
            "load_time_limit": first,
            "limits": {
                "address_space": self.opts.address_space_bytes,
                "file_size": self.opts.file_size_bytes,
                "cpu_seconds": (first + plus).ceil() + 1.0,
                "processes": self.opts.processes,
            },
        });
        let run = self.run_harness(
            request,
            Duration::from_secs_f64(first),
            Duration::from_secs_f64(plus),
        )?;
        Ok(match run {
            Run::Reply(v) => {
                let o: Outcome = serde_json::from_value(v).map_err(|e| {
                    TasksError::Sandbox(format!("unreadable harness reply for {task_id}: {e}"))
                })?;
                let decided = ![&o.base, &o.plus]
                    .iter()
                    .any(|p| p.status == Status::Timeout);
                (o, decided)
            }
            Run::TimedOut { in_plus, after } => {
                let killed = PartResult {
                    status: Status::Timeout,
                    failed_input: None,
                    error: Some(format!(
                        "the program ran past its deadline and was killed after {:.1} s",
                        after.as_secs_f64()
                    )),
                };
                let o = if in_plus {
                    // The harness starts the plus inputs only after every base input passed.
                    Outcome {
                        base: PartResult {
                            status: Status::Pass,
                            failed_input: None,
                            error: None,
                        },
                        plus: killed,
                    }
                } else {
                    Outcome {
                        base: killed,
                        plus: PartResult::skipped(),
                    }
                };
                (o, false)
            }
            Run::NoReply(why) => (
                Outcome {
                    base: PartResult {
                        status: Status::Fail,
                        failed_input: None,
                        error: Some(why),
                    },
                    plus: PartResult::skipped(),
                },
                false,
            ),
        })
    }

    /// Grades many (task id, program) pairs in parallel, in order; `on_done` is called after each.
    pub fn grade_many(
        &self,
        samples: &[(String, String)],
        on_done: &(dyn Fn(usize) + Sync),
    ) -> Vec<Result<Outcome, TasksError>> {
        parallel_map(samples, self.opts.parallelism, |(id, code)| {
            let r = self.grade(id, code);
            on_done(1);
            r
        })
    }

    fn key(task: &HumanEvalTask) -> String {
        let mut h = Sha256::new();
        for part in [
            HARNESS,
            &task.task_id,
            &task.prompt,
            &task.canonical_solution,
            &task.entry_point,
            task.base_input.get(),
            task.plus_input.get(),
        ] {
            h.update((part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        }
        hex::encode(&h.finalize()[..12])
    }

    fn expected_path(&self, task: &HumanEvalTask) -> PathBuf {
        self.cache_dir.join(format!(
            "{}-{}.pkl",
            task.task_id.replace('/', "_"),
            Self::key(task)
        ))
    }

    fn reference(&self, task_id: &str) -> Result<Reference, TasksError> {
        if let Some(r) = self.lock().get(task_id) {
            return Ok(*r);
        }
        let task = self
            .tasks
            .get(task_id)
            .ok_or_else(|| TasksError::UnknownTask(task_id.to_string()))?;
        let pkl = self.expected_path(task);
        let meta = pkl.with_extension("json");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| TasksError::Io { path, source: e }
        };
        if let Some(r) = std::fs::read(&meta)
            .ok()
            .and_then(|b| serde_json::from_slice::<Reference>(&b).ok())
            .filter(|_| pkl.exists())
        {
            self.lock().insert(task_id.to_string(), r);
            return Ok(r);
        }
        std::fs::create_dir_all(&self.cache_dir).map_err(io(&self.cache_dir))?;
        // Written beside, then renamed: a crash never leaves a half-written cache entry.
        let tmp = pkl.with_extension(format!("pkl.{}.tmp", std::process::id()));
        let request = serde_json::json!({
            "mode": "reference",
            "code": format!("{}{}", task.prompt, task.canonical_solution),
            "entry_point": task.entry_point,
            "base_input": task.base_input.get(),
            "plus_input": task.plus_input.get(),
            "expected_out": tmp,
            "min_time_limit": self.opts.min_time_limit,
            "time_factor": self.opts.time_factor,
        });
        let reply = match self.run_harness(request, Duration::from_secs(600), Duration::ZERO)? {
            Run::Reply(v) => v,
            Run::TimedOut { .. } => {
                return Err(TasksError::Sandbox(format!(
                    "the canonical solution of {task_id} ran past 600 s"
                )));
            }
            Run::NoReply(why) => {
                return Err(TasksError::Sandbox(format!(
                    "the canonical solution of {task_id} failed: {why}"
                )));
            }
        };
        let r = Reference {
            base_limit_sum: reply["base_limit_sum"].as_f64().unwrap_or(0.0),
            plus_limit_sum: reply["plus_limit_sum"].as_f64().unwrap_or(0.0),
        };
        std::fs::rename(&tmp, &pkl).map_err(io(&pkl))?;
        let json = serde_json::to_vec(&r).map_err(|e| TasksError::Sandbox(e.to_string()))?;
        std::fs::write(&meta, json).map_err(io(&meta))?;
        self.lock().insert(task_id.to_string(), r);
        Ok(r)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reference>> {
        self.references
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs the harness on `request`. The deadline is `first` from the start, plus `plus` once
    /// the harness says it started the plus inputs.
    fn run_harness(
        &self,
        mut request: serde_json::Value,
        first: Duration,
        plus: Duration,
    ) -> Result<Run, TasksError> {
        let nonce = format!("@@hieramas-{:016x}@@", rand_u64());
        request["nonce"] = nonce.clone().into();
        let dir = tempfile::Builder::new()
            .prefix("hieramas-sandbox-")
            .tempdir()
            .map_err(|e| TasksError::Sandbox(format!("cannot make a temporary directory: {e}")))?;
        let mut cmd = if self.uses_namespaces() {
            let mut c = Command::new("unshare");
            c.args(["--net", "--pid", "--fork", "--kill-child", "--"])
                .arg(&self.opts.python);
            c
        } else {
            Command::new(&self.opts.python)
        };
        cmd.args(["-I", "-B", "-c", HARNESS])
            .current_dir(dir.path())
            .env_clear()
            .env("PATH", "/usr/local/bin:/usr/bin:/bin")
            .env("LANG", "C.UTF-8")
            .env("HOME", dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0);
        let mut child = cmd.spawn().map_err(|e| {
            TasksError::Sandbox(format!("cannot start {}: {e}", self.opts.python.display()))
        })?;
        let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
        let kill = || {
            let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        };
        let started = Instant::now();
        let body = serde_json::to_vec(&request).map_err(|e| TasksError::Sandbox(e.to_string()))?;
        if let Some(mut stdin) = child.stdin.take() {
            // A harness that dies early closes the pipe; its missing reply says so below.
            let _ = stdin.write_all(&body);
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take();
        let cap = self.opts.max_output_bytes;
        let marker = format!("{nonce}phase plus\n").into_bytes();
        let reader = std::thread::spawn(move || read_harness(stdout, cap, &marker, &tx));
        let mut deadline = started + first;
        let mut in_plus = false;
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(Event::PlusStarted) => {
                    if !in_plus {
                        deadline += plus;
                        in_plus = true;
                    }
                }
                Ok(Event::Over) => break End::Over,
                Ok(Event::Eof) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break End::Finished;
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => break End::TimedOut,
            }
        };
        if !matches!(end, End::Finished) {
            kill();
        }
        let buf = reader.join().unwrap_or_default();
        let status = child.wait().ok();
        // Nothing of the group may outlive the run.
        kill();
        match end {
            End::Over => {
                return Ok(Run::NoReply(format!(
                    "the program wrote more than {cap} bytes to the harness channel"
                )));
            }
            End::TimedOut => {
                return Ok(Run::TimedOut {
                    in_plus,
                    after: started.elapsed(),
                });
            }
            End::Finished => {}
        }
        let text = String::from_utf8_lossy(&buf);
        let reply = text
            .match_indices(&nonce)
            .filter_map(|(i, _)| text[i + nonce.len()..].lines().next())
            .filter(|line| !line.starts_with("phase "))
            .last();
        match reply {
            Some(line) => serde_json::from_str(line)
                .map(Run::Reply)
                .map_err(|e| TasksError::Sandbox(format!("unreadable harness reply: {e}"))),
            None => Ok(Run::NoReply(match status {
                Some(s) => format!("the sandboxed python ended without a verdict ({s})"),
                None => "the sandboxed python ended without a verdict".into(),
            })),
        }
    }
}

enum Event {
    PlusStarted,
    Over,
    Eof,
}

enum End {
    Finished,
    Over,
    TimedOut,
}

/// Reads the harness's channel to its end (or past `cap` bytes), reporting the start of the
/// plus phase as soon as it is seen.
fn read_harness(
    stdout: Option<std::process::ChildStdout>,
    cap: usize,
    marker: &[u8],
    tx: &std::sync::mpsc::Sender<Event>,
) -> Vec<u8> {
    let mut buf = Vec::new();
    let Some(mut out) = stdout else {
        let _ = tx.send(Event::Eof);
        return buf;
    };
    let mut chunk = [0u8; 8192];
    let mut seen_plus = false;
    loop {
        match out.read(&mut chunk) {
            Ok(0) | Err(_) => {
                let _ = tx.send(Event::Eof);
                return buf;
            }
            Ok(n) => {
                let from = buf.len().saturating_sub(marker.len());
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > cap {
                    let _ = tx.send(Event::Over);
                    return buf;
                }
                if !seen_plus && buf[from..].windows(marker.len()).any(|w| w == marker) {
                    seen_plus = true;
                    let _ = tx.send(Event::PlusStarted);
                }
            }
        }
    }
}

enum Run {
    Reply(serde_json::Value),
    /// Killed at the deadline, during the plus phase or before it.
    TimedOut {
        in_plus: bool,
        after: Duration,
    },
    NoReply(String),
}

fn unshare_works() -> bool {
    static WORKS: OnceLock<bool> = OnceLock::new();
    *WORKS.get_or_init(|| {
        let ok = Command::new("unshare")
            .args(["--net", "--pid", "--fork", "--kill-child", "true"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            tracing::warn!(
                "unshare --net --pid is not available here: sandboxed programs keep the host network namespace (sockets are still refused in-process)"
            );
        }
        ok
    })
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish()
}

/// `f` over `items` on `threads` threads, results in input order.
fn parallel_map<T: Sync, R: Send>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> R + Sync,
) -> Vec<R> {
    let next = AtomicUsize::new(0);
    let slots: Vec<std::sync::Mutex<Option<R>>> =
        items.iter().map(|_| Default::default()).collect();
    std::thread::scope(|s| {
        for _ in 0..threads.clamp(1, items.len().max(1)) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    *slots[i]
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .filter_map(|m| {
            m.into_inner()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
        })
        .collect()
}

/// The program to grade from a chat model's `response` to `task`'s prompt.
///
/// The code is the first fenced block (```` ```python ```` or ```` ``` ````) that defines the
/// entry point, else the first fenced block, else the whole response. If it defines the entry
/// point, the program is the prompt (for its imports and helper functions) followed by the
/// code, whose definition replaces the prompt's; otherwise the code is taken as the body that
/// completes the prompt.
pub fn program_from_response(task: &HumanEvalTask, response: &str) -> String {
    let def = format!("def {}(", task.entry_point);
    let blocks = fenced_blocks(response);
    let code = blocks
        .iter()
        .find(|b| b.contains(&def))
        .or(blocks.first())
        .map(|s| s.as_str())
        .unwrap_or(response);
    if code.contains(&def) {
        format!("{}\n\n{}\n", task.prompt.trim_end(), code.trim_end())
    } else {
        format!("{}{}\n", task.prompt, code.trim_end())
    }
}

/// The contents of the ```` ``` ```` fenced blocks of `text`, in order; an unclosed last fence
/// runs to the end of the text.
pub fn fenced_blocks(text: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if trimmed.starts_with("```") {
            match current.take() {
                Some(b) => blocks.push(b),
                None => current = Some(String::new()),
            }
        } else if let Some(b) = current.as_mut() {
            b.push_str(line);
            b.push('\n');
        }
    }
    if let Some(b) = current
        && !b.trim().is_empty()
    {
        blocks.push(b);
    }
    blocks
}
