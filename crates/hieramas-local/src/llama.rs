//! A llama-architecture forward pass (SmolLM2) over quantized GGUF weights, for several
//! sequences at once.
//!
//! [`Llama::forward`] takes one chunk of new tokens per sequence — a whole prompt (prefill) or
//! one token (decode), mixed freely — and runs every projection and MLP over all their rows
//! together, so the weights are read once per step for the whole batch; attention is computed
//! per sequence against its own [`KvCache`]. Tensors whose quant type has no fast CPU kernel in
//! candle (Q4_1, Q5_0, Q5_1) are re-quantised to Q8_0 at load.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use crate::LocalError;
use crate::nn::{
    AttnSpec, KvCache, Proj, QEmbedding, attend, ce, check_batch, finish_batch, load_f32,
    load_qtensor, md_f32, md_usize, rope_tables, split_heads,
};

/// Hyper-parameters read from GGUF metadata.
#[derive(Clone, Debug)]
pub struct LlamaConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    pub rope_theta: f32,
    pub context: usize,
}

struct Layer {
    attn_norm: Tensor,
    wq: Proj,
    wk: Proj,
    wv: Proj,
    wo: Proj,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
}

/// The weights of one loaded model; shareable across sequences.
pub struct Llama {
    pub config: LlamaConfig,
    embed: QEmbedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Proj,
    cos: Tensor,
    sin: Tensor,
}

impl Llama {
    /// Loads a llama-architecture GGUF (`general.architecture = "llama"`). `max_context`
    /// caps the context (and the RoPE tables) below the model's own.
    pub fn load<R: std::io::Read + std::io::Seek>(
        c: &gguf_file::Content,
        r: &mut R,
        max_context: Option<usize>,
    ) -> Result<Llama, LocalError> {
        let dev = &Device::Cpu;
        let hidden = md_usize(c, "llama.embedding_length")?;
        let heads = md_usize(c, "llama.attention.head_count")?;
        let context = md_usize(c, "llama.context_length").unwrap_or(2048);
        let config = LlamaConfig {
            hidden,
            layers: md_usize(c, "llama.block_count")?,
            heads,
            kv_heads: md_usize(c, "llama.attention.head_count_kv").unwrap_or(heads),
            head_dim: hidden / heads,
            rms_eps: f64::from(md_f32(c, "llama.attention.layer_norm_rms_epsilon").unwrap_or(1e-5)),
            rope_theta: md_f32(c, "llama.rope.freq_base").unwrap_or(10_000.0),
            context: max_context.map_or(context, |m| m.min(context)),
        };
        let tied = !c.tensor_infos.contains_key("output.weight");
        let (embed, tied_head) = QEmbedding::load(c, r, "token_embd.weight", tied)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let q = |n: &str, r: &mut R| -> Result<Proj, LocalError> {
                Proj::new(load_qtensor(c, r, &format!("blk.{i}.{n}.weight"), dev)?)
            };
            layers.push(Layer {
                attn_norm: load_f32(c, r, &format!("blk.{i}.attn_norm.weight"), dev)?,
                wq: q("attn_q", r)?,
                wk: q("attn_k", r)?,
                wv: q("attn_v", r)?,
                wo: q("attn_output", r)?,
                ffn_norm: load_f32(c, r, &format!("blk.{i}.ffn_norm.weight"), dev)?,
                gate: q("ffn_gate", r)?,
                up: q("ffn_up", r)?,
                down: q("ffn_down", r)?,
            });
        }
        let lm_head = match tied_head {
            Some(head) => head,
            None => Proj::new(load_qtensor(c, r, "output.weight", dev)?)?,
        };
        let (cos, sin) = rope_tables(config.head_dim, config.context, config.rope_theta, 1.0, dev)?;
        Ok(Llama {
            norm: load_f32(c, r, "output_norm.weight", dev)?,
            config,
            embed,
            layers,
            lm_head,
            cos,
            sin,
        })
    }

    /// Replaces every quantized projection by its f32 dequantization. Quantized matmuls
    /// round their activations to 8 bits, so chunk shapes can move a logit by ~1; with f32
    /// weights every split of a prompt gives the same logits (used by the consistency tests).
    pub fn dequantize(&mut self) -> Result<(), LocalError> {
        for l in &mut self.layers {
            for m in [
                &mut l.wq,
                &mut l.wk,
                &mut l.wv,
                &mut l.wo,
                &mut l.gate,
                &mut l.up,
                &mut l.down,
            ] {
                m.dequantize()?;
            }
        }
        self.lm_head.dequantize()
    }

    /// Vocabulary size (rows of the embedding table).
    pub fn vocab(&self) -> usize {
        self.embed.rows
    }

    /// Runs one chunk of new tokens per sequence; returns each sequence's next-token logits
    /// (f32, `[vocab]`) and extends its cache.
    pub fn forward(&self, batch: &mut [(&mut KvCache, &[u32])]) -> Result<Vec<Tensor>, LocalError> {
        let cfg = &self.config;
        let dev = Device::Cpu;
        let ids = check_batch(batch, cfg.context)?;
        let mut x = self.embed.lookup(&ids, &dev)?;
        let (h, kvh, hd) = (cfg.heads, cfg.kv_heads, cfg.head_dim);
        let spec = AttnSpec {
            heads: h,
            kv_heads: kvh,
            head_dim: hd,
            scale: 1.0 / (hd as f64).sqrt(),
            window: None,
        };
        let eps = cfg.rms_eps as f32;
        for (li, layer) in self.layers.iter().enumerate() {
            let hn = candle_nn::ops::rms_norm(&x, &layer.attn_norm, eps).map_err(ce)?;
            let [q, k, v] = Proj::forward_all([&layer.wq, &layer.wk, &layer.wv], &hn)?;
            let mut outs = Vec::with_capacity(batch.len());
            let mut offset = 0;
            for (cache, toks) in batch.iter_mut() {
                let (n, pos) = (toks.len(), cache.len);
                let (qc, kc, vc) = (
                    split_heads(&q, offset, n, h, hd)?,
                    split_heads(&k, offset, n, kvh, hd)?,
                    split_heads(&v, offset, n, kvh, hd)?,
                );
                let cos = self.cos.narrow(0, pos, n).map_err(ce)?;
                let sin = self.sin.narrow(0, pos, n).map_err(ce)?;
                // GGUF llama weights are permuted for interleaved (GPT-J style) rotation.
                let rope = |t: &Tensor| -> candle_core::Result<Tensor> {
                    candle_nn::rotary_emb::rope_i(&t.unsqueeze(0)?, &cos, &sin)?.squeeze(0)
                };
                let (qc, kc) = (rope(&qc).map_err(ce)?, rope(&kc).map_err(ce)?);
                outs.push(attend(cache.slot(li, cfg.layers), &qc, kc, vc, pos, &spec)?);
                offset += n;
            }
            let attn = Tensor::cat(&outs, 0).map_err(ce)?;
            x = (x + layer.wo.forward(&attn)?).map_err(ce)?;
            let hn = candle_nn::ops::rms_norm(&x, &layer.ffn_norm, eps).map_err(ce)?;
            let [g, u] = Proj::forward_all([&layer.gate, &layer.up], &hn)?;
            let gu = g.silu().and_then(|g| g * u).map_err(ce)?;
            let mlp = layer.down.forward(&gu)?;
            x = (x + mlp).map_err(ce)?;
        }
        // Only each sequence's last position is needed for the next token.
        let last = finish_batch(batch);
        let rows = Tensor::from_vec(last, batch.len(), &dev).map_err(ce)?;
        let xl = x.index_select(&rows, 0).map_err(ce)?;
        let xl = candle_nn::ops::rms_norm(&xl, &self.norm, eps).map_err(ce)?;
        let logits = self.lm_head.forward(&xl)?;
        (0..batch.len())
            .map(|i| logits.get(i).map_err(ce))
            .collect()
    }
}
