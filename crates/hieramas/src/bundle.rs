//! A trained HieraMAS as one artefact: a directory holding a manifest (`system.toml`) and every
//! file the system needs — the pool (copied), the role set, the stage-1 selector and the stage-2
//! classifier with their sidecars — each with its sha256 in the manifest. [`export`] writes
//! one from a stage-1 and a stage-2 output; [`Bundle::open`] checks every hash and refuses a
//! mismatch naming the file; [`Bundle::system`] loads it as a [`System`] that answers any
//! question (`hieramas run --system`, `hieramas serve --system`).
//!
//! ```no_run
//! # async fn f() -> hieramas::Result<()> {
//! use hieramas::bundle::{Bundle, LoadOptions};
//! let bundle = Bundle::open("results/local/math/system".as_ref())?;
//! let system = bundle.system(&LoadOptions::default(), &mut hieramas::progress::Silent).await?;
//! let (answer, trace) = system.answer("What is 7*8?").await?;
//! println!("{answer} (${})", trace.total_cost_usd);
//! # Ok(()) }
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest;

use crate::error::{Context, Error, Result, bail};
use crate::progress::Progress;
use crate::records::Ablation;
use crate::stage1::{SystemConfig, TrainedWith};
use crate::stage2::{Hieramas, HieramasConfig};
use crate::system::System;
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;

/// The manifest's file name inside a bundle.
pub const MANIFEST: &str = "system.toml";
/// The manifest format this version writes and reads.
pub const FORMAT: u32 = 1;

/// `system.toml`: what the system is and the files it is made of.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub format: u32,
    /// Served as the model `hieramas/<name>`.
    pub name: String,
    /// The benchmark it was trained on: its answer format ("The answer is N", a letter, a
    /// program), which the consensus override extracts.
    pub benchmark: Benchmark,
    /// Whether the pool has SIMULATED models (its answers are not real).
    pub simulated: bool,
    /// The decision node's model.
    pub decision: String,
    /// Proposers per supernode.
    pub width: usize,
    /// Most tokens per call.
    pub max_tokens: u32,
    pub seed: u64,
    /// What embeds tasks: `local` (all-MiniLM-L6-v2) or a model of the embedder pool.
    pub embedder: String,
    /// Task metadata for the selector: `heuristic` or a pool model's id.
    pub metadata: String,
    /// Candidate DAGs scored per query (absent: the benchmark's official count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub candidates: Option<usize>,
    /// The cost-aware rule's λ (absent: the official top-1 rule).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_lambda: Option<f64>,
    /// One of the paper's ablations instead of the method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ablation: Option<Ablation>,
    pub training: Training,
    pub files: Files,
    pub made_by: Provenance,
}

/// How stage 1 was trained: the official behaviours restored (method §10) and the credit
/// assignment. The system answers with the same switches (config order, whole-text consensus,
/// the skip decision's metadata).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// The official loss (temperature mismatch, no baseline) instead of the fixed one.
    pub faithful_loss: bool,
    /// Every official behaviour restored in training, and so at inference (`faithful_loss` is
    /// its `loss`).
    #[serde(default, skip_serializing_if = "crate::official::Official::is_fixed")]
    pub official: crate::official::Official,
    /// `multi` (node + system rewards) or `system`.
    pub credit: crate::records::CreditMode,
    /// Stage-1 iterations, as configured (absent: the official count).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iterations: Option<usize>,
}

/// The files of a bundle, by role.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Files {
    pub pool: BundleFile,
    pub roles: BundleFile,
    pub selector: BundleFile,
    pub selector_sidecar: BundleFile,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier: Option<BundleFile>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classifier_sidecar: Option<BundleFile>,
    /// The pool that holds a non-local embedder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedder_pool: Option<BundleFile>,
}

impl Files {
    /// Every file of the bundle.
    pub fn all(&self) -> Vec<&BundleFile> {
        let mut v = vec![
            &self.pool,
            &self.roles,
            &self.selector,
            &self.selector_sidecar,
        ];
        v.extend(self.classifier.iter());
        v.extend(self.classifier_sidecar.iter());
        v.extend(self.embedder_pool.iter());
        v
    }
}

/// A file of the bundle (a plain name inside it) and its sha256.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleFile {
    pub path: String,
    pub sha256: String,
}

/// Who made the bundle, and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provenance {
    pub hieramas_version: String,
    /// The git commit of the checkout that made it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The commands that made its parts (training, export), as run.
    pub commands: Vec<String>,
    /// Seconds since the Unix epoch.
    pub created_unix: u64,
}

/// What [`export`] packs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportConfig {
    /// The stage-1 output directory (`train stage1 --out`), or its `selector.safetensors`.
    pub stage1: PathBuf,
    /// The stage-2 classifier directory (`train stage2 --out`) or its
    /// `classifier.safetensors`; not needed for the random-graph ablation.
    pub stage2: Option<PathBuf>,
    /// The bundle directory to write (replaced if it already is a bundle).
    pub out: PathBuf,
    /// The served name (default: the pool's name and the benchmark).
    pub name: Option<String>,
    pub candidates: Option<usize>,
    pub cost_lambda: Option<f64>,
    pub ablation: Option<Ablation>,
    /// The commands that made the parts, for the manifest (each training output's
    /// `command.txt` is added when present).
    pub commands: Vec<String>,
    pub commit: Option<String>,
}

/// What [`Bundle::system`] needs beside the bundle.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LoadOptions {
    /// Record every model call to, and replay it from, this SQLite response cache.
    pub cache: Option<PathBuf>,
    /// Where task embeddings are cached (default: `$HIERAMAS_HOME/embeddings`, else
    /// `~/.cache/hieramas/embeddings`).
    pub embeddings: Option<PathBuf>,
    /// The benchmark files (default: `$HIERAMAS_DATA_DIR`, else the checkout's `datasets/`).
    pub data_dir: Option<PathBuf>,
    /// Stop once this much has been spent on model calls.
    pub budget: Option<hieramas_llm::Usd>,
    /// Keep the budget's ledger in this file (what earlier runs spent counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_ledger: Option<PathBuf>,
}

/// The file each training step writes with the command line that ran it.
pub const COMMAND_FILE: &str = "command.txt";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_of(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hex(&sha2::Sha256::digest(&bytes)))
}

/// `path` if it is a file, else `path/name`.
fn file_in(path: &Path, name: &str) -> PathBuf {
    if path.is_file() {
        path.to_path_buf()
    } else {
        path.join(name)
    }
}

/// The text of a pool file or of a built-in pool (see [`crate::models::pool_source`]).
fn pool_text(path: &Path) -> Result<String> {
    Ok(crate::models::pool_source(path)?.0)
}

/// Packs the system trained by `cfg.stage1` and `cfg.stage2` into the bundle `cfg.out`; every
/// file is written to a temporary directory first, so a crash leaves no half bundle.
pub fn export(cfg: &ExportConfig) -> Result<Manifest> {
    let selector = file_in(&cfg.stage1, "selector.safetensors");
    let stage1_dir = selector.parent().map(Path::to_path_buf).unwrap_or_default();
    let trained_path = stage1_dir.join(crate::stage1::TRAINED_WITH);
    let trained: TrainedWith = crate::records::read_json(&trained_path).with_context(|| {
        format!(
            "{}: what stage 1 was trained with (written by `hieramas train stage1` since the bundle format exists; retrain to export an older run)",
            trained_path.display()
        )
    })?;
    let sys = &trained.config.system;
    let classifier = cfg
        .stage2
        .as_deref()
        .map(|p| file_in(p, "classifier.safetensors"));
    if classifier.is_none() && cfg.ablation != Some(Ablation::RandomGraph) {
        bail!(
            "a bundle needs the stage-2 classifier (--stage2, `hieramas train stage2` makes one); only the random-graph ablation does without"
        );
    }
    let roles_text = match &sys.roles {
        None => hieramas_topology::roleset::RoleSet::builtin_text(sys.benchmark.name())
            .map(str::to_string)
            .with_context(|| format!("no built-in role set for {}", sys.benchmark.name()))?,
        Some(p) if p.is_file() => {
            std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?
        }
        Some(p) => p
            .to_str()
            .and_then(hieramas_topology::roleset::RoleSet::builtin_text)
            .map(str::to_string)
            .with_context(|| format!("role set {}: no such file nor built-in name", p.display()))?,
    };
    let pool = pool_text(&sys.pool)?;
    let pool_name = hieramas_llm::Pool::from_toml(&pool, &sys.pool.display().to_string())?
        .meta
        .name;
    let name = cfg.name.clone().unwrap_or_else(|| {
        format!("{}-{}", pool_name, sys.benchmark.name())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                    c
                } else {
                    '-'
                }
            })
            .collect()
    });
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
    {
        bail!("bundle name {name:?}: use letters, digits, '-', '_' and '.'");
    }

    let out = &cfg.out;
    if out.exists() && !out.join(MANIFEST).is_file() {
        bail!(
            "{}: exists and is not a bundle (no {MANIFEST}); choose another directory",
            out.display()
        );
    }
    let tmp = out.with_extension(format!("tmp-{}", std::process::id()));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).with_context(|| format!("removing {}", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
    let put = |name: &str, bytes: &[u8]| -> Result<BundleFile> {
        let path = tmp.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
        Ok(BundleFile {
            path: name.to_string(),
            sha256: hex(&sha2::Sha256::digest(bytes)),
        })
    };
    let copy = |from: &Path, name: &str| -> Result<BundleFile> {
        let bytes = std::fs::read(from).with_context(|| format!("reading {}", from.display()))?;
        put(name, &bytes)
    };
    let embedder_pool = match (&sys.embedder_pool, sys.embedder.as_str()) {
        (_, "local") => None,
        (Some(p), _) => Some(put("embedder-pool.toml", pool_text(p)?.as_bytes())?),
        (None, _) => None, // the embedder is a model of the pool itself
    };
    let files = Files {
        pool: put("pool.toml", pool.as_bytes())?,
        roles: put("roles.toml", roles_text.as_bytes())?,
        selector: copy(&selector, "selector.safetensors")?,
        selector_sidecar: copy(
            &hieramas_checkpoint::sidecar(&selector),
            "selector.safetensors.json",
        )?,
        classifier: classifier
            .as_deref()
            .map(|c| copy(c, "classifier.safetensors"))
            .transpose()?,
        classifier_sidecar: classifier
            .as_deref()
            .map(|c| {
                copy(
                    &hieramas_checkpoint::sidecar(c),
                    "classifier.safetensors.json",
                )
            })
            .transpose()?,
        embedder_pool,
    };
    let mut commands = Vec::new();
    for dir in [
        Some(stage1_dir.as_path()),
        classifier.as_deref().and_then(Path::parent),
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(text) = std::fs::read_to_string(dir.join(COMMAND_FILE)) {
            commands.extend(
                text.lines()
                    .filter(|l| !l.trim().is_empty())
                    .map(String::from),
            );
        }
    }
    commands.extend(cfg.commands.iter().cloned());
    let manifest = Manifest {
        format: FORMAT,
        name,
        benchmark: sys.benchmark,
        simulated: trained.simulated,
        decision: trained.decision.clone(),
        width: trained.width,
        max_tokens: sys.max_tokens,
        seed: sys.seed,
        embedder: sys.embedder.clone(),
        metadata: sys.metadata.clone(),
        candidates: cfg.candidates,
        cost_lambda: cfg.cost_lambda,
        ablation: cfg.ablation,
        training: Training {
            faithful_loss: sys.official.loss,
            official: sys.official,
            credit: trained.config.credit,
            iterations: trained.config.iterations,
        },
        files,
        made_by: Provenance {
            hieramas_version: env!("CARGO_PKG_VERSION").to_string(),
            commit: cfg.commit.clone(),
            commands,
            created_unix: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        },
    };
    let text = toml::to_string(&manifest)
        .map_err(|e| Error::Invalid(format!("writing {MANIFEST}: {e}")))?;
    std::fs::write(tmp.join(MANIFEST), text)
        .with_context(|| format!("writing {}", tmp.join(MANIFEST).display()))?;
    if out.exists() {
        std::fs::remove_dir_all(out).with_context(|| format!("replacing {}", out.display()))?;
    }
    std::fs::rename(&tmp, out).with_context(|| format!("writing {}", out.display()))?;
    Ok(manifest)
}

/// An opened bundle whose every file matched its hash.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl Bundle {
    /// Reads `dir/system.toml` and checks every file it lists against its sha256: a file that
    /// is missing, changed or corrupted is an error naming it.
    pub fn open(dir: &Path) -> Result<Bundle> {
        let path = dir.join(MANIFEST);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "{}: not a system bundle (`hieramas export` writes one)",
                path.display()
            )
        })?;
        let manifest: Manifest = toml::from_str(&text)
            .map_err(|e| Error::Invalid(format!("{}: {e}", path.display())))?;
        if manifest.format != FORMAT {
            bail!(
                "{}: bundle format {}, this hieramas reads format {FORMAT}",
                path.display(),
                manifest.format
            );
        }
        for f in manifest.files.all() {
            let p = Path::new(&f.path);
            if p.components().count() != 1 || p.is_absolute() {
                bail!(
                    "{}: file {:?} is not a plain name inside the bundle",
                    path.display(),
                    f.path
                );
            }
            let file = dir.join(p);
            let got = sha256_of(&file)?;
            if got != f.sha256 {
                bail!(
                    "{}: sha256 {got}, but {} says {}: the file was changed or corrupted; export the bundle again",
                    file.display(),
                    path.display(),
                    f.sha256
                );
            }
        }
        Ok(Bundle {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The served model id: `hieramas/<name>`, or `hieramas/SIMULATED-<name>` for a SIMULATED
    /// system whose name does not say so already.
    pub fn model_id(&self) -> String {
        let name = &self.manifest.name;
        if self.manifest.simulated && !name.contains("SIMULATED") {
            format!("hieramas/SIMULATED-{name}")
        } else {
            format!("hieramas/{name}")
        }
    }

    fn file(&self, f: &BundleFile) -> PathBuf {
        self.dir.join(&f.path)
    }

    /// The trained system's configuration, its paths inside the bundle.
    pub fn config(&self, opts: &LoadOptions) -> HieramasConfig {
        let m = &self.manifest;
        HieramasConfig {
            system: SystemConfig {
                benchmark: m.benchmark,
                pool: self.file(&m.files.pool),
                decision: Some(m.decision.clone()),
                max_tokens: m.max_tokens,
                seed: m.seed,
                embedder: m.embedder.clone(),
                metadata: m.metadata.clone(),
                embedder_pool: m.files.embedder_pool.as_ref().map(|f| self.file(f)),
                embeddings: Some(opts.embeddings.clone().unwrap_or_else(default_embeddings)),
                data_dir: opts.data_dir.clone(),
                budget: opts.budget,
                budget_ledger: opts.budget_ledger.clone(),
                roles: Some(self.file(&m.files.roles)),
                cache: opts.cache.clone(),
                official: m.training.official,
            },
            stage1: self.file(&m.files.selector),
            stage2: m.files.classifier.as_ref().map(|f| self.file(f)),
            ablation: m.ablation,
            candidates: m.candidates,
            cost_lambda: m.cost_lambda,
            width: Some(m.width),
        }
    }

    /// Loads the system, ready to answer any question.
    pub async fn system(&self, opts: &LoadOptions, progress: &mut dyn Progress) -> Result<System> {
        if self.manifest.simulated {
            progress.note(&format!(
                "{}: a SIMULATED system — its models look up gold answers of known benchmark tasks, so a question of your own is refused",
                self.model_id()
            ));
        }
        let mut system = learned_system(&self.config(opts), opts, progress)
            .await
            .with_context(|| format!("loading the bundle {}", self.dir.display()))?;
        system.description["bundle"] = serde_json::json!({
            "name": self.manifest.name,
            "dir": self.dir,
        });
        Ok(system)
    }
}

/// The configuration of the system trained in `stage1` (its output directory or
/// `selector.safetensors`) and `stage2` (the classifier's), without a bundle: what stage 1
/// recorded in `trained-with.json`, nothing verified beyond the checkpoints' own sidecars.
pub fn trained(stage1: &Path, stage2: Option<&Path>, opts: &LoadOptions) -> Result<HieramasConfig> {
    let selector = file_in(stage1, "selector.safetensors");
    let dir = selector.parent().map(Path::to_path_buf).unwrap_or_default();
    let trained_path = dir.join(crate::stage1::TRAINED_WITH);
    let t: TrainedWith = crate::records::read_json(&trained_path)
        .with_context(|| format!("{}: what stage 1 was trained with", trained_path.display()))?;
    let mut system = t.config.system;
    system.decision = Some(t.decision);
    system.embeddings = Some(opts.embeddings.clone().unwrap_or_else(default_embeddings));
    system.data_dir = opts.data_dir.clone().or(system.data_dir);
    system.budget = opts.budget;
    system.budget_ledger = opts.budget_ledger.clone();
    system.cache = opts.cache.clone();
    Ok(HieramasConfig {
        system,
        stage1: selector,
        stage2: stage2.map(|p| file_in(p, "classifier.safetensors")),
        width: Some(t.width),
        ..HieramasConfig::default()
    })
}

/// Loads the trained system of `cfg` as a [`System`] for free-form questions.
pub async fn learned_system(
    cfg: &HieramasConfig,
    opts: &LoadOptions,
    progress: &mut dyn Progress,
) -> Result<System> {
    let data = DataDir::resolve(opts.data_dir.as_deref())?;
    let loaded = Hieramas::load(cfg, &data, &[], None, progress).await?;
    Ok(System::learned(loaded.planner, loaded.description))
}

/// `$HIERAMAS_HOME/embeddings`, else `~/.cache/hieramas/embeddings`.
pub fn default_embeddings() -> PathBuf {
    hieramas_local::fetch::hieramas_home().join("embeddings")
}
