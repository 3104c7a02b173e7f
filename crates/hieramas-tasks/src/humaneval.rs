//! HumanEval+ grading with evalplus semantics; each program runs in a bubblewrap sandbox and
//! the verdict is decided here, outside it.
//!
//! The sandboxed runner (`harness.py`, untrusted: the program shares its process) only runs the
//! program on the task's public inputs, base then plus, and streams back each output in a tagged
//! encoding of builtin types on a pipe of its own (fd 3; stdout goes to /dev/null). This module
//! compares each output with the expected one (Python `==` on builtins, then numpy-style
//! `allclose` for floats, the `find_zero` oracle; see [`crate::pyvalue`]), in order, one output per
//! input, and stops the sandbox at the first failure. Expected outputs never enter the sandbox:
//! they come from the canonical solutions, run once per task in the same sandbox and cached as
//! JSON under the cache directory, each file's sha256 kept in an index beside that directory
//! (`<cache dir>.index.json`) and checked before use.
//!
//! Isolation comes from the kernel: bubblewrap gives each run new user, PID, network, IPC and
//! mount namespaces (uid 65534 inside; as root, a host uid of its own per parallel slot), a
//! size-capped tmpfs as /tmp and working directory (the only writable place), read-only /usr,
//! a new /proc, no capabilities, and rlimits (address space, CPU, file size, processes). The
//! whole PID namespace is killed at the phase deadline or the first failure. Without a working
//! bubblewrap the grader refuses to run programs unless `SandboxOptions::allow_unsandboxed`.

use std::collections::HashMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

use crate::TasksError;
use crate::data::HumanEvalTask;
use crate::pyvalue::{Checker, Expected, Py};
pub use crate::sandbox::Isolation;
use crate::sandbox::{self, Event, Limits};

const HARNESS: &str = include_str!("harness.py");
const CACHE_FORMAT: &str = "hieramas-humaneval-expected-v2";

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
    /// The interpreter (default `/usr/bin/python3` where it exists, else `python3` on `$PATH`).
    pub python: PathBuf,
    /// bubblewrap (default `bwrap`, looked up on `$PATH`).
    pub bwrap: PathBuf,
    /// Floor of the per-input time limit, seconds (evalplus: 1).
    pub min_time_limit: f64,
    /// Per-input limit = this × the canonical run time (evalplus: 4).
    pub time_factor: f64,
    /// Cap on the summed limits of one part (base or plus), seconds (evalplus: 60).
    pub part_time_cap: f64,
    pub address_space_bytes: u64,
    pub file_size_bytes: u64,
    /// RLIMIT_NPROC of the sandbox (threads count too).
    pub processes: u64,
    /// Size of the sandbox's tmpfs (its /tmp and working directory).
    pub tmpfs_bytes: u64,
    /// Most bytes read back on the result channel, beyond twice the expected outputs' size.
    pub max_output_bytes: usize,
    /// Programs run at once.
    pub parallelism: usize,
    /// Run programs as plain processes (rlimits only) where bubblewrap cannot run; every verdict
    /// then says `sandboxed: false`. Off by default: the grader refuses instead.
    pub allow_unsandboxed: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        let system = Path::new("/usr/bin/python3");
        SandboxOptions {
            python: if system.exists() {
                system.to_path_buf()
            } else {
                PathBuf::from("python3")
            },
            bwrap: PathBuf::from("bwrap"),
            min_time_limit: 1.0,
            time_factor: 4.0,
            part_time_cap: 60.0,
            address_space_bytes: 4 << 30,
            file_size_bytes: 16 << 20,
            processes: 32,
            tmpfs_bytes: 64 << 20,
            max_output_bytes: 1 << 20,
            parallelism: std::thread::available_parallelism().map_or(2, |n| n.get()),
            allow_unsandboxed: false,
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
    /// Whether the program ran in the bubblewrap sandbox (false only with `allow_unsandboxed`
    /// where bubblewrap cannot run).
    #[serde(default)]
    pub sandboxed: bool,
}

impl Outcome {
    /// The verdict on a task's reference program: it passes base and plus by definition.
    pub fn reference(sandboxed: bool) -> Outcome {
        let pass = PartResult {
            status: Status::Pass,
            failed_input: None,
            error: None,
        };
        Outcome {
            base: pass.clone(),
            plus: pass,
            sandboxed,
        }
    }

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
    fn pass() -> PartResult {
        PartResult {
            status: Status::Pass,
            failed_input: None,
            error: None,
        }
    }
}

/// What the canonical solution gave, per part: outputs and run times.
struct Reference {
    outputs: [Vec<Expected>; 2],
    times: [Vec<f64>; 2],
    /// Size of the encoded outputs (the result channel's cap scales with it).
    bytes: usize,
    /// The inputs as JSON values, for the `find_zero` oracle only.
    inputs: Option<[Vec<Value>; 2]>,
}

#[derive(Serialize, Deserialize)]
struct CachedPart {
    outputs: Vec<Value>,
    times: Vec<f64>,
}

#[derive(Serialize, Deserialize)]
struct CacheFile {
    format: String,
    task_id: String,
    base: CachedPart,
    plus: CachedPart,
}

/// One message of the runner.
enum Msg {
    /// The output (tagged) and the run time in seconds.
    Out(Value, f64),
    Err {
        text: String,
        loading: bool,
    },
    Timeout {
        loading: bool,
    },
    Malformed(String),
}

impl Msg {
    fn parse(line: &[u8]) -> Msg {
        let Ok(v) = serde_json::from_slice::<Value>(line) else {
            return Msg::Malformed("a result line that is not JSON".into());
        };
        let loading = v["load"] == Value::Bool(true);
        match v["k"].as_str() {
            Some("out") if v["t"].is_number() && v.get("v").is_some() => {
                let t = v["t"].as_f64().unwrap_or(0.0);
                let mut v = v;
                Msg::Out(v["v"].take(), t)
            }
            Some("err") => Msg::Err {
                text: v["e"]
                    .as_str()
                    .unwrap_or("an error")
                    .chars()
                    .take(400)
                    .collect(),
                loading,
            },
            Some("timeout") => Msg::Timeout { loading },
            _ => Msg::Malformed("a malformed result line".into()),
        }
    }
}

/// How a run ended.
enum RunEnd {
    /// The callback stopped it.
    Stopped,
    /// The result channel ended first.
    Eof { detail: String },
    /// The result channel carried more than its cap.
    Over,
    /// Killed at a phase deadline.
    TimedOut { after: Duration },
    /// The sandbox could not be started.
    NotStarted(String),
}

/// Whether `solution` is the task's reference program: prompt + canonical solution, up to
/// whitespace at the very end (which changes nothing a program does).
pub fn is_reference_program(task: &HumanEvalTask, solution: &str) -> bool {
    let solution = solution.trim_end();
    let canonical = task.canonical_solution.trim_end();
    solution.len() == task.prompt.len() + canonical.len()
        && solution.starts_with(task.prompt.as_str())
        && solution.ends_with(canonical)
}

/// Grades programs against the HumanEval+ tasks.
pub struct Grader {
    tasks: HashMap<String, HumanEvalTask>,
    cache_dir: PathBuf,
    opts: SandboxOptions,
    references: Mutex<HashMap<String, Arc<Reference>>>,
    /// Verdicts by sha256(task id, program): an identical program of a task is run once per
    /// grader (only verdicts the program decided: no timeout, no sandbox failure).
    verdicts: Mutex<HashMap<[u8; 32], Outcome>>,
    /// Programs run in the sandbox so far.
    runs: AtomicUsize,
    isolation: OnceLock<Result<Isolation, String>>,
    /// Busy parallel slots (each has its own host uid when running as root).
    slots: Mutex<Vec<bool>>,
    /// Serialises updates of the cache index.
    index: Mutex<()>,
}

struct Slot<'a> {
    slots: &'a Mutex<Vec<bool>>,
    index: usize,
}

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        self.slots.lock().unwrap_or_else(PoisonError::into_inner)[self.index] = false;
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Grader {
    /// `cache_dir` holds the expected outputs (one JSON file per task, made on first use).
    /// Nothing runs yet: [`Grader::isolation`] (called by `prepare` and `grade`) probes the
    /// sandbox once.
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
            isolation: OnceLock::new(),
            slots: Default::default(),
            index: Mutex::new(()),
        }
    }

    /// Programs this grader has run in the sandbox (identical programs of a task run once).
    pub fn sandbox_runs(&self) -> usize {
        self.runs.load(Ordering::Relaxed)
    }

    pub fn task(&self, task_id: &str) -> Option<&HumanEvalTask> {
        self.tasks.get(task_id)
    }

    /// How programs are isolated here, found once by running a trivial program in bubblewrap.
    /// An error (naming what is missing) where bubblewrap cannot run, unless
    /// `allow_unsandboxed`, which gives [`Isolation::Unsandboxed`] (with a warning).
    pub fn isolation(&self) -> Result<Isolation, TasksError> {
        self.isolation
            .get_or_init(|| match self.probe() {
                Ok(()) => Ok(Isolation::Bubblewrap),
                Err(why) if self.opts.allow_unsandboxed => {
                    tracing::warn!(
                        "programs run UNSANDBOXED (rlimits only, with this user's files and network): {why}"
                    );
                    Ok(Isolation::Unsandboxed)
                }
                Err(why) => Err(why),
            })
            .clone()
            .map_err(TasksError::NoSandbox)
    }

    fn probe(&self) -> Result<(), String> {
        let unsandboxed = "or allow unsandboxed runs (`--allow-unsandboxed`, \
                           SandboxOptions::allow_unsandboxed)";
        let Some(_) = sandbox::which(&self.opts.bwrap) else {
            return Err(format!(
                "bubblewrap ({}) not found on PATH: install the Debian package bubblewrap, {unsandboxed}",
                self.opts.bwrap.display()
            ));
        };
        let Some(python) = sandbox::which(&self.opts.python) else {
            return Err(format!("python not found: {}", self.opts.python.display()));
        };
        let inputs = [RawValue::from_string("[]".into()).map_err(|e| e.to_string())?];
        let mut got = None;
        let end = self.execute(
            Isolation::Bubblewrap,
            "def f():\n    return 41 + 1\n",
            "f",
            &inputs.iter().map(|b| &**b).collect::<Vec<_>>(),
            &[],
            0.0,
            &[],
            None,
            &[(1, Duration::from_secs(30))],
            1 << 16,
            |_, m| {
                got = Some(m);
                ControlFlow::Break(())
            },
        );
        let why = match (end.0, got) {
            (RunEnd::Stopped, Some(Msg::Out(v, ..))) if v == serde_json::json!(["i", "0x2a"]) => {
                return Ok(());
            }
            (RunEnd::NotStarted(e), _) => e,
            (RunEnd::Eof { detail }, _) => detail,
            (RunEnd::TimedOut { .. }, _) => "the probe timed out".into(),
            _ => "the probe program did not answer as expected".into(),
        };
        Err(format!(
            "bubblewrap cannot run {} in a sandbox here ({why}); user namespaces may be disabled \
             (see /proc/sys/kernel/unprivileged_userns_clone, /proc/sys/user/max_user_namespaces), \
             {unsandboxed}",
            python.display()
        ))
    }

    /// Runs the canonical solutions of all tasks whose expected outputs are not cached yet.
    pub fn prepare(&self) -> Result<(), TasksError> {
        self.isolation()?;
        let ids: Vec<&String> = self.tasks.keys().collect();
        let results = parallel_map(&ids, self.opts.parallelism, |id| {
            self.reference(id).map(drop)
        });
        results.into_iter().collect()
    }

    /// Grades `solution` (a whole program: prompt + completion) on task `task_id`. The verdict
    /// on a program this grader has already run to a decision is reused.
    ///
    /// The task's own reference program (prompt + canonical solution, trailing whitespace
    /// aside) passes without another run: its outputs *are* the expected outputs, made by
    /// running it in the sandbox (and cached) before anything is graded. So its verdict never
    /// depends on a deadline under a loaded CPU — the reason the SIMULATED HumanEval+ results
    /// (whose right answers are the reference programs) drifted between machines.
    pub fn grade(&self, task_id: &str, solution: &str) -> Result<Outcome, TasksError> {
        if let Some(task) = self.tasks.get(task_id)
            && is_reference_program(task, solution)
        {
            let isolation = self.isolation()?;
            self.reference(task_id)?;
            return Ok(Outcome::reference(isolation == Isolation::Bubblewrap));
        }
        let mut h = Sha256::new();
        h.update(task_id.as_bytes());
        h.update([0u8]);
        h.update(solution.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        let known = self
            .verdicts
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .cloned();
        if let Some(o) = known {
            return Ok(o);
        }
        let (outcome, decided) = self.run_program(task_id, solution)?;
        if decided {
            self.verdicts
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert(key, outcome.clone());
        }
        Ok(outcome)
    }

    /// Grades many (task id, program) pairs in parallel, in order; `on_done` is called after each.
    pub fn grade_many(
        &self,
        samples: &[(String, String)],
        on_done: &(dyn Fn(usize) + Sync),
    ) -> Vec<Result<Outcome, TasksError>> {
        // Longest first (by the canonical solution's run time, known once its expected outputs
        // are): a long task started last would leave the other workers idle at the end.
        let cost = |id: &str| {
            self.lock()
                .get(id)
                .map_or(f64::INFINITY, |r| r.times.iter().flatten().sum::<f64>())
        };
        let mut order: Vec<usize> = (0..samples.len()).collect();
        order.sort_by(|&a, &b| cost(&samples[b].0).total_cmp(&cost(&samples[a].0)));
        let results = parallel_map(&order, self.opts.parallelism, |&i| {
            let (id, code) = &samples[i];
            let r = self.grade(id, code);
            on_done(1);
            r
        });
        let mut by_input: Vec<Option<Result<Outcome, TasksError>>> =
            samples.iter().map(|_| None).collect();
        for (i, r) in order.into_iter().zip(results) {
            by_input[i] = Some(r);
        }
        by_input
            .into_iter()
            .map(|r| {
                r.unwrap_or_else(|| Err(TasksError::Sandbox("a sample was not graded".into())))
            })
            .collect()
    }

    fn limit(&self, t: f64) -> f64 {
        self.opts.min_time_limit.max(self.opts.time_factor * t)
    }

    /// Runs one program; `true` with the outcome when the program decided it (no deadline,
    /// no sandbox failure).
    fn run_program(&self, task_id: &str, solution: &str) -> Result<(Outcome, bool), TasksError> {
        let isolation = self.isolation()?;
        let task = self
            .tasks
            .get(task_id)
            .ok_or_else(|| TasksError::UnknownTask(task_id.to_string()))?;
        let reference = self.reference(task_id)?;
        self.runs.fetch_add(1, Ordering::Relaxed);
        let inputs = all_inputs(task)?;
        let n_base = reference.outputs[0].len();
        let n_plus = reference.outputs[1].len();
        if inputs.len() != n_base + n_plus {
            return Err(TasksError::Sandbox(format!(
                "{task_id}: the cached expected outputs do not match the inputs"
            )));
        }
        let limits: Vec<f64> = reference
            .times
            .iter()
            .flatten()
            .map(|&t| self.limit(t))
            .collect();
        // evalplus: each part may take min(cap, sum of its per-input limits) + 1 s; starting the
        // sandbox and loading the program get 2 s more in the first phase.
        let part = |ls: &[f64]| ls.iter().sum::<f64>().min(self.opts.part_time_cap) + 1.0;
        let first = part(&limits[..n_base]) + 2.0;
        let plus = part(&limits[n_base..]);
        let cap = self.opts.max_output_bytes + 2 * reference.bytes;
        let digests: Vec<usize> = reference
            .outputs
            .iter()
            .flatten()
            .enumerate()
            .filter(|(_, e)| matches!(e, Expected::Digest(_)))
            .map(|(i, _)| i)
            .collect();

        let find_zero = task.entry_point == "find_zero";
        let mut checkers = [0, 1].map(|_| Checker {
            atol: task.atol,
            find_zero,
        });
        let null = Value::Null;
        // (part, failed input, status, error) of the first failure.
        let mut failure: Option<(usize, Option<usize>, Status, String)> = None;
        let mut done = false;
        let end = self.execute(
            isolation,
            solution,
            &task.entry_point,
            &inputs,
            &limits,
            first,
            &digests,
            None,
            &[
                (n_base, Duration::from_secs_f64(first)),
                (n_plus, Duration::from_secs_f64(plus)),
            ],
            cap,
            |i, msg| {
                let (p, j) = if i < n_base { (0, i) } else { (1, i - n_base) };
                let fail = match msg {
                    Msg::Out(v, ..) => {
                        let checked = Py::decode(&v)
                            .map_err(|e| format!("malformed output ({e})"))
                            .and_then(|out| {
                                let input = reference
                                    .inputs
                                    .as_ref()
                                    .and_then(|ins| ins[p].get(j))
                                    .unwrap_or(&null);
                                checkers[p].check(input, &out, &reference.outputs[p][j])
                            });
                        match checked {
                            Ok(()) => {
                                if i + 1 == n_base + n_plus {
                                    done = true;
                                    return ControlFlow::Break(());
                                }
                                return ControlFlow::Continue(());
                            }
                            Err(e) => (Some(j), Status::Fail, e),
                        }
                    }
                    Msg::Err { text, loading } => {
                        (if loading { None } else { Some(j) }, Status::Fail, text)
                    }
                    Msg::Timeout { loading: true } => (
                        None,
                        Status::Timeout,
                        "loading the program ran past its time limit".into(),
                    ),
                    Msg::Timeout { loading: false } => (
                        Some(j),
                        Status::Timeout,
                        format!("exceeded {:.2} s on this input", limits[i]),
                    ),
                    Msg::Malformed(e) => (Some(j), Status::Fail, e),
                };
                failure = Some((p, fail.0, fail.1, fail.2));
                ControlFlow::Break(())
            },
        );
        let sandboxed = isolation == Isolation::Bubblewrap;
        let outcome = |p: usize, part: PartResult| {
            if p == 0 {
                Outcome {
                    base: part,
                    plus: PartResult::skipped(),
                    sandboxed,
                }
            } else {
                Outcome {
                    base: PartResult::pass(),
                    plus: part,
                    sandboxed,
                }
            }
        };
        let (end, seen) = end;
        Ok(match end {
            RunEnd::Stopped if done => (
                Outcome {
                    base: PartResult::pass(),
                    plus: PartResult::pass(),
                    sandboxed,
                },
                true,
            ),
            RunEnd::Stopped => {
                let (p, at, status, error) = failure.unwrap_or((
                    0,
                    None,
                    Status::Fail,
                    "the run stopped without a verdict".into(),
                ));
                let decided = status != Status::Timeout;
                let part = PartResult {
                    status,
                    failed_input: at,
                    error: Some(error),
                };
                (outcome(p, part), decided)
            }
            other => {
                // The run ended before the output of input `seen` (all before it were right).
                let (p, j) = if seen < n_base {
                    (0, seen)
                } else {
                    (1, seen - n_base)
                };
                let (status, error, decided) = match other {
                    RunEnd::Eof { detail } => (
                        Status::Fail,
                        format!("the program ended without an output for this input ({detail})"),
                        true,
                    ),
                    RunEnd::Over => (
                        Status::Fail,
                        format!("the program wrote more than {cap} bytes to the result channel"),
                        true,
                    ),
                    RunEnd::TimedOut { after } => (
                        Status::Timeout,
                        format!(
                            "the program ran past its deadline and was killed after {:.1} s",
                            after.as_secs_f64()
                        ),
                        false,
                    ),
                    RunEnd::NotStarted(e) => {
                        return Err(TasksError::Sandbox(format!(
                            "cannot start the sandbox: {e}"
                        )));
                    }
                    RunEnd::Stopped => unreachable!("handled above"),
                };
                let part = PartResult {
                    status,
                    failed_input: Some(j),
                    error: Some(error),
                };
                (outcome(p, part), decided)
            }
        })
    }

    fn acquire_slot(&self) -> Slot<'_> {
        let mut s = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        let index = match s.iter().position(|busy| !busy) {
            Some(i) => i,
            None => {
                s.push(false);
                s.len() - 1
            }
        };
        s[index] = true;
        Slot {
            slots: &self.slots,
            index,
        }
    }

    /// Runs `code` in the runner on `inputs`, feeding each message to `on_msg` (with the number
    /// of messages before it) until it breaks, the channel ends, or a deadline passes.
    /// `phases`: (messages, time): the first phase's deadline runs from the start, each next
    /// one from the message that ended the previous phase. Returns how it ended and how many
    /// messages `on_msg` accepted (continued after).
    #[allow(clippy::too_many_arguments)]
    fn execute(
        &self,
        isolation: Isolation,
        code: &str,
        entry_point: &str,
        inputs: &[&RawValue],
        limits: &[f64],
        load_limit: f64,
        digests: &[usize],
        auto_digest: Option<(usize, bool)>,
        phases: &[(usize, Duration)],
        cap: usize,
        mut on_msg: impl FnMut(usize, Msg) -> ControlFlow<()>,
    ) -> (RunEnd, usize) {
        let total: f64 = phases.iter().map(|p| p.1.as_secs_f64()).sum();
        // Serialised from a struct, not `json!`: the inputs stay verbatim (a `Value` would turn
        // big ints into floats).
        #[derive(Serialize)]
        struct Request<'a> {
            code: &'a str,
            entry_point: &'a str,
            inputs: &'a [&'a RawValue],
            limits: &'a [f64],
            load_limit: f64,
            digests: &'a [usize],
            auto_digest: Option<(usize, bool)>,
        }
        let request = Request {
            code,
            entry_point,
            inputs,
            limits,
            load_limit,
            digests,
            auto_digest,
        };
        let request = match serde_json::to_vec(&request) {
            Ok(r) => r,
            Err(e) => return (RunEnd::NotStarted(e.to_string()), 0),
        };
        let limits = Limits {
            address_space: self.opts.address_space_bytes,
            file_size: self.opts.file_size_bytes,
            cpu_seconds: total.ceil() as u64 + 1,
            processes: self.opts.processes,
            tmpfs_bytes: self.opts.tmpfs_bytes,
        };
        let bwrap = sandbox::which(&self.opts.bwrap);
        let python = sandbox::which(&self.opts.python).unwrap_or_else(|| self.opts.python.clone());
        let slot = self.acquire_slot();
        let started = Instant::now();
        let running = match sandbox::start(
            isolation,
            bwrap.as_deref(),
            &python,
            HARNESS,
            request,
            &limits,
            slot.index,
            cap,
        ) {
            Ok(r) => r,
            Err(e) => return (RunEnd::NotStarted(e.to_string()), 0),
        };
        let mut phase = 0;
        let mut phase_end = phases.first().map_or(0, |p| p.0);
        let mut deadline = started + phases.first().map_or(Duration::ZERO, |p| p.1);
        let mut seen = 0;
        let end = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match running.events.recv_timeout(left) {
                Ok(Event::Line(line)) => {
                    if on_msg(seen, Msg::parse(&line)).is_break() {
                        break RunEnd::Stopped;
                    }
                    seen += 1;
                    while seen >= phase_end && phase + 1 < phases.len() {
                        phase += 1;
                        phase_end += phases[phase].0;
                        deadline = Instant::now() + phases[phase].1;
                    }
                }
                Ok(Event::Over) => break RunEnd::Over,
                Ok(Event::Eof) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                    break RunEnd::Eof {
                        detail: String::new(),
                    };
                }
                Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                    break RunEnd::TimedOut {
                        after: started.elapsed(),
                    };
                }
            }
        };
        let early_err = running.stderr_now();
        let (status, stderr) = running.finish();
        drop(slot);
        let end = match end {
            RunEnd::Eof { .. } => {
                let err = if stderr.is_empty() { early_err } else { stderr };
                let tail: String = {
                    let t: Vec<char> = err.chars().collect();
                    t[t.len().saturating_sub(300)..].iter().collect()
                };
                RunEnd::Eof {
                    detail: match status {
                        Some(s) if tail.is_empty() => format!("{s}"),
                        Some(s) => format!("{s}; stderr: {tail}"),
                        None => tail,
                    },
                }
            }
            e => e,
        };
        (end, seen)
    }

    fn key(task: &HumanEvalTask) -> String {
        let mut h = Sha256::new();
        for part in [
            CACHE_FORMAT,
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

    fn file_name(task: &HumanEvalTask) -> String {
        format!(
            "{}-{}.json",
            task.task_id.replace('/', "_"),
            Self::key(task)
        )
    }

    /// The index of the cache files' sha256, beside the cache directory (not in it).
    pub fn index_path(&self) -> PathBuf {
        let name = self.cache_dir.file_name().map_or_else(
            || "humaneval-plus".into(),
            |n| n.to_string_lossy().to_string(),
        );
        self.cache_dir.with_file_name(format!("{name}.index.json"))
    }

    fn read_index(&self) -> HashMap<String, String> {
        std::fs::read(self.index_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Records `name`'s sha256 in the index, and forgets (and deletes) `stale` files.
    fn record_in_index(&self, name: &str, sha: &str, stale: &[String]) -> Result<(), TasksError> {
        let _guard = self.index.lock().unwrap_or_else(PoisonError::into_inner);
        let path = self.index_path();
        let mut index = self.read_index();
        index.insert(name.to_string(), sha.to_string());
        for old in stale {
            index.remove(old);
            let _ = std::fs::remove_file(self.cache_dir.join(old));
        }
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        let body =
            serde_json::to_vec_pretty(&index).map_err(|e| TasksError::Sandbox(e.to_string()))?;
        std::fs::write(&tmp, body).map_err(|e| TasksError::Io {
            path: tmp.clone(),
            source: e,
        })?;
        std::fs::rename(&tmp, &path).map_err(|e| TasksError::Io { path, source: e })
    }

    /// The cached expected outputs of `task`, if the file's sha256 is the one in the index.
    fn load_cached(&self, task: &HumanEvalTask) -> Option<CacheFile> {
        let name = Self::file_name(task);
        let path = self.cache_dir.join(&name);
        let bytes = std::fs::read(&path).ok()?;
        let sha = sha256_hex(&bytes);
        let recorded = self.read_index().remove(&name);
        if recorded.as_deref() != Some(sha.as_str()) {
            tracing::warn!(
                "{}: sha256 {sha} is not the one recorded in {} ({}): recomputing",
                path.display(),
                self.index_path().display(),
                recorded.as_deref().unwrap_or("none")
            );
            return None;
        }
        match serde_json::from_slice::<CacheFile>(&bytes) {
            Ok(c) if c.format == CACHE_FORMAT && c.task_id == task.task_id => Some(c),
            _ => {
                tracing::warn!("{}: unreadable: recomputing", path.display());
                None
            }
        }
    }

    fn reference(&self, task_id: &str) -> Result<Arc<Reference>, TasksError> {
        if let Some(r) = self.lock().get(task_id) {
            return Ok(r.clone());
        }
        let task = self
            .tasks
            .get(task_id)
            .ok_or_else(|| TasksError::UnknownTask(task_id.to_string()))?;
        let cached = match self.load_cached(task) {
            Some(c) => c,
            None => self.compute_reference(task)?,
        };
        let mut bytes = 0;
        let mut decode = |vs: &[Value]| -> Result<Vec<Expected>, TasksError> {
            let bad =
                |e: String| TasksError::Sandbox(format!("{task_id}: bad expected output: {e}"));
            vs.iter()
                .map(|v| {
                    if let Py::Digest(d) = Py::decode(v).map_err(bad)? {
                        return Ok(Expected::Digest(d));
                    }
                    bytes += v.to_string().len() + 32;
                    let py = Py::decode(v).map_err(bad)?;
                    if matches!(py, Py::Unsupported(_)) {
                        tracing::warn!(
                            "{task_id}: the canonical solution returns {py:?}: nothing can pass"
                        );
                    }
                    Ok(Expected::Value(py))
                })
                .collect()
        };
        let outputs = [decode(&cached.base.outputs)?, decode(&cached.plus.outputs)?];
        let inputs = if task.entry_point == "find_zero" {
            let parse = |raw: &RawValue| {
                serde_json::from_str::<Vec<Value>>(raw.get())
                    .map_err(|e| TasksError::Sandbox(format!("{task_id}: inputs: {e}")))
            };
            Some([parse(&task.base_input)?, parse(&task.plus_input)?])
        } else {
            None
        };
        let r = Arc::new(Reference {
            outputs,
            times: [cached.base.times, cached.plus.times],
            bytes,
            inputs,
        });
        self.lock().insert(task_id.to_string(), r.clone());
        Ok(r)
    }

    /// Runs the canonical solution (in the sandbox) and caches its outputs and times.
    fn compute_reference(&self, task: &HumanEvalTask) -> Result<CacheFile, TasksError> {
        let isolation = self.isolation()?;
        let task_id = &task.task_id;
        let inputs = all_inputs(task)?;
        let n_base = serde_json::from_str::<Vec<&RawValue>>(task.base_input.get())
            .map_err(|e| TasksError::Sandbox(format!("{task_id}: inputs: {e}")))?
            .len();
        let mut outs = Vec::with_capacity(inputs.len());
        let mut times = Vec::with_capacity(inputs.len());
        let mut failed = None;
        let (end, _) = self.execute(
            isolation,
            &format!("{}{}", task.prompt, task.canonical_solution),
            &task.entry_point,
            &inputs,
            &[],
            0.0,
            &[],
            // Long outputs of a part compared exactly come back as digests.
            Some((n_base, task.atol == 0.0 && task.entry_point != "find_zero")),
            &[(inputs.len(), Duration::from_secs(600))],
            1 << 30,
            |i, m| match m {
                Msg::Out(v, t) => {
                    outs.push(v);
                    times.push(t);
                    if outs.len() == inputs.len() {
                        ControlFlow::Break(())
                    } else {
                        ControlFlow::Continue(())
                    }
                }
                Msg::Err { text, .. } => {
                    failed = Some(format!("input {i}: {text}"));
                    ControlFlow::Break(())
                }
                Msg::Timeout { .. } => {
                    failed = Some(format!("input {i}: timeout"));
                    ControlFlow::Break(())
                }
                Msg::Malformed(e) => {
                    failed = Some(format!("input {i}: {e}"));
                    ControlFlow::Break(())
                }
            },
        );
        let why = match (end, failed) {
            (_, Some(f)) => f,
            (RunEnd::Stopped, None) if outs.len() == inputs.len() => String::new(),
            (RunEnd::Eof { detail }, None) => format!("it ended early ({detail})"),
            (RunEnd::Over, None) => "too much output".into(),
            (RunEnd::TimedOut { .. }, None) => "it ran past 600 s".into(),
            (RunEnd::NotStarted(e), None) => format!("cannot start the sandbox: {e}"),
            (RunEnd::Stopped, None) => "no verdict".into(),
        };
        if !why.is_empty() {
            return Err(TasksError::Sandbox(format!(
                "the canonical solution of {task_id} failed: {why}"
            )));
        }
        let plus_outputs = outs.split_off(n_base);
        let plus_times = times.split_off(n_base);
        let file = CacheFile {
            format: CACHE_FORMAT.into(),
            task_id: task_id.clone(),
            base: CachedPart {
                outputs: outs,
                times,
            },
            plus: CachedPart {
                outputs: plus_outputs,
                times: plus_times,
            },
        };
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |e| TasksError::Io { path, source: e }
        };
        std::fs::create_dir_all(&self.cache_dir).map_err(io(&self.cache_dir))?;
        let name = Self::file_name(task);
        let path = self.cache_dir.join(&name);
        let body = serde_json::to_vec(&file).map_err(|e| TasksError::Sandbox(e.to_string()))?;
        // Written beside, then renamed: a crash never leaves a half-written cache entry.
        let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
        std::fs::write(&tmp, &body).map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
        // Files of this task made by other versions (of the grader, the task or the data).
        let prefix = format!("{}-", task.task_id.replace('/', "_"));
        let stale: Vec<String> = std::fs::read_dir(&self.cache_dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().to_string())
                    .filter(|n| {
                        n.starts_with(&prefix)
                            && n.ends_with(".json")
                            && n.len() == name.len()
                            && *n != name
                    })
                    .collect()
            })
            .unwrap_or_default();
        self.record_in_index(&name, &sha256_hex(&body), &stale)?;
        Ok(file)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Reference>>> {
        self.references
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// The base then plus inputs of `task`, as raw JSON.
fn all_inputs(task: &HumanEvalTask) -> Result<Vec<&RawValue>, TasksError> {
    let mut v: Vec<&RawValue> = Vec::new();
    for raw in [&task.base_input, &task.plus_input] {
        v.extend(
            serde_json::from_str::<Vec<&RawValue>>(raw.get())
                .map_err(|e| TasksError::Sandbox(format!("{}: inputs: {e}", task.task_id)))?,
        );
    }
    Ok(v)
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
/// code, whose definition replaces the prompt's — or the code alone when it starts with the
/// whole prompt (it has them already); otherwise the code is taken as the body that completes
/// the prompt.
pub fn program_from_response(task: &HumanEvalTask, response: &str) -> String {
    let def = format!("def {}(", task.entry_point);
    let blocks = fenced_blocks(response);
    let code = blocks
        .iter()
        .find(|b| b.contains(&def))
        .or(blocks.first())
        .map(|s| s.as_str())
        .unwrap_or(response);
    if code.starts_with(task.prompt.as_str()) && code.contains(&def) {
        format!("{}\n", code.trim_end())
    } else if code.contains(&def) {
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
