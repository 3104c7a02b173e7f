//! Our tokenizers and forwards against an independent reference (llama.cpp): token ids on
//! tricky strings, and greedy continuations of fixed prompts. See fixtures/reference.json.

#![allow(clippy::unwrap_used)]

use candle_core::quantized::gguf_file;
use hieramas_llm::Message;
use hieramas_local::KvCache;
use hieramas_local::engine::{Net, sample};
use hieramas_local::fetch::Manifest;
use hieramas_local::tokenizer::GgufTokenizer;
use rand::SeedableRng;
use serde_json::Value;

fn fixture() -> Value {
    serde_json::from_str(include_str!("fixtures/reference.json")).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn open(model: &str) -> Option<(gguf_file::Content, std::fs::File)> {
    let path = hieramas_local::model_for_tests(model)?;
    let mut f = std::fs::File::open(path).unwrap();
    let c = gguf_file::Content::read(&mut f).unwrap();
    Some((c, f))
}

#[test]
fn tokenizers_match_llama_cpp() {
    let fx = fixture();
    for model in ["smollm2-135m", "gemma3-270m"] {
        let Some((c, _)) = open(model) else { continue };
        let tok = GgufTokenizer::from_gguf(&c).unwrap();
        for case in fx["tokenize"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["model"] == model)
        {
            let want = ids(&case["ids"]);
            let text = match case.get("text") {
                Some(t) => t.as_str().unwrap().to_string(),
                None => tok.decode(&ids(&case["decode_of"])).unwrap(),
            };
            let got = if case["special"].as_bool().unwrap() {
                tok.encode_with_special(&text).unwrap()
            } else {
                tok.encode(&text).unwrap()
            };
            assert_eq!(got, want, "{model}: {text:?}");
            if !case["special"].as_bool().unwrap() {
                assert_eq!(
                    tok.decode(&got).unwrap(),
                    text,
                    "{model}: decode round trip"
                );
            }
        }
    }
}

#[test]
fn greedy_continuations_match_llama_cpp() {
    let fx = fixture();
    let manifest = Manifest::builtin().unwrap();
    for case in fx["greedy"].as_array().unwrap() {
        let model = case["model"].as_str().unwrap();
        let Some((c, mut f)) = open(model) else {
            continue;
        };
        let tok = GgufTokenizer::from_gguf(&c).unwrap();
        let format = manifest.get(model).unwrap().chat.clone().unwrap();
        let prompt = ids(&case["prompt_ids"]);
        // Our prompt building gives the reference prompt ids.
        let ours = match case.get("raw_prompt") {
            Some(raw) => [
                vec![tok.bos_id.unwrap()],
                tok.encode(raw.as_str().unwrap()).unwrap(),
            ]
            .concat(),
            None => format
                .render(
                    &[
                        Message::system(case["system"].as_str().unwrap()),
                        Message::user(case["user"].as_str().unwrap()),
                    ],
                    &tok,
                )
                .unwrap(),
        };
        assert_eq!(ours, prompt, "{model}: prompt ids");
        let net = Net::load(&c, &mut f, Some(2048)).unwrap();
        let want = ids(&case["generated_ids"]);
        let mut cache = KvCache::default();
        let mut logits = net.forward(&mut [(&mut cache, &prompt)]).unwrap().remove(0);
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let next = sample(&logits.to_vec1::<f32>().unwrap(), 0.0, 1.0, &mut rng);
            got.push(next);
            if format.stop_ids.contains(&next) {
                break;
            }
            logits = net.forward(&mut [(&mut cache, &[next])]).unwrap().remove(0);
        }
        assert_eq!(got, want, "{model}: greedy tokens ({:?})", tok.decode(&got));
    }
}
