//! Grades every HumanEval+ canonical solution and prints the time (expected outputs prepared
//! first, then timed separately): `HIERAMAS_DATA_DIR=... cargo run --release -p hieramas-tasks
//! --example humaneval_canonical [parallelism] [tasks]`.

use std::time::Instant;

use hieramas_tasks::data::DataDir;
use hieramas_tasks::humaneval::{Grader, SandboxOptions, default_cache_dir};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let parallelism = args.next().map_or(Ok(2), |a| a.parse())?;
    let limit = args.next().map_or(Ok(usize::MAX), |a| a.parse())?;
    let tasks = DataDir::resolve(None)?.humaneval_plus()?;
    let samples: Vec<(String, String)> = tasks
        .iter()
        .take(limit)
        .map(|t| {
            (
                t.task_id.clone(),
                format!("{}{}", t.prompt, t.canonical_solution),
            )
        })
        .collect();
    let g = Grader::new(
        tasks,
        default_cache_dir(),
        SandboxOptions {
            parallelism,
            ..SandboxOptions::default()
        },
    );
    let t = Instant::now();
    println!("isolation: {}", g.isolation()?.as_str());
    g.prepare()?;
    println!("prepare: {:.2?}", t.elapsed());
    if std::env::var_os("SLOWEST").is_some() {
        let mut times: Vec<(f64, &str)> = samples
            .iter()
            .map(|(id, code)| {
                let t = Instant::now();
                let _ = g.grade(id, code);
                (t.elapsed().as_secs_f64(), id.as_str())
            })
            .collect();
        times.sort_by(|a, b| b.0.total_cmp(&a.0));
        println!("slowest: {:?}", &times[..times.len().min(12)]);
        return Ok(());
    }
    let t = Instant::now();
    let results = g.grade_many(&samples, &|_| {});
    let took = t.elapsed();
    let mut failed = 0;
    for ((id, _), r) in samples.iter().zip(&results) {
        match r {
            Ok(o) if o.plus_pass() => {}
            Ok(o) => {
                failed += 1;
                println!("{id}: {:?}", o.first_error());
            }
            Err(e) => {
                failed += 1;
                println!("{id}: {e}");
            }
        }
    }
    println!(
        "{} canonical solutions graded at parallelism {parallelism} in {took:.2?}, {failed} not passing",
        samples.len()
    );
    Ok(())
}
