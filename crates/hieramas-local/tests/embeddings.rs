//! all-MiniLM-L6-v2 on the real weights: BERT-uncased token ids, 384-d unit vectors, padding
//! inside a batch changes nothing, truncation at the model's 256-token limit, and meaning
//! decides similarity.

#![allow(clippy::unwrap_used)]

use hieramas_llm::{Embedder, Price};
use hieramas_local::minilm::MiniLm;
use hieramas_local::pool::LocalModels;

fn embedder() -> Option<MiniLm> {
    hieramas_local::model_for_tests("minilm-l6-v2")?;
    Some(
        LocalModels::from_env()
            .unwrap()
            .embedder(Price::default())
            .unwrap(),
    )
}

fn cos(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

#[tokio::test]
async fn minilm_embeds_like_sentence_transformers() {
    let Some(e) = embedder() else { return };
    // bert-base-uncased vocabulary: [CLS]=101, hello=7592, world=2088, [SEP]=102; lower-cased.
    assert_eq!(e.token_ids("Hello World").unwrap(), [101, 7592, 2088, 102]);
    assert_eq!(e.token_ids(&"word ".repeat(1000)).unwrap().len(), 256);

    let texts: Vec<String> = [
        "A man is playing a guitar.",
        "Someone plays an acoustic guitar on stage.",
        "The stock market fell sharply on Tuesday.",
        "Quarterly earnings reports sent share prices down across the exchange today, analysts said.",
    ]
    .map(String::from)
    .to_vec();
    let out = e.embed(&texts).await.unwrap();
    assert_eq!(out.model, "local/minilm-l6-v2");
    assert_eq!(out.vectors.len(), 4);
    for v in &out.vectors {
        assert_eq!(v.len(), 384);
        assert!((cos(v, v) - 1.0).abs() < 1e-4);
    }
    assert!(out.usage.prompt_tokens > 30 && out.usage.completion_tokens == 0);
    let v = &out.vectors;
    assert!(
        cos(&v[0], &v[1]) > 0.5,
        "paraphrases: {}",
        cos(&v[0], &v[1])
    );
    assert!(cos(&v[0], &v[1]) > cos(&v[0], &v[2]) + 0.3);
    assert!(cos(&v[2], &v[3]) > cos(&v[1], &v[3]));
    // Alone (no padding) and in a batch beside a longer text (padded): the same vector.
    let alone = e.embed(&texts[..1]).await.unwrap().vectors.remove(0);
    assert!(alone.iter().zip(&v[0]).all(|(a, b)| (a - b).abs() < 1e-4));
    assert!(e.embed(&[]).await.unwrap().vectors.is_empty());
}
