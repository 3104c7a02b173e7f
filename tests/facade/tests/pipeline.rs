//! The whole pipeline as a Rust user calls it, on a SIMULATED pool (`pools/sim-paper.toml`,
//! hieramas-sim): stage 1, stage-2 data, the classifier, then the trained system answers a
//! query — every step a library call of the `hieramas` crate, no subprocess, and the records
//! each step wrote read back as their types.

#![allow(clippy::unwrap_used)]

use std::path::PathBuf;

use hieramas::Benchmark;
use hieramas::progress::{Notes, Progress};
use hieramas::records::{CurveRow, FitOutput, TaskRecord, Validation, read_json, read_jsonl};
use hieramas::stage1::{Stage1Config, SystemConfig};
use hieramas::stage2::{DataConfig, FitConfig, Hieramas, HieramasConfig};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("hieramas-facade-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_simulated_pipeline_runs_through_library_calls() {
    let dir = scratch("pipeline");
    let system = SystemConfig {
        benchmark: Benchmark::Math,
        pool: PathBuf::from("pools/sim-paper.toml"),
        decision: Some("gpt-5-mini".into()),
        max_tokens: 2048,
        embeddings: Some(dir.join("embeddings")),
        ..SystemConfig::default()
    };
    let mut notes = Notes::default();
    hieramas::block_on(async {
        // Stage 1: two iterations of two queries, validated on two.
        let s1 = hieramas::stage1::train(
            &Stage1Config {
                system: system.clone(),
                iterations: Some(2),
                batch_size: Some(2),
                train_limit: Some(4),
                val_limit: 2,
                out: Some(dir.join("stage1")),
                ..Stage1Config::default()
            },
            &mut notes,
        )
        .await
        .unwrap();
        assert!(s1.simulated);
        let selector = s1.selector.clone().unwrap();
        assert!(selector.exists());
        let curve: Vec<CurveRow> = read_jsonl(&dir.join("stage1/curve.jsonl")).unwrap();
        assert_eq!(curve.len(), 2);
        assert!(
            curve
                .iter()
                .all(|r| r.simulated && r.loss.is_finite() && r.cost_pico > 0)
        );
        assert_eq!(
            curve[1].val_accuracy,
            s1.validation.as_ref().map(|v| v.accuracy)
        );
        let v: Validation = read_json(&dir.join("stage1/validation.json")).unwrap();
        let returned = s1.validation.as_ref().unwrap();
        assert_eq!(
            (v.accuracy, &v.options),
            (returned.accuracy, &returned.options)
        );
        // JSON keeps f64 to within a unit in the last place (serde_json's default parser).
        for (a, b) in v.policy.iter().zip(&returned.policy) {
            for (x, y) in a.proposer_prob.iter().zip(&b.proposer_prob) {
                assert!((x - y).abs() < 1e-12, "{x} vs {y}");
            }
        }
        assert_eq!(v.queries, 2);
        assert_eq!(v.options.last().map(String::as_str), Some("skip"));

        // Stage-2 data: six train tasks, three distinct DAGs each, labelled.
        let data = hieramas::stage2::generate_data(
            &DataConfig {
                system: system.clone(),
                stage1: selector.clone(),
                limit: Some(6),
                graphs: Some(3),
                out: Some(dir.join("data")),
                ..DataConfig::default()
            },
            &mut notes,
        )
        .await
        .unwrap();
        assert!(data.simulated);
        assert_eq!(data.records.len(), 6);
        let lines: Vec<TaskRecord> = read_jsonl(&dir.join("data/tasks.jsonl")).unwrap();
        assert_eq!(lines, data.records);
        for t in &lines {
            assert_eq!(t.runs.len(), 3, "{}", t.task_id);
            assert!(t.runs.iter().any(|r| r.label), "{}: no positive", t.task_id);
        }

        // The classifier, and its report read back.
        let fit = hieramas::stage2::fit(
            &FitConfig {
                data: dir.join("data"),
                out: Some(dir.join("classifier")),
                epochs: Some(3),
                ..FitConfig::default()
            },
            &mut notes,
        )
        .unwrap();
        let report: FitOutput = read_json(&dir.join("classifier/report.json")).unwrap();
        assert!(report.simulated);
        assert_eq!(report.fit.epochs.len(), fit.fit.epochs.len());
        assert!(dir.join("classifier/classifier.safetensors").exists());

        // The trained system answers a test query (the simulated models know its answer).
        let data_dir = hieramas::tasks::data::DataDir::resolve(None).unwrap();
        let test = hieramas::sim::select(&data_dir, Benchmark::Math, "test", Some(1)).unwrap();
        let known: Vec<_> = test.iter().collect();
        let loaded = Hieramas::load(
            &HieramasConfig {
                system: system.clone(),
                stage1: selector,
                stage2: Some(dir.join("classifier/classifier.safetensors")),
                ..HieramasConfig::default()
            },
            &data_dir,
            &known,
            None,
            &mut notes,
        )
        .await
        .unwrap();
        assert!(loaded.name.contains("SIMULATED"), "{}", loaded.name);
        let (_, plan) = loaded.planner.choose(&test[0]).await.unwrap();
        assert!(plan.candidates >= 2 && plan.chosen < plan.candidates);
        let answerer = hieramas::System::learned(loaded.planner, loaded.description);
        let (answer, trace) = answerer.answer(&test[0].task).await.unwrap();
        assert!(!answer.is_empty());
        assert!(trace.total_cost_pico > 0 && !trace.calls.is_empty());
        let pool = hieramas::models::load_pool(&system.pool).unwrap();
        for c in &trace.calls {
            assert!(
                pool.get(&c.model).is_some(),
                "{} is not a pool model",
                c.model
            );
        }
    })
    .unwrap();
    // Every step said it was SIMULATED, and reported progress.
    let banners = notes
        .lines
        .iter()
        .filter(|l| l.starts_with("SIMULATED:"))
        .count();
    assert!(banners >= 4, "{:?}", notes.lines);
    assert!(notes.advanced >= 4 + 6 + 3, "{}", notes.advanced);
    notes.finish();
    std::fs::remove_dir_all(&dir).unwrap();
}
