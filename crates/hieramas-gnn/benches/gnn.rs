//! GNN training throughput: graphs per second through forward + weighted BCE + backward + Adam
//! step, at the official shapes (MiniLM 384-d role and task features, GCN 128, hidden 64) for
//! each benchmark's role count and batch size; and scoring throughput (forward only) for
//! test-time candidate pools.

use candle_core::{DType, Device, Tensor};
use candle_nn::{AdamW, Optimizer, ParamsAdamW, VarBuilder, VarMap};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hieramas_gnn::fit::weighted_bce;
use hieramas_gnn::model::{Batch, Classifier, ClassifierConfig, Direction, init};
use rand::{Rng, SeedableRng};

fn setup(n: usize) -> (VarMap, Classifier) {
    let varmap = VarMap::new();
    let cfg = ClassifierConfig {
        roles: (0..n).map(|i| format!("r{i}")).collect(),
        role_dim: 384,
        task_dim: 384,
        gcn_out: 128,
        hidden: 64,
        dropout: 0.5,
        direction: Direction::Successors,
    };
    let cls = Classifier::new(
        cfg,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )
    .expect("classifier");
    let feats: Vec<Vec<f32>> = (0..n).map(|i| vec![i as f32 / 10.0; 384]).collect();
    init(&varmap, 1, &feats).expect("init");
    (varmap, cls)
}

/// `b` random forward DAGs over `n` roles with random 384-d task embeddings.
fn graphs(n: usize, b: usize) -> Vec<(Vec<[usize; 2]>, Vec<f32>)> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    (0..b)
        .map(|_| {
            let edges = (0..n)
                .flat_map(|s| (s + 1..n).map(move |d| [s, d]))
                .filter(|_| rng.random::<bool>())
                .collect::<Vec<_>>();
            let q = (0..384).map(|_| rng.random_range(-0.1..0.1)).collect();
            (edges, q)
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gnn");
    for (name, n, b) in [("math", 3, 64), ("humaneval", 5, 32), ("mmlu", 8, 128)] {
        let (varmap, cls) = setup(n);
        let data = graphs(n, b);
        let items: Vec<(&[[usize; 2]], &[f32])> = data
            .iter()
            .map(|g| (g.0.as_slice(), g.1.as_slice()))
            .collect();
        let labels: Vec<f32> = (0..b).map(|i| (i % 3 == 0) as u8 as f32).collect();
        let mut opt = AdamW::new(varmap.all_vars(), ParamsAdamW::default()).expect("adam");
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
        group.throughput(Throughput::Elements(b as u64));
        group.bench_function(format!("train_step/{name}/n{n}/b{b}"), |bench| {
            bench.iter(|| {
                let batch =
                    Batch::new(&items, n, Direction::Successors, &Device::Cpu).expect("batch");
                let y = Tensor::from_vec(labels.clone(), b, &Device::Cpu).expect("labels");
                let logits = cls.logits(&batch, Some(&mut rng)).expect("forward");
                let loss = weighted_bce(&logits, &y, 2.0).expect("loss");
                opt.backward_step(&loss).expect("step");
            })
        });
        let pool: Vec<Vec<[usize; 2]>> = graphs(n, 200).into_iter().map(|g| g.0).collect();
        let q = data[0].1.clone();
        group.throughput(Throughput::Elements(200));
        group.bench_function(format!("score_200/{name}/n{n}"), |bench| {
            bench.iter(|| cls.score(&pool, &q).expect("score"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
