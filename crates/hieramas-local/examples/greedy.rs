//! Greedy decoding straight on the network (no batching engine): prints the prompt ids, the
//! generated ids, the text and the speed.
//!
//! `cargo run --release -p hieramas-local --example greedy -- smollm2-135m "What is the capital of France?" 16`

use std::time::Instant;

use candle_core::quantized::gguf_file;
use hieramas_local::KvCache;
use hieramas_local::engine::{Net, sample};
use hieramas_local::fetch::{Manifest, ModelStore};
use hieramas_local::tokenizer::GgufTokenizer;
use rand::SeedableRng;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let model = args.first().map_or("smollm2-135m", String::as_str);
    let question = args
        .get(1)
        .map_or("What is the capital of France?", String::as_str);
    let n: usize = args.get(2).map(|s| s.parse()).transpose()?.unwrap_or(16);
    let entry = Manifest::builtin()?.get(model)?.clone();
    let format = entry.chat.clone().ok_or("no chat format")?;
    let path = ModelStore::from_env().path(&entry);
    let t0 = Instant::now();
    let mut f = std::fs::File::open(&path)?;
    let content = gguf_file::Content::read(&mut f)?;
    let tok = GgufTokenizer::from_gguf(&content)?;
    let net = Net::load(&content, &mut f, Some(format.max_context))?;
    eprintln!("load {:.2}s", t0.elapsed().as_secs_f64());
    let prompt = format.render(&[hieramas_llm::Message::user(question)], &tok)?;
    println!("prompt_ids {prompt:?}");
    let mut cache = KvCache::default();
    let t1 = Instant::now();
    let mut logits = net.forward(&mut [(&mut cache, &prompt)])?.remove(0);
    let prefill = t1.elapsed();
    let mut out = Vec::new();
    let t2 = Instant::now();
    let mut rng = rand::rngs::StdRng::from_seed([0; 32]);
    for _ in 0..n {
        let next = sample(&logits.to_vec1::<f32>()?, 0.0, 1.0, &mut rng);
        out.push(next);
        if format.stop_ids.contains(&next) {
            break;
        }
        logits = net.forward(&mut [(&mut cache, &[next])])?.remove(0);
    }
    let decode = t2.elapsed();
    println!("generated_ids {out:?}");
    println!("text {:?}", tok.decode(&out)?);
    eprintln!(
        "prefill {} tok in {:.3}s ({:.0} tok/s); decode {} tok in {:.3}s ({:.1} tok/s)",
        prompt.len(),
        prefill.as_secs_f64(),
        prompt.len() as f64 / prefill.as_secs_f64(),
        out.len(),
        decode.as_secs_f64(),
        out.len() as f64 / decode.as_secs_f64()
    );
    Ok(())
}
