//! The credit-assignment experiment of the paper, on a SIMULATED
//! pool whose best model per role is known by construction (`pools/sim-credit.toml`: the
//! strongest model overall is the worst Inspector).
//!
//! Stage 1 is trained over several seeds with six estimators — the official selector (task and
//! role embedded as one text) with the system reward alone and with the multi-level credit, each
//! with the official loss (no baseline, temperature mismatch) and with our fixed loss; and the
//! role-aware selector (task and role embedded apart) with either reward and the fixed loss —
//! and each trained selector is validated (argmax over the full graph). The
//! report gives, per role, the probability the selector gives the optimal model at proposer
//! positions, how many seeds pick it (argmax on most validation queries), final accuracy and
//! cost; an SVG chart; all of it labelled SIMULATED. Runs resume like `train stage1`.

use std::fmt::Write as _;
use std::path::PathBuf;

use hieramas_sim::{Catalogue, Kind};
use hieramas_tasks::splits::Benchmark;
use hieramas_topology::roleset::RoleSet;
use serde::{Deserialize, Serialize};

use crate::error::{Context, Result, ensure};
use crate::progress::{Progress, Silent};
use crate::records::{CreditMode, Validation};
use crate::stage1::{Stage1Config, SystemConfig};

/// The credit experiment's settings; `Default` is what the report in `docs/` ran.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CreditConfig {
    /// Seeds per estimator.
    pub seeds: usize,
    /// Iterations per run (the official 12 are too few to move the selector much).
    pub iterations: usize,
    /// Learning rate (default: the official 2e-3 of MATH).
    pub lr: Option<f64>,
    /// Entropy bonus coefficient (default: the official 1.0).
    pub entropy_coef: Option<f64>,
    /// Queries per iteration (default: the official 6 of MATH).
    pub batch_size: Option<usize>,
    /// Train on the first N MATH train queries (shared by all runs, so embeddings are computed
    /// once).
    pub train_limit: usize,
    /// Validation queries (the first N of MATH valid).
    pub val_limit: usize,
    /// A SIMULATED pool with per-role fitness.
    pub pool: PathBuf,
    pub out: PathBuf,
    pub data_dir: Option<PathBuf>,
    /// Start every run over.
    pub fresh: bool,
    /// Only these estimators (their slugs, e.g. `aware-multi-fixed`); empty: all six.
    pub arms: Vec<String>,
    /// Let the selector choose `skip` (official). Masked by default: a skipped supernode's node
    /// reward is 0, above a failure's −1, so with per-role heads the multi-level credit learns
    /// to skip the supernodes that fail often, which is not the question here.
    pub skip: bool,
}

impl Default for CreditConfig {
    fn default() -> Self {
        CreditConfig {
            seeds: 10,
            iterations: 48,
            lr: None,
            entropy_coef: None,
            batch_size: None,
            train_limit: 200,
            val_limit: 100,
            pool: PathBuf::from("pools/sim-credit.toml"),
            out: PathBuf::from("results/credit-experiment"),
            data_dir: None,
            fresh: false,
            arms: Vec::new(),
            skip: false,
        }
    }
}

/// The slugs `CreditConfig::arms` may name.
pub fn arm_slugs() -> Vec<&'static str> {
    ARMS.iter().map(|a| a.slug).collect()
}

/// The estimators `a` asks for, in the report's order.
fn chosen(a: &CreditConfig) -> Result<Vec<&'static Arm>> {
    for slug in &a.arms {
        ensure!(
            ARMS.iter().any(|arm| arm.slug == slug),
            "no estimator {slug:?} (known: {})",
            arm_slugs().join(", ")
        );
    }
    Ok(ARMS
        .iter()
        .filter(|arm| a.arms.is_empty() || a.arms.iter().any(|s| s == arm.slug))
        .collect())
}

/// What the experiment leaves: the report (also `<out>/REPORT.md`).
pub struct CreditOutcome {
    pub report_md: String,
    pub report_path: PathBuf,
}

/// One estimator.
struct Arm {
    name: &'static str,
    slug: &'static str,
    credit: CreditMode,
    faithful: bool,
    /// The official selector input (task and role embedded as one text); else role-aware.
    joint: bool,
    color: &'static str,
}

const ARMS: [Arm; 6] = [
    Arm {
        name: "official selector, system-only, official loss",
        slug: "system-official",
        credit: CreditMode::System,
        faithful: true,
        joint: true,
        color: "#9e9e9e",
    },
    Arm {
        name: "official selector, multi-level, official loss",
        slug: "multi-official",
        credit: CreditMode::Multi,
        faithful: true,
        joint: true,
        color: "#1f77b4",
    },
    Arm {
        name: "official selector, system-only, fixed loss",
        slug: "system-fixed",
        credit: CreditMode::System,
        faithful: false,
        joint: true,
        color: "#ff7f0e",
    },
    Arm {
        name: "official selector, multi-level, fixed loss",
        slug: "multi-fixed",
        credit: CreditMode::Multi,
        faithful: false,
        joint: true,
        color: "#2ca02c",
    },
    Arm {
        name: "role-aware selector, system-only, fixed loss",
        slug: "aware-system-fixed",
        credit: CreditMode::System,
        faithful: false,
        joint: false,
        color: "#d62728",
    },
    Arm {
        name: "role-aware selector, multi-level, fixed loss",
        slug: "aware-multi-fixed",
        credit: CreditMode::Multi,
        faithful: false,
        joint: false,
        color: "#9467bd",
    },
];

/// One run's numbers.
#[derive(serde::Serialize)]
struct RunResult {
    arm: &'static str,
    seed: u64,
    /// Per role: mean probability of the optimal model at proposer positions.
    p_optimal: Vec<f64>,
    /// Per role: share of proposer positions whose argmax is the optimal model.
    argmax_optimal: Vec<f64>,
    /// Share of synthesiser positions (all roles) whose argmax is `skip`.
    synth_skip: f64,
    /// Share of synthesiser positions whose argmax is the best judge.
    synth_best: f64,
    accuracy: f64,
    cost_usd: f64,
}

fn mean_sd(xs: &[f64]) -> (f64, f64) {
    let n = xs.len() as f64;
    if xs.is_empty() {
        return (0.0, 0.0);
    }
    let m = xs.iter().sum::<f64>() / n;
    let var = if xs.len() > 1 {
        xs.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (m, var.sqrt())
}

/// Runs the credit experiment (every run resumes like stage 1), reporting each run to
/// `progress`; writes `REPORT.md`, `credit.svg` and `results.json` under `a.out`.
pub async fn run(a: &CreditConfig, progress: &mut dyn Progress) -> Result<CreditOutcome> {
    let arms = chosen(a)?;
    let roles = RoleSet::builtin("math")?;
    let names = roles.names();
    let pool = crate::models::load_pool(&a.pool)?;
    ensure!(
        crate::sim::uses_sim(&pool),
        "{}: the credit experiment needs a SIMULATED pool (its optimum must be known)",
        a.pool.display()
    );
    let catalogue = Catalogue::builtin()?;
    let ids: Vec<&hieramas_llm::pool::ModelSpec> =
        pool.models.iter().filter(|m| !m.exclude).collect();
    // The optimum by construction: the best proposer accuracy for the role.
    let mut optimum = Vec::new();
    for role in &names {
        let mut best: Option<(usize, f64)> = None;
        for (k, m) in ids.iter().enumerate() {
            let p = catalogue.get(&m.model)?.proposer_accuracy(Kind::Math, role);
            if best.is_none_or(|(_, b)| p > b) {
                best = Some((k, p));
            }
        }
        let (k, p) = best.context("the pool has no selectable models")?;
        optimum.push((k, p));
    }
    // The best synthesiser: the best judge (synthesisers have no role fitness).
    let mut best_judge = 0;
    for (k, m) in ids.iter().enumerate() {
        if catalogue.get(&m.model)?.judge(Kind::Math)
            > catalogue.get(&ids[best_judge].model)?.judge(Kind::Math)
        {
            best_judge = k;
        }
    }
    progress.note(crate::sim::BANNER);
    progress.note(&format!(
        "credit experiment: {} estimators x {} seeds, {} iterations each; optimum: {}",
        arms.len(),
        a.seeds,
        a.iterations,
        names
            .iter()
            .zip(&optimum)
            .map(|(r, (k, p))| format!("{r} -> {} ({p:.2})", ids[*k].id))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    progress.start((arms.len() * a.seeds) as u64, 0, "runs");
    let mut results: Vec<RunResult> = Vec::new();
    for arm in &arms {
        for seed in 0..a.seeds as u64 {
            progress.message(&format!(
                "SIMULATED credit experiment: {} seed {seed}",
                arm.name
            ));
            let cfg = Stage1Config {
                system: SystemConfig {
                    benchmark: Benchmark::Math,
                    pool: a.pool.clone(),
                    decision: None,
                    max_tokens: 2048, // the official agent calls
                    seed,
                    embedder: "local".into(),
                    metadata: "heuristic".into(),
                    embedder_pool: None,
                    embeddings: Some(a.out.join("embeddings")),
                    data_dir: a.data_dir.clone(),
                    budget: None,
                    budget_ledger: None,
                    roles: None,
                    cache: None,
                    official: crate::official::Official {
                        loss: arm.faithful,
                        joint_input: arm.joint,
                        ..Default::default()
                    },
                },
                credit: arm.credit,
                iterations: Some(a.iterations),
                lr: a.lr,
                entropy_coef: a.entropy_coef,
                batch_size: a.batch_size,
                width: None,
                eval_every: Some(a.iterations),
                train_limit: Some(a.train_limit),
                val_limit: a.val_limit.max(1),
                out: Some(a.out.join(arm.slug).join(format!("seed{seed}"))),
                fresh: a.fresh,
                stop_after: None,
                no_skip: !a.skip,
            };
            let outcome = crate::stage1::train(&cfg, &mut Silent)
                .await
                .with_context(|| format!("{} seed {seed}", arm.name))?;
            let v: Validation = outcome.validation.context("the run left no validation")?;
            results.push(RunResult {
                arm: arm.name,
                seed,
                p_optimal: v
                    .policy
                    .iter()
                    .zip(&optimum)
                    .map(|(p, (k, _))| p.proposer_prob[*k])
                    .collect(),
                argmax_optimal: v
                    .policy
                    .iter()
                    .zip(&optimum)
                    .map(|(p, (k, _))| p.proposer_argmax[*k])
                    .collect(),
                synth_skip: v
                    .policy
                    .iter()
                    .map(|p| p.synth_argmax[ids.len()])
                    .sum::<f64>()
                    / v.policy.len().max(1) as f64,
                synth_best: v
                    .policy
                    .iter()
                    .map(|p| p.synth_argmax[best_judge])
                    .sum::<f64>()
                    / v.policy.len().max(1) as f64,
                accuracy: v.accuracy,
                cost_usd: v.cost_usd,
            });
            progress.advance(1);
        }
    }
    progress.finish();
    let options = ids.len() + usize::from(a.skip);
    let (md, summary) = report(a, &arms, &names, &ids, &optimum, best_judge, &results)?;
    let svg = chart(&arms, &names, &summary, 1.0 / options as f64);
    std::fs::write(a.out.join("credit.svg"), svg).context("writing credit.svg")?;
    std::fs::write(a.out.join("REPORT.md"), &md).context("writing REPORT.md")?;
    std::fs::write(
        a.out.join("results.json"),
        serde_json::to_string_pretty(&serde_json::json!({
            "simulated": true,
            "pool": a.pool,
            "optimum": names.iter().zip(&optimum).map(|(r, (k, p))| serde_json::json!({"role": r, "model": ids[*k].id, "accuracy": p})).collect::<Vec<_>>(),
            "runs": results,
        }))?,
    )
    .context("writing results.json")?;
    Ok(CreditOutcome {
        report_md: md,
        report_path: a.out.join("REPORT.md"),
    })
}

/// Per role, the mean ± sd over seeds of one arm's probability of the optimum.
type MeanSd = Vec<(f64, f64)>;

/// The report's markdown, and per arm and role the mean ± sd probability of the optimum.
fn report(
    a: &CreditConfig,
    arms: &[&Arm],
    names: &[String],
    ids: &[&hieramas_llm::pool::ModelSpec],
    optimum: &[(usize, f64)],
    best_judge: usize,
    results: &[RunResult],
) -> Result<(String, Vec<MeanSd>)> {
    let options = ids.len() + usize::from(a.skip);
    let mut md = String::new();
    writeln!(
        md,
        "# SIMULATED — credit-assignment experiment (stage 1, MATH roles)\n"
    )?;
    writeln!(
        md,
        "Every number here comes from SIMULATED models (hieramas-sim, pool `{}`), not from real LLMs.\n",
        a.pool.display()
    )?;
    writeln!(
        md,
        "Setup: {} seeds per estimator; {} iterations x {} queries; learning rate {}; entropy coefficient {} \
         (official MATH settings otherwise: W = 2, T 10 -> 0.8, alpha 0.5, kappa 300, max_tokens 2048; decision: the pool's first \
         model); training on the first {} MATH train \
         queries; validation = argmax choices over the full graph on the first {} MATH valid queries. \
         Options: the pool's models{}. Chance for one option: 1/{options} = {:.2}.\n",
        a.seeds,
        a.iterations,
        a.batch_size.unwrap_or(6),
        a.lr.map_or("2e-3 (official)".to_string(), |lr| format!(
            "{lr} (official: 2e-3)"
        )),
        a.entropy_coef
            .map_or("1.0 (official)".to_string(), |c| format!(
                "{c} (official: 1.0)"
            )),
        a.train_limit,
        a.val_limit,
        if a.skip {
            " and `skip` (official)"
        } else {
            "; `skip` masked (`--skip` allows it, as the official stage 1 does)"
        },
        1.0 / options as f64
    )?;
    let mut command = format!(
        "hieramas experiment credit --seeds {} --iterations {} --train-limit {} --val-limit {} --pool {}",
        a.seeds,
        a.iterations,
        a.train_limit,
        a.val_limit,
        a.pool.display()
    );
    if let Some(b) = a.batch_size {
        command.push_str(&format!(" --batch-size {b}"));
    }
    if let Some(lr) = a.lr {
        command.push_str(&format!(" --lr {lr}"));
    }
    if let Some(c) = a.entropy_coef {
        command.push_str(&format!(" --entropy-coef {c}"));
    }
    if !a.arms.is_empty() {
        command.push_str(&format!(" --arms {}", a.arms.join(",")));
    }
    if a.skip {
        command.push_str(" --skip");
    }
    writeln!(md, "Command (reruns resume from `--out`): `{command}`\n")?;
    writeln!(
        md,
        "Optimum by construction (best proposer accuracy per role):\n"
    )?;
    for (r, (k, p)) in names.iter().zip(optimum) {
        writeln!(md, "- {r}: `{}` ({p:.2})", ids[*k].id)?;
    }
    writeln!(
        md,
        "\nP(opt) = mean probability of the optimal model at the role's proposer positions (T = 1), \
         mean ± sd over seeds; seeds = runs whose argmax is the optimal model on most validation \
         queries at that role.\n"
    )?;
    let mut header = "| estimator |".to_string();
    let mut rule = "|---|".to_string();
    for r in names {
        header.push_str(&format!(" {r}: P(opt) | seeds |"));
        rule.push_str("---|---|");
    }
    header.push_str(" all roles: seeds | accuracy | cost/query |");
    rule.push_str("---|---|---|");
    writeln!(md, "{header}\n{rule}")?;
    let mut summary = Vec::new();
    for arm in arms {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.arm == arm.name).collect();
        let mut row = format!("| {} |", arm.name);
        let mut per_role = Vec::new();
        for i in 0..names.len() {
            let ps: Vec<f64> = runs.iter().map(|r| r.p_optimal[i]).collect();
            let (m, sd) = mean_sd(&ps);
            let hits = runs.iter().filter(|r| r.argmax_optimal[i] > 0.5).count();
            row.push_str(&format!(" {m:.3} ± {sd:.3} | {hits}/{} |", runs.len()));
            per_role.push((m, sd));
        }
        let all = runs
            .iter()
            .filter(|r| r.argmax_optimal.iter().all(|&s| s > 0.5))
            .count();
        let (acc, acc_sd) = mean_sd(&runs.iter().map(|r| r.accuracy).collect::<Vec<_>>());
        let (cost, _) = mean_sd(&runs.iter().map(|r| r.cost_usd).collect::<Vec<_>>());
        row.push_str(&format!(
            " {all}/{} | {:.1}% ± {:.1} | ${cost:.6} |",
            runs.len(),
            100.0 * acc,
            100.0 * acc_sd
        ));
        writeln!(md, "{row}")?;
        summary.push(per_role);
    }
    writeln!(
        md,
        "\nSynthesisers (all roles; the best one by construction is the best judge, `{}`): share of \
         synthesiser positions whose argmax skips the supernode or picks the best judge, mean over seeds.\n",
        ids[best_judge].id
    )?;
    writeln!(
        md,
        "| estimator | synthesiser skipped | best synthesiser |\n|---|---|---|"
    )?;
    for arm in arms {
        let runs: Vec<&RunResult> = results.iter().filter(|r| r.arm == arm.name).collect();
        let (skip, _) = mean_sd(&runs.iter().map(|r| r.synth_skip).collect::<Vec<_>>());
        let (best, _) = mean_sd(&runs.iter().map(|r| r.synth_best).collect::<Vec<_>>());
        writeln!(
            md,
            "| {} | {:.0}% | {:.0}% |",
            arm.name,
            100.0 * skip,
            100.0 * best
        )?;
    }
    writeln!(md, "\n![P(optimal) per role](credit.svg)\n")?;
    writeln!(
        md,
        "Per-run numbers: `results.json`; each run's curve, checkpoints and validation: `<estimator>/seed<k>/`."
    )?;
    Ok((md, summary))
}

/// Grouped bars: per role, one bar per estimator (mean P(optimal), ± sd), chance dashed.
fn chart(arms: &[&Arm], roles: &[String], summary: &[Vec<(f64, f64)>], chance: f64) -> String {
    let (w, h) = (760.0, 420.0);
    let (left, right, top, bottom) = (60.0, 20.0, 50.0, 110.0);
    let plot_w = w - left - right;
    let plot_h = h - top - bottom;
    let y = |v: f64| top + plot_h * (1.0 - v.clamp(0.0, 1.0));
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"{w}\" height=\"{h}\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" text-anchor=\"middle\" font-size=\"15\" font-weight=\"bold\">SIMULATED: probability of the optimal model per role after stage 1</text>\n",
        w / 2.0
    );
    for t in 0..=5 {
        let v = t as f64 / 5.0;
        s.push_str(&format!(
            "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#e0e0e0\"/><text x=\"{}\" y=\"{:.1}\" text-anchor=\"end\">{v:.1}</text>\n",
            w - right,
            y(v),
            y(v),
            left - 6.0,
            y(v) + 4.0
        ));
    }
    let group = plot_w / roles.len().max(1) as f64;
    let bar = group * 0.8 / arms.len().max(1) as f64;
    for (i, role) in roles.iter().enumerate() {
        let gx = left + group * i as f64 + group * 0.1;
        for (j, arm) in arms.iter().enumerate() {
            let Some(&(m, sd)) = summary.get(j).and_then(|r| r.get(i)) else {
                continue;
            };
            let x = gx + bar * j as f64;
            s.push_str(&format!(
                "<rect x=\"{x:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{}: {m:.3} ± {sd:.3}</title></rect>\n",
                y(m),
                bar * 0.9,
                y(0.0) - y(m),
                arm.color,
                arm.name
            ));
            let cx = x + bar * 0.45;
            s.push_str(&format!(
                "<line x1=\"{cx:.1}\" x2=\"{cx:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"black\"/>\n",
                y(m - sd),
                y(m + sd)
            ));
        }
        s.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{role}</text>\n",
            gx + group * 0.4,
            y(0.0) + 18.0
        ));
    }
    s.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{}\" y1=\"{:.1}\" y2=\"{:.1}\" stroke=\"#d62728\" stroke-dasharray=\"6 4\"/><text x=\"{}\" y=\"{:.1}\" fill=\"#d62728\" text-anchor=\"end\">chance {chance:.2}</text>\n",
        w - right,
        y(chance),
        y(chance),
        w - right - 4.0,
        y(chance) - 4.0
    ));
    s.push_str(&format!(
        "<line x1=\"{left}\" x2=\"{left}\" y1=\"{top}\" y2=\"{:.1}\" stroke=\"black\"/><text x=\"16\" y=\"{:.1}\" transform=\"rotate(-90 16 {:.1})\" text-anchor=\"middle\">P(optimal model) at proposers</text>\n",
        y(0.0),
        top + plot_h / 2.0,
        top + plot_h / 2.0
    ));
    for (j, arm) in arms.iter().enumerate() {
        let lx = left + (j % 2) as f64 * 330.0;
        let ly = h - 50.0 + (j / 2) as f64 * 20.0;
        s.push_str(&format!(
            "<rect x=\"{lx}\" y=\"{:.1}\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{:.1}\" y=\"{ly:.1}\">{}</text>\n",
            ly - 10.0,
            arm.color,
            lx + 18.0,
            arm.name
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arms_are_chosen_by_slug_and_unknown_ones_refused() {
        let all = chosen(&CreditConfig::default()).unwrap();
        assert_eq!(all.len(), 6);
        let two = CreditConfig {
            arms: vec!["aware-multi-fixed".into(), "multi-fixed".into()],
            ..CreditConfig::default()
        };
        let slugs: Vec<&str> = chosen(&two).unwrap().iter().map(|a| a.slug).collect();
        assert_eq!(slugs, ["multi-fixed", "aware-multi-fixed"]);
        let bad = CreditConfig {
            arms: vec!["nope".into()],
            ..CreditConfig::default()
        };
        let e = chosen(&bad).err().unwrap().to_string();
        assert!(e.contains("nope") && e.contains("aware-multi-fixed"), "{e}");
    }
}
