//! `cargo xtask reproduce`: runs a profile of `reproduce.toml` — per part (a pool) and benchmark,
//! the paper's pipeline (stage 1 → stage-2 data → classifier → test evaluation of HieraMAS, its
//! ablations and the baselines), each step one resumable `hieramas` command — then writes the
//! report (`report.rs`). A finished step leaves `steps/<id>.json` with its exact command and is
//! not run again, so a rerun of a finished profile only rewrites the report.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use hieramas::Benchmark;
use hieramas::official::Official;
use serde::{Deserialize, Serialize};

const PROFILES: &str = include_str!("../reproduce.toml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Profiles {
    profile: BTreeMap<String, Profile>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: String,
    pub part: Vec<Part>,
}

impl Profile {
    /// The description on one line.
    pub fn description_line(&self) -> String {
        one_line(&self.description)
    }
}

pub fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// One pool's pipeline over its benchmarks.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Part {
    pub name: String,
    pub title: String,
    /// Its pool has SIMULATED models: every number of the part is labelled so. Set from the
    /// pool when the run starts (what a profile says is overwritten).
    #[serde(default)]
    pub simulated: bool,
    /// The pool file (absent: the embedded local pool, `pools/local.toml`).
    pub pool: Option<PathBuf>,
    /// The decision node's model, also the baselines' model (absent: the pool's first).
    pub decision: Option<String>,
    pub max_tokens: u32,
    pub benchmarks: Vec<Benchmark>,
    /// Stage 1 instead of the official settings.
    #[serde(default)]
    pub stage1: Stage1,
    /// Train tasks run for the stage-2 data (absent: the whole train split).
    pub stage2_tasks: Option<PerBenchmark>,
    /// Random DAGs per train task (absent: the official 5).
    pub graphs: Option<usize>,
    /// Test queries per benchmark (absent: the whole test split).
    pub test: Option<PerBenchmark>,
    /// MMLU: HieraMAS also on this many queries of `test_unseen` (subjects not in training).
    pub unseen: Option<usize>,
    pub concurrency: usize,
    pub samples: u32,
    pub methods: Vec<String>,
    /// The official behaviours this part restores (`hieramas::official`, e.g. `all`): its
    /// steps get `--official`, and with `checkpoints` the official stage-1 checkpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub official: Option<String>,
}

impl Part {
    /// The official behaviours this part restores (none: ours).
    pub fn official(&self) -> Official {
        self.official
            .as_deref()
            .and_then(|o| o.parse().ok())
            .unwrap_or_default()
    }
}

/// The suffix of a method's run on MMLU's unseen subjects (`test_unseen`).
pub const UNSEEN: &str = "@unseen";

/// The methods a part also runs on MMLU's unseen subjects (method §7): HieraMAS, and the
/// paper's unseen-subject baseline, self-consistency CoT with qwen3-80b (`sc@qwen3-80b`) —
/// each when the part runs it on the test split and asks for `unseen` queries.
pub fn unseen_methods(part: &Part, benchmark: Benchmark) -> Vec<String> {
    if benchmark != Benchmark::Mmlu || part.unseen.is_none() {
        return Vec::new();
    }
    ["hieramas", "sc@qwen3-80b"]
        .into_iter()
        .filter(|m| part.methods.iter().any(|x| x == m))
        .map(|m| format!("{m}{UNSEEN}"))
        .collect()
}

/// The suffix of a part run as the official code does, beside the part of the same name.
pub const OFFICIAL_SUFFIX: &str = "-official";

/// Adds, for every part of ours, the same part as the official code runs it
/// (`<part>-official`): the methods the official switches change (HieraMAS, its ablations, the
/// in-framework baselines); the standalone baselines are the same in both and run once.
pub fn add_official_parts(profile: &mut Profile, official: Official) {
    let copies: Vec<Part> = profile
        .part
        .iter()
        .filter(|p| p.official.is_none())
        .map(|p| Part {
            name: format!("{}{OFFICIAL_SUFFIX}", p.name),
            title: format!("{} — as the official code runs it ({official})", p.title),
            methods: p
                .methods
                .iter()
                .filter(|m| {
                    matches!(
                        Method::parse(m),
                        Ok(Method::Hieramas { .. } | Method::Mas { .. })
                    )
                })
                .cloned()
                .collect(),
            official: Some(official.to_string()),
            ..p.clone()
        })
        .collect();
    profile.part.extend(copies);
}

#[derive(Clone, Debug, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Stage1 {
    pub iterations: Option<usize>,
    pub batch_size: Option<usize>,
    pub width: Option<usize>,
    pub val_limit: Option<usize>,
}

#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(untagged)]
pub enum PerBenchmark {
    All(usize),
    Each(BTreeMap<Benchmark, usize>),
}

impl PerBenchmark {
    pub fn get(&self, benchmark: Benchmark) -> Option<usize> {
        match self {
            PerBenchmark::All(n) => Some(*n),
            PerBenchmark::Each(m) => m.get(&benchmark).copied(),
        }
    }
}

/// The profile called `name`.
pub fn profile(name: &str) -> Result<Profile> {
    let all: Profiles = toml::from_str(PROFILES).context("xtask/reproduce.toml")?;
    let names: Vec<&String> = all.profile.keys().collect();
    let p =
        all.profile.get(name).cloned().with_context(|| {
            format!("no profile {name:?} in xtask/reproduce.toml (have {names:?})")
        })?;
    for part in &p.part {
        for m in &part.methods {
            Method::parse(m).with_context(|| format!("profile {name}, part {}", part.name))?;
        }
    }
    Ok(p)
}

/// A method of a profile.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Method {
    /// HieraMAS, or one of its ablations (`fixed-llm`, `random-graph`); `candidates`: scoring
    /// this many candidate DAGs instead of the benchmark's official count (`hieramas:kN`,
    /// the paper's MMLU sweep over 50 / 200 / 500).
    Hieramas {
        ablation: Option<&'static str>,
        candidates: Option<usize>,
    },
    /// A fixed multi-agent system of one model (`--assign fixed:`, and the decision node).
    Mas {
        /// full, random (one seeded DAG shared by every query), chain or star.
        topology: String,
        /// `mas:` — the paper's in-framework baseline (method §7.1): one call per role (its
        /// persona and answer format), no proposers, no synthesis. `mas-w2:` — our
        /// propose–synthesise supernodes at the role set's W.
        one_call: bool,
        /// `@MODEL`: instead of the part's decision model.
        model: Option<String>,
    },
    /// single, cot, sc, debate or moa; `@MODEL` instead of the part's decision model.
    Baseline(String, Option<String>),
}

impl Method {
    /// HieraMAS (or an ablation) at the official candidate count.
    fn hieramas(ablation: Option<&'static str>) -> Method {
        Method::Hieramas {
            ablation,
            candidates: None,
        }
    }

    /// `hieramas[:fixed-llm|:random-graph|:kN]`, `mas:T[@MODEL]` (one call per role),
    /// `mas-w2:T[@MODEL]`, `single|cot|sc|debate|moa[@MODEL]`.
    pub fn parse(m: &str) -> Result<Method> {
        let unknown = || {
            anyhow::anyhow!(
                "unknown method {m:?} (hieramas, hieramas:fixed-llm, hieramas:random-graph, hieramas:kN (N candidate DAGs), mas:full|random|chain|star, mas-w2:…, single, cot, sc, debate, moa; mas and the baselines take @MODEL)"
            )
        };
        let (name, model) = match m.split_once('@') {
            Some((n, model)) if !model.is_empty() => (n, Some(model.to_string())),
            Some(_) => return Err(unknown()),
            None => (m, None),
        };
        Ok(match (name.split_once(':'), model) {
            (None, None) if name == "hieramas" => Method::hieramas(None),
            (Some(("hieramas", "fixed-llm")), None) => Method::hieramas(Some("fixed-llm")),
            (Some(("hieramas", "random-graph")), None) => Method::hieramas(Some("random-graph")),
            (Some(("hieramas", k)), None)
                if k.strip_prefix('k')
                    .and_then(|n| n.parse::<usize>().ok())
                    .is_some_and(|n| n > 0) =>
            {
                Method::Hieramas {
                    ablation: None,
                    candidates: k[1..].parse().ok(),
                }
            }
            (Some((kind @ ("mas" | "mas-w2"), t)), model)
                if matches!(t, "full" | "random" | "chain" | "star") =>
            {
                Method::Mas {
                    topology: t.to_string(),
                    one_call: kind == "mas",
                    model,
                }
            }
            (None, model) if matches!(name, "single" | "cot" | "sc" | "debate" | "moa") => {
                Method::Baseline(name.to_string(), model)
            }
            _ => return Err(unknown()),
        })
    }

    /// Needs the stage-1 selector / the classifier.
    fn needs(&self) -> (bool, bool) {
        match self {
            Method::Hieramas {
                ablation: Some("random-graph"),
                ..
            } => (true, false),
            Method::Hieramas { .. } => (true, true),
            _ => (false, false),
        }
    }
}

/// What a step does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Stage1,
    Data,
    Classifier,
    /// `hieramas export`: the trained system as a bundle (`<benchmark>/system`).
    Export,
    Eval,
}

/// One `hieramas` command of the pipeline.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Step {
    /// `<part>-<benchmark>-<name>`: its marker is `steps/<id>.json`.
    pub id: String,
    pub part: String,
    pub benchmark: Benchmark,
    pub kind: Kind,
    /// The method (eval steps), e.g. `hieramas`, `sc`; `hieramas@unseen` on test_unseen.
    pub method: Option<String>,
    pub args: Vec<String>,
    /// Steps whose outputs this one reads.
    pub after: Vec<String>,
}

/// How a step ended.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Done {
    pub args: Vec<String>,
    pub wall_s: f64,
    pub finished_at: u64,
}

/// How this invocation found or left a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// It ran now and finished.
    Ran,
    /// It had finished in an earlier invocation.
    Cached,
    Failed,
    /// An input step failed.
    Blocked,
}

impl Status {
    /// Failed, or blocked by a failed input.
    pub fn failed(self) -> bool {
        matches!(self, Status::Failed | Status::Blocked)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ran => "ran",
            Status::Cached => "cached",
            Status::Failed => "failed",
            Status::Blocked => "blocked",
        })
    }
}

/// A step, and how this invocation found or left it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Outcome {
    pub step: Step,
    pub status: Status,
    /// How long the step ran (in the earlier invocation when cached).
    pub wall_s: f64,
    pub error: Option<String>,
}

pub struct Options {
    pub root: PathBuf,
    pub data_dir: PathBuf,
    /// Replaces every part's pool.
    pub pool: Option<PathBuf>,
    pub profile_name: String,
    pub profile: Profile,
    pub run_dir: PathBuf,
    /// Test queries per benchmark instead of the profile's.
    pub limit: Option<usize>,
    /// The cap on what the whole run spends (USD).
    pub budget_usd: Option<f64>,
}

/// The folder of one part's benchmark: `<run>/<part>/<benchmark>`.
pub fn bench_dir(run: &Path, part: &str, benchmark: Benchmark) -> PathBuf {
    run.join(part).join(benchmark.name())
}

/// The eval log of `method` (file name without `:`).
pub fn eval_log(run: &Path, part: &str, benchmark: Benchmark, method: &str) -> PathBuf {
    bench_dir(run, part, benchmark)
        .join("logs")
        .join(format!("{}.jsonl", method.replace([':', '@'], "-")))
}

/// Every step of the profile, in order.
pub fn plan(o: &Options) -> Result<Vec<Step>> {
    let mut steps = Vec::new();
    for part in &o.profile.part {
        let methods: Vec<(String, Method)> = part
            .methods
            .iter()
            .map(|m| Ok((m.clone(), Method::parse(m)?)))
            .collect::<Result<_>>()?;
        for &b in &part.benchmarks {
            let p = BenchPlan::new(o, part, b);
            if methods.iter().any(|(_, m)| m.needs().0) {
                steps.push(p.stage1());
            }
            if methods.iter().any(|(_, m)| m.needs().1) {
                steps.extend(p.stage2());
                steps.push(p.export());
            }
            for (name, m, split, limit) in p.evals(&methods) {
                steps.push(p.eval(&name, &m, split, limit));
            }
        }
    }
    // `auto`: the pool's first model, resolved by the caller.
    Ok(steps)
}

/// The steps of one benchmark of a part: what they share.
struct BenchPlan<'a> {
    o: &'a Options,
    part: &'a Part,
    benchmark: Benchmark,
    /// `<run>/<part>/<benchmark>`.
    dir: PathBuf,
    /// The flags of the system every step runs.
    system: Vec<String>,
    embeddings: String,
}

impl<'a> BenchPlan<'a> {
    fn new(o: &'a Options, part: &'a Part, benchmark: Benchmark) -> BenchPlan<'a> {
        let pool = o
            .pool
            .clone()
            .or_else(|| part.pool.clone())
            .unwrap_or_else(|| PathBuf::from("pools/local.toml"));
        let mut system: Vec<String> = vec![
            "--benchmark".into(),
            benchmark.name().into(),
            "--pool".into(),
            pool.display().to_string(),
            "--max-tokens".into(),
            part.max_tokens.to_string(),
            "--data-dir".into(),
            o.data_dir.display().to_string(),
        ];
        if let Some(dm) = &part.decision {
            system.extend(["--decision".into(), dm.clone()]);
        }
        if let Some(o) = &part.official {
            system.extend(["--official".into(), o.clone()]);
        }
        BenchPlan {
            o,
            part,
            benchmark,
            dir: bench_dir(&o.run_dir, &part.name, benchmark),
            system,
            embeddings: o
                .run_dir
                .join("cache")
                .join("embeddings")
                .display()
                .to_string(),
        }
    }

    fn path(&self, p: &str) -> String {
        self.dir.join(p).display().to_string()
    }

    /// The stage-1 weights that stage-2 data (`inference` false) or the test runs read: the
    /// final ones; with the official `checkpoints` switch as the official pipeline (method §6):
    /// the validation-best for data generation and MMLU / HumanEval+ inference, iteration 10
    /// for MATH inference — each when the part's stage 1 makes it (validation on, 10
    /// iterations reached), else the final weights.
    fn stage1_checkpoint(&self, inference: bool) -> String {
        let s = &self.part.stage1;
        if self.part.official().checkpoints {
            let official =
                hieramas_reward::config::Stage1Config::builtin(self.benchmark.name()).ok();
            let iterations = s.iterations.or(official.as_ref().map(|c| c.iterations));
            let every = official.as_ref().map_or(1, |c| c.checkpoint_every.max(1));
            if inference && self.benchmark == Benchmark::Math {
                if iterations.is_some_and(|n| n >= 10) && 10 % every == 0 {
                    return self.path("stage1/iter10.safetensors");
                }
            } else if s.val_limit != Some(0) {
                return self.path("stage1/best.safetensors");
            }
        }
        self.path("stage1/selector.safetensors")
    }

    fn id(&self, name: &str) -> String {
        format!("{}-{}-{name}", self.part.name, self.benchmark.name())
    }

    fn step(
        &self,
        name: &str,
        kind: Kind,
        method: Option<String>,
        args: Vec<String>,
        after: Vec<String>,
    ) -> Step {
        Step {
            id: self.id(name),
            part: self.part.name.clone(),
            benchmark: self.benchmark,
            kind,
            method,
            args,
            after,
        }
    }

    /// `hieramas train stage1` with the part's stage-1 settings.
    fn stage1(&self) -> Step {
        let mut args: Vec<String> = vec!["train".into(), "stage1".into()];
        args.extend(self.system.iter().cloned());
        args.extend(["--embeddings".into(), self.embeddings.clone()]);
        args.extend(["--out".into(), self.path("stage1"), "--quiet".into()]);
        let s = &self.part.stage1;
        for (flag, v) in [
            ("--iterations", s.iterations),
            ("--batch-size", s.batch_size),
            ("--width", s.width),
            ("--val-limit", s.val_limit),
        ] {
            if let Some(v) = v {
                args.extend([flag.into(), v.to_string()]);
            }
        }
        self.step("stage1", Kind::Stage1, None, args, vec![])
    }

    /// `hieramas train stage2-data`, then `hieramas train stage2`.
    fn stage2(&self) -> [Step; 2] {
        let part = self.part;
        let mut args: Vec<String> = vec!["train".into(), "stage2-data".into()];
        args.extend(self.system.iter().cloned());
        args.extend(["--embeddings".into(), self.embeddings.clone()]);
        args.extend(["--stage1".into(), self.stage1_checkpoint(false)]);
        if let Some(n) = part
            .stage2_tasks
            .as_ref()
            .and_then(|t| t.get(self.benchmark))
        {
            args.extend(["--limit".into(), n.to_string()]);
        }
        if let Some(n) = part.graphs {
            args.extend(["--graphs".into(), n.to_string()]);
        }
        if let Some(w) = part.stage1.width {
            args.extend(["--width".into(), w.to_string()]);
        }
        args.extend(["--concurrency".into(), part.concurrency.to_string()]);
        args.extend(["--out".into(), self.path("stage2-data"), "--quiet".into()]);
        let fit = vec![
            "train".into(),
            "stage2".into(),
            "--data".into(),
            self.path("stage2-data"),
            "--out".into(),
            self.path("classifier"),
            "--quiet".into(),
        ];
        [
            self.step("data", Kind::Data, None, args, vec![self.id("stage1")]),
            self.step(
                "classifier",
                Kind::Classifier,
                None,
                fit,
                vec![self.id("data")],
            ),
        ]
    }

    /// `hieramas export`: stage 1 (the weights the test runs read) + the classifier as the
    /// bundle `<benchmark>/system`, served as `hieramas/<part>-<benchmark>`.
    fn export(&self) -> Step {
        let args = vec![
            "export".into(),
            "--stage1".into(),
            self.stage1_checkpoint(true),
            "--stage2".into(),
            self.path("classifier"),
            "-o".into(),
            self.path("system"),
            "--name".into(),
            format!("{}-{}", self.part.name, self.benchmark.name()),
        ];
        self.step(
            "export",
            Kind::Export,
            None,
            args,
            vec![self.id("stage1"), self.id("classifier")],
        )
    }

    /// Every eval of the part's methods on the test split (and HieraMAS on MMLU's unseen
    /// subjects when the part asks): `(name, method, split, limit)`.
    fn evals(
        &self,
        methods: &[(String, Method)],
    ) -> Vec<(String, Method, &'static str, Option<usize>)> {
        let (o, part) = (self.o, self.part);
        let test = o
            .limit
            .or_else(|| part.test.as_ref().and_then(|t| t.get(self.benchmark)));
        let mut evals: Vec<(String, Method, &str, Option<usize>)> = methods
            .iter()
            .map(|(name, m)| (name.clone(), m.clone(), "test", test))
            .collect();
        if let Some(n) = part.unseen {
            let n = o.limit.map_or(n, |l| l.min(n));
            for name in unseen_methods(part, self.benchmark) {
                let base = name.trim_end_matches(UNSEEN);
                if let Some((_, m)) = methods.iter().find(|(x, _)| x == base) {
                    evals.push((name, m.clone(), "test_unseen", Some(n)));
                }
            }
        }
        evals
    }

    /// `hieramas eval` of one method.
    fn eval(&self, name: &str, m: &Method, split: &str, limit: Option<usize>) -> Step {
        let part = self.part;
        let mut args: Vec<String> = vec!["eval".into()];
        args.extend(self.system.iter().cloned());
        args.extend(["--split".into(), split.into()]);
        if let Some(n) = limit {
            args.extend(["--limit".into(), n.to_string()]);
        }
        let mut after = Vec::new();
        // `auto`: the pool's first model, resolved by the caller.
        let model = || part.decision.clone().unwrap_or_else(|| "auto".into());
        match m {
            Method::Hieramas {
                ablation,
                candidates,
            } => {
                args.extend(["--method".into(), "hieramas".into()]);
                args.extend(["--stage1".into(), self.stage1_checkpoint(true)]);
                after.push(self.id("stage1"));
                if m.needs().1 {
                    args.extend([
                        "--stage2".into(),
                        self.path("classifier/classifier.safetensors"),
                    ]);
                    after.push(self.id("classifier"));
                }
                if let Some(x) = ablation {
                    args.extend(["--ablation".into(), x.to_string()]);
                }
                if let Some(k) = candidates {
                    args.extend(["--candidates".into(), k.to_string()]);
                }
                if let Some(w) = part.stage1.width {
                    args.extend(["--width".into(), w.to_string()]);
                }
                args.extend(["--embeddings".into(), self.embeddings.clone()]);
            }
            Method::Mas {
                topology,
                one_call,
                model: fixed,
            } => {
                args.extend(["--method".into(), "mas".into(), "--topology".into()]);
                args.push(topology.clone());
                // The in-framework baselines (method §7.1): one fixed model everywhere, the
                // decision node included.
                let m = fixed.clone().unwrap_or_else(model);
                args.extend(["--assign".into(), format!("fixed:{m}")]);
                if fixed.is_some() {
                    set_decision(&mut args, &m);
                }
                if *one_call {
                    args.extend(["--width".into(), "1".into()]);
                }
            }
            Method::Baseline(k, fixed) => {
                args.extend(["--method".into(), k.clone()]);
                let m = fixed.clone().unwrap_or_else(model);
                if matches!(k.as_str(), "single" | "cot" | "sc") {
                    args.extend(["--model".into(), m.clone()]);
                }
                if fixed.is_some() {
                    set_decision(&mut args, &m);
                }
                if k == "sc" {
                    args.extend(["--samples".into(), part.samples.to_string()]);
                }
                // The official debate: 3 agents of the one model (method §7.6), not the pool.
                if k == "debate" {
                    args.extend(["--assign".into(), format!("fixed:{m}")]);
                }
            }
        }
        args.extend(["--concurrency".into(), part.concurrency.to_string()]);
        let log = eval_log(&self.o.run_dir, &part.name, self.benchmark, name);
        args.extend(["--out".into(), log.display().to_string()]);
        self.step(
            &format!("eval-{}", name.replace([':', '@'], "-")),
            Kind::Eval,
            Some(name.to_string()),
            args,
            after,
        )
    }
}

/// Makes `--decision` of `args` (added when absent) `model`.
fn set_decision(args: &mut Vec<String>, model: &str) {
    match args.iter().position(|a| a == "--decision") {
        Some(i) if i + 1 < args.len() => args[i + 1] = model.to_string(),
        _ => args.extend(["--decision".into(), model.to_string()]),
    }
}

/// Runs every step not yet finished, then writes the report. Fails (after the report) when a
/// step did.
pub fn run(o: &Options, bin: &Path, first_model: &dyn Fn(&Part) -> Result<String>) -> Result<()> {
    let mut steps = plan(o)?;
    for s in &mut steps {
        let part = o
            .profile
            .part
            .iter()
            .find(|p| p.name == s.part)
            .context("a step of no part")?;
        if s.args.iter().any(|a| a == "auto" || a == "fixed:auto") {
            let m = first_model(part)?;
            for a in &mut s.args {
                if a == "auto" {
                    *a = m.clone();
                } else if a == "fixed:auto" {
                    *a = format!("fixed:{m}");
                }
            }
        }
    }
    let marks = o.run_dir.join("steps");
    std::fs::create_dir_all(&marks).with_context(|| format!("creating {}", marks.display()))?;
    let started = Instant::now();
    let mut outcomes: Vec<Outcome> = Vec::new();
    let total = steps.len();
    for (i, step) in steps.into_iter().enumerate() {
        let mark = marks.join(format!("{}.json", step.id));
        let done: Option<Done> = std::fs::read_to_string(&mark)
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok());
        let header = format!(
            "[{}/{total}] {} · {} · {}",
            i + 1,
            step.part,
            step.benchmark,
            step.method
                .clone()
                .unwrap_or_else(|| format!("{:?}", step.kind).to_lowercase())
        );
        if let Some(d) = done.filter(|d| d.args == step.args) {
            println!("{header}: done earlier ({:.0} s), kept", d.wall_s);
            outcomes.push(Outcome {
                step,
                status: Status::Cached,
                wall_s: d.wall_s,
                error: None,
            });
            continue;
        }
        if let Some(bad) = step.after.iter().find(|a| {
            outcomes
                .iter()
                .any(|o| &o.step.id == *a && o.status.failed())
        }) {
            println!("{header}: skipped, {bad} did not finish");
            outcomes.push(Outcome {
                error: Some(format!("{bad} did not finish")),
                step,
                status: Status::Blocked,
                wall_s: 0.0,
            });
            continue;
        }
        let mut args = step.args.clone();
        if let Some(cap) = o.budget_usd {
            // One ledger for the whole run: every step charges it, every attempt (retries and
            // calls of killed steps included) counts against the one cap.
            let ledger = budget_ledger(&o.run_dir);
            let spent = ledger_spent(&ledger)?;
            if spent >= cap {
                bail!(
                    "the budget of ${cap:.2} is spent (${spent:.4} so far, {}); rerun with a larger --budget-usd to go on",
                    ledger.display()
                );
            }
            if !matches!(step.kind, Kind::Classifier | Kind::Export) {
                args.extend([
                    "--budget-usd".into(),
                    format!("{cap}"),
                    "--budget-ledger".into(),
                    ledger.display().to_string(),
                ]);
            }
        }
        println!(
            "\n{header}   ({:.0} s so far)\n  $ {}",
            started.elapsed().as_secs_f64(),
            command_line(&step.args)
        );
        let t = Instant::now();
        let status = Command::new(bin)
            .args(&args)
            .current_dir(&o.root)
            .status()
            .with_context(|| format!("cannot start {}", bin.display()))?;
        let wall_s = t.elapsed().as_secs_f64();
        if status.success() {
            let d = Done {
                args: step.args.clone(),
                wall_s,
                finished_at: std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs()),
            };
            // Crash-safe: a step record is whole or absent (then the step runs again).
            hieramas::records::write_json_atomic(&mark, &d)
                .with_context(|| format!("writing {}", mark.display()))?;
            outcomes.push(Outcome {
                step,
                status: Status::Ran,
                wall_s,
                error: None,
            });
        } else {
            eprintln!("{header}: hieramas exited with {status}");
            outcomes.push(Outcome {
                step,
                status: Status::Failed,
                wall_s,
                error: Some(format!("hieramas exited with {status}")),
            });
        }
    }
    let wall = started.elapsed().as_secs_f64();
    crate::report::write(o, &outcomes, wall)?;
    let failed: Vec<&str> = outcomes
        .iter()
        .filter(|x| x.status.failed())
        .map(|x| x.step.id.as_str())
        .collect();
    if !failed.is_empty() {
        bail!(
            "{} of {} steps did not finish: {}; rerun the same command to resume them",
            failed.len(),
            outcomes.len(),
            failed.join(", ")
        );
    }
    Ok(())
}

pub fn command_line(args: &[String]) -> String {
    let quoted: Vec<String> = args
        .iter()
        .map(|a| {
            if a.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./:=@".contains(c))
            {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', r"'\''"))
            }
        })
        .collect();
    format!("hieramas {}", quoted.join(" "))
}

/// `results/<profile>-<pool>` unless named.
pub fn run_dir(root: &Path, name: Option<&str>, profile: &str, pool: Option<&Path>) -> PathBuf {
    let name = match (name, pool.and_then(|p| p.file_stem())) {
        (Some(n), _) => n.to_string(),
        (None, Some(stem)) => format!("{profile}-{}", stem.to_string_lossy()),
        (None, None) => profile.to_string(),
    };
    root.join("results").join(name)
}

/// The run's budget ledger (`hieramas_llm::budget`): every step with a budget charges it.
pub fn budget_ledger(run_dir: &Path) -> PathBuf {
    run_dir.join("budget.jsonl")
}

/// Dollars charged in a budget ledger so far (open reservations of killed steps in full).
pub fn ledger_spent(ledger: &Path) -> Result<f64> {
    let models = hieramas_llm::budget::ledger_summary(ledger)
        .with_context(|| format!("reading the budget ledger {}", ledger.display()))?;
    Ok(models
        .values()
        .map(|m| m.total())
        .sum::<hieramas_llm::Usd>()
        .as_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(profile: &str, limit: Option<usize>) -> Options {
        Options {
            root: PathBuf::from("/r"),
            data_dir: PathBuf::from("/d"),
            pool: None,
            profile_name: profile.into(),
            profile: self::profile(profile).unwrap(),
            run_dir: PathBuf::from("/r/results/x"),
            limit,
            budget_usd: None,
        }
    }

    #[test]
    fn profiles_parse_and_name_known_methods() {
        for name in ["default", "paper", "smoke", "mmlu-sweep"] {
            let p = profile(name).unwrap();
            assert!(!p.part.is_empty());
            for part in &p.part {
                assert!(!part.methods.is_empty() && !part.benchmarks.is_empty());
            }
        }
        assert!(profile("nope").unwrap_err().to_string().contains("default"));
        assert!(Method::parse("mas:bogus").is_err());
        assert!(Method::parse("hieramas:nope").is_err());
        assert_eq!(
            Method::parse("hieramas:fixed-llm").unwrap(),
            Method::hieramas(Some("fixed-llm"))
        );
        assert_eq!(
            Method::parse("hieramas:k500").unwrap(),
            Method::Hieramas {
                ablation: None,
                candidates: Some(500)
            }
        );
        for bad in ["hieramas:k0", "hieramas:k", "hieramas:kx"] {
            assert!(Method::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            Method::parse("mas:random@qwen3-80b").unwrap(),
            Method::Mas {
                topology: "random".into(),
                one_call: true,
                model: Some("qwen3-80b".into())
            }
        );
        assert_eq!(
            Method::parse("mas-w2:full").unwrap(),
            Method::Mas {
                topology: "full".into(),
                one_call: false,
                model: None
            }
        );
        assert_eq!(
            Method::parse("sc@qwen3-80b").unwrap(),
            Method::Baseline("sc".into(), Some("qwen3-80b".into()))
        );
        for bad in ["hieramas@x", "mas:full@", "single:x"] {
            assert!(Method::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_paper_baselines_make_one_call_per_role_of_one_model() {
        let o = options("default", None);
        let steps = plan(&o).unwrap();
        let args = |id: &str| {
            steps
                .iter()
                .find(|s| s.id == id)
                .unwrap_or_else(|| panic!("no step {id}"))
                .args
                .join(" ")
        };
        let full = args("sim-math-eval-mas-full");
        assert!(full.contains("--width 1"), "{full}");
        assert!(full.contains("--assign fixed:gpt-5-mini"), "{full}");
        let qwen = args("sim-math-eval-mas-random-qwen3-80b");
        assert!(qwen.contains("--width 1 "), "{qwen}");
        assert!(qwen.contains("--assign fixed:qwen3-80b"), "{qwen}");
        assert!(qwen.contains("--decision qwen3-80b"), "{qwen}");
        assert!(!qwen.contains("gpt-5-mini"), "{qwen}");
        let ours = args("sim-math-eval-mas-w2-full");
        assert!(!ours.contains("--width"), "{ours}");
        let sc = args("sim-mmlu-eval-sc-qwen3-80b");
        assert!(sc.contains("--model qwen3-80b"), "{sc}");
        // Debate: three agents of the one model, as the paper ran it.
        let debate = args("sim-mmlu-eval-debate");
        assert!(debate.contains("--assign fixed:gpt-5-mini"), "{debate}");
        assert!(args("sim-math-eval-moa").contains("--decision gpt-5-mini"));
        assert!(!args("sim-math-eval-moa").contains("--assign"));
    }

    #[test]
    fn the_plan_trains_before_it_evaluates_and_wires_outputs_to_inputs() {
        let o = options("default", None);
        let steps = plan(&o).unwrap();
        let ids: Vec<&str> = steps.iter().map(|s| s.id.as_str()).collect();
        // Unique ids, every dependency planned earlier.
        let unique: std::collections::HashSet<&&str> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for (i, s) in steps.iter().enumerate() {
            for a in &s.after {
                let j = ids.iter().position(|x| x == a).unwrap();
                assert!(j < i, "{} runs before its input {a}", s.id);
            }
        }
        let get = |id: &str| steps.iter().find(|s| s.id == id).unwrap();
        let s1 = get("sim-mmlu-stage1");
        let out = |s: &Step| s.args[s.args.iter().position(|a| a == "--out").unwrap() + 1].clone();
        let selector = format!("{}/selector.safetensors", out(s1));
        let data = get("sim-mmlu-data");
        assert!(
            data.args
                .windows(2)
                .any(|w| w[0] == "--stage1" && w[1] == selector)
        );
        assert!(data.args.windows(2).any(|w| w == ["--limit", "80"]));
        let h = get("sim-mmlu-eval-hieramas");
        assert!(h.args.windows(2).any(|w| w[0] == "--stage2"));
        assert_eq!(h.after, vec!["sim-mmlu-stage1", "sim-mmlu-classifier"]);
        // Each trained system is exported as a bundle.
        let e = get("sim-mmlu-export");
        assert_eq!(e.after, vec!["sim-mmlu-stage1", "sim-mmlu-classifier"]);
        assert!(
            e.args
                .windows(2)
                .any(|w| w[0] == "-o" && w[1].ends_with("mmlu/system"))
        );
        assert!(e.args.windows(2).any(|w| w == ["--name", "sim-mmlu"]));
        // The random-graph ablation needs no classifier; the unseen run reads test_unseen.
        let r = get("sim-mmlu-eval-hieramas-random-graph");
        assert!(!r.args.iter().any(|a| a == "--stage2"));
        let u = get("sim-mmlu-eval-hieramas-unseen");
        assert!(u.args.windows(2).any(|w| w == ["--split", "test_unseen"]));
        // The paper's unseen-subject baseline: self-consistency CoT with qwen3-80b.
        let sc = get("sim-mmlu-eval-sc-qwen3-80b-unseen");
        assert!(sc.args.windows(2).any(|w| w == ["--split", "test_unseen"]));
        assert!(sc.args.windows(2).any(|w| w == ["--model", "qwen3-80b"]));
        assert!(sc.args.windows(2).any(|w| w == ["--limit", "40"]));
        assert_eq!(sc.method.as_deref(), Some("sc@qwen3-80b@unseen"));
        assert!(
            !steps
                .iter()
                .any(|s| s.id == "sim-math-eval-sc-qwen3-80b-unseen")
        );
        // The local part: W = 1 everywhere the selector is used.
        let l = get("local-math-eval-hieramas");
        assert!(l.args.windows(2).any(|w| w == ["--width", "1"]));
        assert!(
            get("local-math-data")
                .args
                .windows(2)
                .any(|w| w == ["--width", "1"])
        );
        // Baselines run on the decision model.
        let single = get("sim-math-eval-single");
        assert!(
            single
                .args
                .windows(2)
                .any(|w| w == ["--model", "gpt-5-mini"])
        );
        assert!(
            get("sim-math-eval-mas-full")
                .args
                .windows(2)
                .any(|w| w == ["--assign", "fixed:gpt-5-mini"])
        );
    }

    #[test]
    fn faithful_adds_each_part_as_the_official_code_runs_it() {
        let mut o = options("default", None);
        let ours = plan(&o).unwrap();
        add_official_parts(&mut o.profile, Official::all());
        let steps = plan(&o).unwrap();
        let get = |id: &str| {
            steps
                .iter()
                .find(|s| s.id == id)
                .unwrap_or_else(|| panic!("no step {id}"))
        };
        let has = |s: &Step, pair: [&str; 2]| s.args.windows(2).any(|w| w == pair);
        let path = |s: &Step, flag: &str| {
            s.args[s.args.iter().position(|a| a == flag).unwrap() + 1].clone()
        };
        // Our steps are unchanged, and none of them restores an official behaviour.
        for s in &ours {
            let same = get(&s.id);
            assert_eq!(same.args, s.args, "{}", s.id);
            assert!(!s.args.iter().any(|a| a == "--official"), "{}", s.id);
        }
        // The official copy trains and evaluates with every switch, under its own folder.
        let all = Official::all().to_string();
        for id in [
            "sim-official-math-stage1",
            "sim-official-math-data",
            "sim-official-math-eval-hieramas",
            "sim-official-mmlu-eval-mas-full",
            "local-official-math-eval-hieramas-random-graph",
        ] {
            let s = get(id);
            assert!(has(s, ["--official", &all]), "{id}: {:?}", s.args);
            assert!(path(s, "--out").contains("/sim-official/") || id.starts_with("local"));
        }
        // The official checkpoints: validation-best for data and MMLU / HumanEval+ inference,
        // iteration 10 for MATH inference; the local part trains 2 iterations (no iteration
        // 10): its final weights.
        assert!(
            path(get("sim-official-math-data"), "--stage1").ends_with("stage1/best.safetensors")
        );
        assert!(
            path(get("sim-official-math-eval-hieramas"), "--stage1")
                .ends_with("stage1/iter10.safetensors")
        );
        assert!(
            path(get("sim-official-mmlu-eval-hieramas"), "--stage1")
                .ends_with("stage1/best.safetensors")
        );
        assert!(
            path(get("sim-official-humaneval-plus-eval-hieramas"), "--stage1")
                .ends_with("stage1/best.safetensors")
        );
        assert!(
            path(get("local-official-math-eval-hieramas"), "--stage1")
                .ends_with("stage1/selector.safetensors")
        );
        // The bundle holds the weights its test runs read.
        assert!(
            path(get("sim-official-mmlu-export"), "--stage1").ends_with("stage1/best.safetensors")
        );
        assert!(
            path(get("sim-math-eval-hieramas"), "--stage1")
                .ends_with("stage1/selector.safetensors")
        );
        // Only the methods the switches change run again.
        assert!(
            steps
                .iter()
                .any(|s| s.id == "sim-official-mmlu-eval-hieramas-unseen")
        );
        for gone in [
            "sim-official-math-eval-single",
            "sim-official-mmlu-eval-sc-qwen3-80b",
        ] {
            assert!(!steps.iter().any(|s| s.id == gone), "{gone}");
        }
        // One switch alone: only it is passed, and the checkpoints stay ours.
        let mut o = options("smoke", None);
        add_official_parts(&mut o.profile, "config-order".parse().unwrap());
        let steps = plan(&o).unwrap();
        let e = steps
            .iter()
            .find(|s| s.id == "sim-official-math-eval-hieramas")
            .unwrap();
        assert!(has(e, ["--official", "config-order"]));
        assert!(path(e, "--stage1").ends_with("stage1/selector.safetensors"));
    }

    #[test]
    fn limit_overrides_test_sizes_and_caps_unseen() {
        let steps = plan(&options("default", Some(3))).unwrap();
        for s in steps.iter().filter(|s| s.kind == Kind::Eval) {
            assert!(s.args.windows(2).any(|w| w == ["--limit", "3"]), "{}", s.id);
        }
    }

    #[test]
    fn command_lines_are_quoted_when_needed() {
        assert_eq!(
            command_line(&["eval".into(), "a b".into(), "it's".into()]),
            "hieramas eval 'a b' 'it'\\''s'"
        );
    }
}
