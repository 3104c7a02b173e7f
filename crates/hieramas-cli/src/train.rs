//! `hieramas train stage1`: trains the LLM selector with multi-level reward attribution
//! (method §5) on a benchmark's train split, over real multi-agent runs.
//!
//! Each iteration takes `batch_size` training queries; for each, a random DAG of the stage-1
//! density range, the selector's choice at every position of every supernode (options: the
//! pool's models, then `skip`), one run of the system, every supernode's own output and the final
//! answer graded by the deterministic graders, each call's own cost — then the credit, the
//! REINFORCE loss and one clipped Adam step. A learning-curve line per iteration goes to
//! `<out>/curve.jsonl`; checkpoints (verified safetensors) to `<out>/`. After every iteration
//! the weights, the optimiser's moments, the data order and the random state are saved, so a
//! rerun of the same command after a crash continues exactly where it stopped (`--fresh` starts
//! over). Not built yet: validation during training.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use hieramas_bench::{Checker, Selection, prediction_extractor};
use hieramas_llm::{ChatModel, Price};
use hieramas_local::pool::LocalModels;
use hieramas_reward::config::Stage1Config;
use hieramas_reward::reward::{NodeResult, credit};
use hieramas_reward::schedule::{learning_rate, temperature};
use hieramas_reward::selector::{self, Masks, Selector, SelectorConfig, mask_logits};
use hieramas_reward::texts::{EmbeddingCache, TaskMeta, Texts};
use hieramas_reward::train::{NodeTerm, Trainer, Variant, batch_loss, draw};
use hieramas_supernode::{Members, Sampling, Slot};
use hieramas_tasks::data::DataDir;
use hieramas_tasks::splits::Benchmark;
use hieramas_topology::generate;
use hieramas_topology::roleset::RoleSet;
use hieramas_topology::schedule::{Plan, run_query};
use rand::SeedableRng;
use rand::seq::SliceRandom;

#[derive(clap::Args)]
pub struct TrainArgs {
    /// math, mmlu or humaneval-plus.
    #[arg(long)]
    benchmark: String,
    /// The pool whose models the selector chooses among (`pools/local.toml`, `pools/paper.toml`
    /// or a file).
    #[arg(long, default_value = "pools/local.toml")]
    pool: PathBuf,
    /// The official loss (temperature mismatch, no baseline) instead of the fixed one.
    #[arg(long)]
    faithful: bool,
    /// Instead of the official settings (`configs/stage1.toml` of hieramas-reward):
    #[arg(long)]
    iterations: Option<usize>,
    #[arg(long)]
    batch_size: Option<usize>,
    /// Proposers per supernode.
    #[arg(long)]
    width: Option<usize>,
    /// Most tokens per call.
    #[arg(long, default_value_t = 256)]
    max_tokens: u32,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Where the curve and checkpoints go (default results/stage1/<benchmark>-<pool>).
    #[arg(long)]
    out: Option<PathBuf>,
    /// The benchmark files (default: $HIERAMAS_DATA_DIR).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Start over in --out instead of resuming the run saved there.
    #[arg(long)]
    fresh: bool,
    /// Stop after this many iterations as if interrupted (for tests of resuming).
    #[arg(long, hide = true)]
    stop_after: Option<usize>,
}

/// What `<out>/state.json` holds after each iteration.
#[derive(serde::Serialize, serde::Deserialize)]
struct ResumeState {
    fingerprint: serde_json::Value,
    iterations_done: usize,
    cursor: usize,
    order: Vec<usize>,
    rng_word_pos: u128,
}

pub async fn run(a: TrainArgs) -> Result<()> {
    let benchmark: Benchmark = a.benchmark.parse()?;
    let mut cfg = Stage1Config::builtin(benchmark.name())?;
    if let Some(n) = a.iterations {
        cfg.iterations = n.max(1);
    }
    if let Some(n) = a.batch_size {
        cfg.batch_size = n.max(1);
    }
    if let Some(n) = a.width {
        cfg.width = n.max(1);
    }
    let variant = if a.faithful {
        Variant::Faithful
    } else {
        Variant::Fixed
    };
    let roles = RoleSet::builtin(benchmark.name())?;
    let names = roles.names();
    let data = DataDir::resolve(a.data_dir.as_deref())?;
    let queries = hieramas_bench::query::load(
        &data,
        &Selection {
            benchmark,
            split: "train".into(),
            seed: hieramas_tasks::splits::DEFAULT_SEED,
            limit: None,
            keep_flagged: false,
        },
    )?;
    if queries.is_empty() {
        bail!("{benchmark}/train selects no queries");
    }
    let checker = Checker::new(&data, benchmark).await?;
    let pool = crate::mas::load_pool(&a.pool)?;
    let pool_name = pool.meta.name.clone();
    let mut models = crate::mas::Models::new(pool, None);
    let ids = models.ids();
    let skip = ids.len();
    let pool_models: Vec<Arc<dyn ChatModel>> =
        ids.iter().map(|id| models.get(id)).collect::<Result<_>>()?;
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from("results/stage1").join(format!(
            "{}-{}",
            benchmark.name(),
            pool_name.replace('/', "_")
        ))
    });
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    // Inputs of the selector, embedded once (and cached on disk).
    let texts = Texts::builtin()?;
    let embedder = LocalModels::from_env()?
        .embedder(Price::default())
        .context("loading the all-MiniLM-L6-v2 embedder")?;
    let cache = EmbeddingCache {
        dir: out.join("embeddings"),
    };
    let mut profile_texts: Vec<String> = ids.iter().map(|id| texts.profile(id)).collect();
    profile_texts.push(texts.profile("skip"));
    let profiles = cache.embed(&embedder, &profile_texts).await?;
    let dim = profiles[0].len();
    let dev = Device::Cpu;
    let e_llm = Tensor::from_vec(profiles.concat(), (profiles.len(), dim), &dev)?;

    // Everything that decides the run; a resumed run must match it.
    let fingerprint = serde_json::json!({
        "benchmark": benchmark.name(),
        "pool": models.specs(ids.iter())?,
        "options": ids,
        "variant": format!("{variant:?}"),
        "settings": cfg,
        "max_tokens": a.max_tokens,
        "seed": a.seed,
        "embedding_dim": dim,
    });
    let state_path = out.join("state.json");
    if a.fresh && state_path.exists() {
        std::fs::remove_file(&state_path)
            .with_context(|| format!("removing {}", state_path.display()))?;
    }
    let resumed: Option<ResumeState> = match std::fs::read_to_string(&state_path) {
        Ok(text) => {
            let st: ResumeState = serde_json::from_str(&text)
                .with_context(|| format!("{} is not a training state", state_path.display()))?;
            if st.fingerprint != fingerprint {
                bail!(
                    "{} holds a run with other settings (benchmark, pool, loss, settings, seed); \
                     use another --out, or --fresh to start over there",
                    out.display()
                );
            }
            Some(st)
        }
        Err(_) => None,
    };
    let (varmap, sel) = match &resumed {
        Some(_) => selector::load(&out.join("last.safetensors"), &dev, DType::F32)?,
        None => {
            let varmap = VarMap::new();
            let sel = Selector::new(
                SelectorConfig::official(dim),
                VarBuilder::from_varmap(&varmap, DType::F32, &dev),
            )?;
            selector::init_seeded(&varmap, a.seed)?;
            (varmap, sel)
        }
    };
    let mut trainer = Trainer::new(&varmap, cfg.lr_start, cfg.weight_decay, cfg.grad_clip)?;
    if resumed.is_some() {
        trainer.load(&out.join("last.adam.safetensors"))?;
    }
    let masks = Masks {
        excluded: Vec::new(), // the pool's `exclude`d models are not options at all
        skip,
        synth_may_skip: true, // skip learning is on in every official stage-1 script
        clamp: Some(10.0),
    };
    let shape = cfg.reward();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
    let mut order: Vec<usize> = (0..queries.len()).collect();
    order.shuffle(&mut rng);
    let mut cursor = 0;
    let mut start = 0;
    if let Some(st) = &resumed {
        rng.set_word_pos(st.rng_word_pos);
        order = st.order.clone();
        cursor = st.cursor;
        start = st.iterations_done;
        eprintln!(
            "resuming {} after iteration {start} (of {})",
            out.display(),
            cfg.iterations
        );
    }
    let decision = pool_models[0].clone();

    eprintln!(
        "stage 1 · {benchmark} · pool {pool_name} ({} models + skip) · {} iterations x {} queries · W = {} · {:?} loss · out {}",
        ids.len(),
        cfg.iterations,
        cfg.batch_size,
        cfg.width,
        variant,
        out.display()
    );
    let bar = indicatif::ProgressBar::new((cfg.iterations * cfg.batch_size) as u64).with_style(
        indicatif::ProgressStyle::with_template(
            "{msg} [{bar:30}] {pos}/{len} queries {elapsed_precise} eta {eta}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    // The curve keeps exactly the iterations the saved state holds (a crash may have left a
    // line of an iteration whose state was not saved).
    let curve_path = out.join("curve.jsonl");
    let kept: Vec<String> = std::fs::read_to_string(&curve_path)
        .unwrap_or_default()
        .lines()
        .take(start)
        .map(String::from)
        .collect();
    let mut curve = std::fs::File::create(&curve_path).context("creating curve.jsonl")?;
    {
        use std::io::Write;
        for l in &kept {
            writeln!(curve, "{l}").context("writing curve.jsonl")?;
        }
    }
    bar.set_position((start * cfg.batch_size) as u64);
    for it in start..cfg.iterations {
        if a.stop_after.is_some_and(|n| it >= n) {
            bar.finish_and_clear();
            eprintln!("stopped after iteration {it} (--stop-after); rerun to resume");
            return Ok(());
        }
        let t = temperature(
            it,
            cfg.iterations,
            cfg.temperature_start,
            cfg.temperature_min,
        );
        let lr = learning_rate(
            it,
            cfg.iterations,
            cfg.lr_start,
            cfg.lr_end,
            cfg.warmup_ratio,
        );
        trainer.set_learning_rate(lr);
        let mut batch: Vec<Vec<NodeTerm>> = Vec::new();
        let (mut solved, mut node_solved, mut nodes_run, mut cost_pico, mut reward_sum) =
            (0usize, 0usize, 0usize, 0u64, 0.0);
        for k in 0..cfg.batch_size {
            if cursor == order.len() {
                order.shuffle(&mut rng);
                cursor = 0;
            }
            let q = &queries[order[cursor]];
            cursor += 1;
            bar.set_message(format!("iter {}/{} T={t:.2}", it + 1, cfg.iterations));
            let topology = generate::random_dag(
                &names,
                cfg.density[0],
                cfg.density[1],
                a.seed
                    .wrapping_mul(1_000_003)
                    .wrapping_add((it * cfg.batch_size + k) as u64),
            )?;
            let mut inputs: Vec<String> =
                names.iter().map(|r| texts.task_role(&q.task, r)).collect();
            inputs.push(TaskMeta::heuristic(&q.task).summary());
            let emb = cache.embed(&embedder, &inputs).await?;
            let meta = Tensor::new(emb[names.len()].as_slice(), &dev)?;
            let mut logits = Vec::with_capacity(names.len());
            let mut actions = Vec::with_capacity(names.len());
            let mut members = Vec::with_capacity(names.len());
            for e in &emb[..names.len()] {
                let role = Tensor::new(e.as_slice(), &dev)?;
                let l = mask_logits(&sel.logits(&e_llm, &role, &meta, cfg.width + 1)?, &masks)?;
                let act = draw(&l, t, variant, &mut rng)?;
                let pick = |a: usize| (a != skip).then(|| pool_models[a].clone());
                let mut proposers: Vec<Option<Arc<dyn ChatModel>>> =
                    act[..cfg.width].iter().map(|&a| pick(a)).collect();
                let synthesizer = pick(act[cfg.width]);
                // Every proposer skipped: the official fallback model answers (here: the
                // pool's first, which also decides).
                if synthesizer.is_some() && proposers.iter().all(Option::is_none) {
                    proposers[0] = Some(decision.clone());
                }
                members.push(Members {
                    proposers,
                    synthesizer,
                });
                logits.push(l);
                actions.push(act);
            }
            let plan = Plan {
                topology: &topology,
                roles: &roles,
                members,
                decision: decision.clone(),
                sampling: Sampling {
                    temperature: Some(0.2),
                    max_tokens: a.max_tokens,
                    seed: Some(a.seed),
                },
                faithful: false,
                consensus: Some(prediction_extractor(benchmark)),
            };
            let trace = run_query(&plan, &q.task)
                .await
                .with_context(|| format!("{}: the multi-agent run", q.id))?;
            let mut results = Vec::with_capacity(names.len());
            for (i, name) in names.iter().enumerate() {
                let node_calls: Vec<_> = trace.calls.iter().filter(|c| &c.node == name).collect();
                let skipped = trace.nodes[i].skipped;
                let output = node_calls
                    .iter()
                    .find(|c| c.position == Slot::Synth)
                    .or_else(|| node_calls.first())
                    .map(|c| c.text.clone());
                let ok = match (&output, skipped) {
                    (Some(text), false) => {
                        checker.grade(q, std::slice::from_ref(text)).await?.correct
                    }
                    _ => false,
                };
                node_solved += usize::from(ok);
                nodes_run += usize::from(!skipped);
                results.push(NodeResult {
                    solved: ok,
                    cost: hieramas_llm::Usd::from_pico(
                        node_calls.iter().map(|c| c.cost_pico).sum(),
                    ),
                    skipped,
                    answers: roles.roles[i].answer,
                });
            }
            let final_ok = checker
                .grade(q, std::slice::from_ref(&trace.answer))
                .await?
                .correct;
            let decision_cost = trace
                .calls
                .iter()
                .find(|c| c.position == Slot::Decision)
                .map_or(0, |c| c.cost_pico);
            let c = credit(
                &shape,
                &results,
                final_ok,
                hieramas_llm::Usd::from_pico(decision_cost),
            );
            solved += usize::from(final_ok);
            cost_pico += trace.total_cost_pico;
            reward_sum += c.system;
            batch.push(
                logits
                    .into_iter()
                    .zip(actions)
                    .zip(c.mixed)
                    .map(|((logits, actions), credit)| NodeTerm {
                        logits,
                        actions,
                        credit,
                    })
                    .collect(),
            );
            bar.inc(1);
        }
        let loss = batch_loss(&batch, t, cfg.entropy_coef, variant)?;
        let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let norm = trainer.step(&loss)?;
        let n = cfg.batch_size as f64;
        let line = serde_json::json!({
            "iteration": it + 1,
            "temperature": t,
            "lr": lr,
            "loss": loss_value,
            "grad_norm": norm,
            "system_reward": reward_sum / n,
            "accuracy": solved as f64 / n,
            "node_accuracy": if nodes_run == 0 { 0.0 } else { node_solved as f64 / nodes_run as f64 },
            "cost_pico": cost_pico,
            "cost_usd": cost_pico as f64 / 1e12,
            "variant": format!("{variant:?}"),
        });
        use std::io::Write;
        writeln!(curve, "{line}").context("writing curve.jsonl")?;
        curve.sync_data().ok();
        bar.suspend(|| {
            eprintln!(
                "iter {:>2}: loss {loss_value:>8.3}  reward {:>6.3}  accuracy {:>5.1}%  node accuracy {:>5.1}%  cost ${:.6}",
                it + 1,
                reward_sum / n,
                100.0 * solved as f64 / n,
                if nodes_run == 0 { 0.0 } else { 100.0 * node_solved as f64 / nodes_run as f64 },
                cost_pico as f64 / 1e12
            )
        });
        // The state that lets a rerun continue exactly: weights, optimiser, data order, rng.
        selector::save(&varmap, &sel.config, &out.join("last.safetensors"))?;
        trainer.save(&out.join("last.adam.safetensors"))?;
        let st = ResumeState {
            fingerprint: fingerprint.clone(),
            iterations_done: it + 1,
            cursor,
            order: order.clone(),
            rng_word_pos: rng.get_word_pos(),
        };
        let tmp = state_path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_string(&st)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &state_path)
            .with_context(|| format!("writing {}", state_path.display()))?;
        if (it + 1) % cfg.checkpoint_every.max(1) == 0 {
            selector::save(
                &varmap,
                &sel.config,
                &out.join(format!("iter{}.safetensors", it + 1)),
            )?;
        }
    }
    bar.finish_and_clear();
    let path = out.join("selector.safetensors");
    selector::save(&varmap, &sel.config, &path)?;
    eprintln!(
        "selector: {} (+ .json); curve: {}",
        path.display(),
        out.join("curve.jsonl").display()
    );
    Ok(())
}
