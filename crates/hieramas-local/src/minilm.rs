//! all-MiniLM-L6-v2 sentence embeddings: a BERT encoder in candle (safetensors weights,
//! WordPiece tokenizer from `tokenizer.json`), mean pooling over real tokens, L2-normalised,
//! 384 dimensions. Implements hieramas-llm's [`Embedder`].

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use async_trait::async_trait;
use candle_core::{D, DType, Device, Module, Tensor};
use candle_nn::{Embedding, LayerNorm, Linear, VarBuilder};
use hieramas_llm::{Embedder, Embeddings, LlmError, Price, Usage};
use serde::Deserialize;

use crate::LocalError;
use crate::nn::ce;

#[derive(Clone, Debug, Deserialize)]
struct BertConfig {
    hidden_size: usize,
    num_hidden_layers: usize,
    num_attention_heads: usize,
    max_position_embeddings: usize,
    #[serde(default = "eps")]
    layer_norm_eps: f64,
}

fn eps() -> f64 {
    1e-12
}

struct Layer {
    q: Linear,
    k: Linear,
    v: Linear,
    attn_out: Linear,
    attn_norm: LayerNorm,
    inter: Linear,
    out: Linear,
    out_norm: LayerNorm,
}

/// The loaded encoder and tokenizer.
pub struct MiniLm {
    id: String,
    cfg: BertConfig,
    tokenizer: tokenizers::Tokenizer,
    words: Embedding,
    positions: Embedding,
    types: Embedding,
    emb_norm: LayerNorm,
    layers: Vec<Layer>,
    price: Price,
    /// Longest input in tokens; longer texts are truncated (sentence-transformers uses 256).
    pub max_tokens: usize,
}

fn linear(vb: &VarBuilder, name: &str) -> candle_core::Result<Linear> {
    Ok(Linear::new(
        vb.get_unchecked(&format!("{name}.weight"))?,
        Some(vb.get_unchecked(&format!("{name}.bias"))?),
    ))
}

fn layer_norm(vb: &VarBuilder, name: &str, eps: f64) -> candle_core::Result<LayerNorm> {
    Ok(LayerNorm::new(
        vb.get_unchecked(&format!("{name}.weight"))?,
        vb.get_unchecked(&format!("{name}.bias"))?,
        eps,
    ))
}

impl MiniLm {
    /// Loads `model.safetensors`, `tokenizer.json` and `config.json` from `dir`.
    pub fn load(id: &str, dir: &Path, price: Price) -> Result<MiniLm, LocalError> {
        let load = |file: &str, e: String| LocalError::Load {
            path: dir.join(file).display().to_string(),
            detail: e,
        };
        let cfg_text = std::fs::read_to_string(dir.join("config.json"))
            .map_err(|e| load("config.json", e.to_string()))?;
        let cfg: BertConfig =
            serde_json::from_str(&cfg_text).map_err(|e| load("config.json", e.to_string()))?;
        let mut tokenizer = tokenizers::Tokenizer::from_file(dir.join("tokenizer.json"))
            .map_err(|e| load("tokenizer.json", e.to_string()))?;
        // Pad and truncate ourselves.
        tokenizer.with_padding(None);
        tokenizer
            .with_truncation(None)
            .map_err(|e| load("tokenizer.json", e.to_string()))?;
        let dev = Device::Cpu;
        let tensors: HashMap<String, Tensor> =
            candle_core::safetensors::load(dir.join("model.safetensors"), &dev)
                .map_err(|e| load("model.safetensors", e.to_string()))?;
        // Some exports prefix every name with `bert.`.
        let prefix = if tensors.contains_key("bert.embeddings.word_embeddings.weight") {
            "bert."
        } else {
            ""
        };
        let tensors = tensors
            .into_iter()
            .map(|(k, v)| {
                (
                    k.strip_prefix(prefix).unwrap_or(&k).to_string(),
                    v.to_dtype(DType::F32),
                )
            })
            .map(|(k, v)| v.map(|v| (k, v)))
            .collect::<candle_core::Result<HashMap<_, _>>>()
            .map_err(ce)?;
        let vb = VarBuilder::from_tensors(tensors, DType::F32, &dev);
        let w = |e: candle_core::Error| load("model.safetensors", e.to_string());
        let emb = |name: &str| -> Result<Embedding, LocalError> {
            let t = vb
                .get_unchecked(&format!("embeddings.{name}.weight"))
                .map_err(w)?;
            Ok(Embedding::new(t, cfg.hidden_size))
        };
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("encoder.layer.{i}");
            layers.push(Layer {
                q: linear(&vb, &format!("{p}.attention.self.query")).map_err(w)?,
                k: linear(&vb, &format!("{p}.attention.self.key")).map_err(w)?,
                v: linear(&vb, &format!("{p}.attention.self.value")).map_err(w)?,
                attn_out: linear(&vb, &format!("{p}.attention.output.dense")).map_err(w)?,
                attn_norm: layer_norm(
                    &vb,
                    &format!("{p}.attention.output.LayerNorm"),
                    cfg.layer_norm_eps,
                )
                .map_err(w)?,
                inter: linear(&vb, &format!("{p}.intermediate.dense")).map_err(w)?,
                out: linear(&vb, &format!("{p}.output.dense")).map_err(w)?,
                out_norm: layer_norm(&vb, &format!("{p}.output.LayerNorm"), cfg.layer_norm_eps)
                    .map_err(w)?,
            });
        }
        Ok(MiniLm {
            id: id.to_string(),
            words: emb("word_embeddings")?,
            positions: emb("position_embeddings")?,
            types: emb("token_type_embeddings")?,
            emb_norm: layer_norm(&vb, "embeddings.LayerNorm", cfg.layer_norm_eps).map_err(w)?,
            max_tokens: 256.min(cfg.max_position_embeddings),
            cfg,
            tokenizer,
            layers,
            price,
        })
    }

    /// Output dimension (384).
    pub fn dim(&self) -> usize {
        self.cfg.hidden_size
    }

    /// Token ids of `text` as the encoder sees them (`[CLS] … [SEP]`, truncated).
    pub fn token_ids(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        let enc = self
            .tokenizer
            .encode(text, true)
            .map_err(|e| LocalError::Format(format!("tokenizer: {e}")))?;
        let mut ids = enc.get_ids().to_vec();
        if ids.len() > self.max_tokens {
            // Keep [CLS] … and the final [SEP].
            let sep = ids[ids.len() - 1];
            ids.truncate(self.max_tokens - 1);
            ids.push(sep);
        }
        Ok(ids)
    }

    /// Embeds texts: one L2-normalised vector each, and the number of tokens read.
    pub fn embed_texts(&self, texts: &[String]) -> Result<(Vec<Vec<f32>>, usize), LocalError> {
        let mut out = Vec::with_capacity(texts.len());
        let mut tokens = 0;
        // Batches of similar length waste little on padding.
        let ids: Vec<Vec<u32>> = texts
            .iter()
            .map(|t| self.token_ids(t))
            .collect::<Result<_, _>>()?;
        let mut order: Vec<usize> = (0..texts.len()).collect();
        order.sort_by_key(|&i| ids[i].len());
        let mut vectors: Vec<Option<Vec<f32>>> = vec![None; texts.len()];
        for group in order.chunks(16) {
            let batch: Vec<&[u32]> = group.iter().map(|&i| ids[i].as_slice()).collect();
            tokens += batch.iter().map(|b| b.len()).sum::<usize>();
            let v = self.encode_batch(&batch).map_err(ce)?;
            for (&i, v) in group.iter().zip(v) {
                vectors[i] = Some(v);
            }
        }
        for v in vectors {
            out.push(v.ok_or_else(|| LocalError::Format("an embedding was not computed".into()))?);
        }
        Ok((out, tokens))
    }

    fn encode_batch(&self, batch: &[&[u32]]) -> candle_core::Result<Vec<Vec<f32>>> {
        let dev = Device::Cpu;
        let b = batch.len();
        let t = batch.iter().map(|x| x.len()).max().unwrap_or(1).max(1);
        let mut ids = vec![0u32; b * t];
        let mut mask = vec![0f32; b * t];
        for (i, seq) in batch.iter().enumerate() {
            ids[i * t..i * t + seq.len()].copy_from_slice(seq);
            mask[i * t..i * t + seq.len()].fill(1.0);
        }
        let ids = Tensor::from_vec(ids, (b, t), &dev)?;
        let mask = Tensor::from_vec(mask, (b, t), &dev)?;
        let pos = Tensor::arange(0u32, t as u32, &dev)?
            .unsqueeze(0)?
            .broadcast_as((b, t))?;
        let types = Tensor::zeros((b, t), DType::U32, &dev)?;
        let x = (self.words.forward(&ids)? + self.positions.forward(&pos)?)?;
        let mut x = self.emb_norm.forward(&(x + self.types.forward(&types)?)?)?;
        let (h, nh) = (self.cfg.hidden_size, self.cfg.num_attention_heads);
        let hd = h / nh;
        // Padding keys get -inf-like scores: [b, 1, 1, t].
        let bias = ((mask.clone() - 1.0)? * 1e9)?.reshape((b, 1, 1, t))?;
        let heads = |x: Tensor| x.reshape((b, t, nh, hd))?.transpose(1, 2)?.contiguous();
        for l in &self.layers {
            let q = heads(l.q.forward(&x)?)?;
            let k = heads(l.k.forward(&x)?)?;
            let v = heads(l.v.forward(&x)?)?;
            let att = (q.matmul(&k.t()?)? / (hd as f64).sqrt())?.broadcast_add(&bias)?;
            let att = candle_nn::ops::softmax_last_dim(&att)?;
            let ctx = att.matmul(&v)?.transpose(1, 2)?.reshape((b, t, h))?;
            x = l.attn_norm.forward(&(l.attn_out.forward(&ctx)? + &x)?)?;
            let inter = l.inter.forward(&x)?.gelu_erf()?;
            x = l.out_norm.forward(&(l.out.forward(&inter)? + &x)?)?;
        }
        // Mean over real tokens, then L2 normalisation.
        let m = mask.unsqueeze(2)?;
        let summed = x.broadcast_mul(&m)?.sum(1)?;
        let counts = m.sum(1)?;
        let mean = summed.broadcast_div(&counts)?;
        let norm = mean
            .sqr()?
            .sum_keepdim(D::Minus1)?
            .sqrt()?
            .clamp(1e-12, f64::MAX)?;
        mean.broadcast_div(&norm)?.to_vec2::<f32>()
    }
}

#[async_trait]
impl Embedder for MiniLm {
    fn id(&self) -> &str {
        &self.id
    }
    async fn embed(&self, texts: &[String]) -> Result<Embeddings, LlmError> {
        let started = Instant::now();
        // The encoder is small (a few ms per text): run it in place.
        let (vectors, tokens) = self.embed_texts(texts).map_err(|e| LlmError::Backend {
            model: self.id.clone(),
            detail: e.to_string(),
        })?;
        let usage = Usage {
            prompt_tokens: tokens as u64,
            completion_tokens: 0,
        };
        Ok(Embeddings {
            model: self.id.clone(),
            vectors,
            usage,
            cost: self.price.cost(usage),
            latency: started.elapsed(),
        })
    }
}
