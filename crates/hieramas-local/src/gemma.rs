//! A Gemma 3 forward pass (text decoder) over quantized GGUF weights, for several sequences at
//! once, written from the architecture rather than taken from candle-transformers (whose
//! `quantized_gemma3` uses SiLU in the MLP and ignores the sliding window at decode).
//!
//! Per layer: RMSNorm → q/k/v → per-head RMSNorm of q and k → NeoX RoPE (base 10 000 on local
//! layers, the model's base on global ones) → attention (local layers see the last
//! `sliding_window` positions, every `swa_pattern`-th layer is global) → RMSNorm → residual;
//! then RMSNorm → GELU-tanh(gate) · up → down → RMSNorm → residual. Embeddings are scaled by
//! √hidden; the output head is tied to the embedding table. The RoPE tables are computed once
//! per base and shared by every layer. Prompts may arrive in chunks (chunked prefill); the KV
//! cache of a local layer keeps only the keys a later query can still see.

use candle_core::quantized::gguf_file;
use candle_core::{Device, Tensor};

use crate::LocalError;
use crate::nn::{
    AttnSpec, KvCache, Proj, QEmbedding, attend, ce, check_batch, finish_batch, load_f32,
    load_qtensor, md_f32, md_usize, rope_tables, split_heads,
};

/// Hyper-parameters read from GGUF metadata.
#[derive(Clone, Debug)]
pub struct GemmaConfig {
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub rms_eps: f64,
    /// RoPE base of the global layers.
    pub rope_theta: f32,
    /// RoPE base of the local (sliding-window) layers.
    pub rope_theta_local: f32,
    /// Linear RoPE scaling of the global layers (1.0 for none).
    pub rope_scale: f32,
    pub sliding_window: usize,
    /// Layer `i` is global when `(i + 1) % swa_pattern == 0`.
    pub swa_pattern: usize,
    pub attn_scale: f64,
    pub context: usize,
}

struct Layer {
    attn_norm: Tensor,
    wq: Proj,
    wk: Proj,
    wv: Proj,
    wo: Proj,
    q_norm: Tensor,
    k_norm: Tensor,
    post_attn_norm: Tensor,
    ffn_norm: Tensor,
    gate: Proj,
    up: Proj,
    down: Proj,
    post_ffn_norm: Tensor,
}

/// The weights of one loaded Gemma 3 model; shareable across sequences.
pub struct Gemma {
    pub config: GemmaConfig,
    embed: QEmbedding,
    layers: Vec<Layer>,
    norm: Tensor,
    lm_head: Proj,
    rope_local: (Tensor, Tensor),
    rope_global: (Tensor, Tensor),
}

impl Gemma {
    /// Loads a `gemma3` GGUF. `max_context` caps the context (and the RoPE tables) below the
    /// model's own 32k, which keeps memory small.
    pub fn load<R: std::io::Read + std::io::Seek>(
        c: &gguf_file::Content,
        r: &mut R,
        max_context: Option<usize>,
    ) -> Result<Gemma, LocalError> {
        let dev = &Device::Cpu;
        let a = "gemma3";
        let hidden = md_usize(c, &format!("{a}.embedding_length"))?;
        let heads = md_usize(c, &format!("{a}.attention.head_count"))?;
        let head_dim = md_usize(c, &format!("{a}.attention.key_length")).unwrap_or(hidden / heads);
        let context = md_usize(c, &format!("{a}.context_length")).unwrap_or(32_768);
        let rope_scale = match c
            .metadata
            .get(&format!("{a}.rope.scaling.type"))
            .and_then(|v| v.to_string().ok())
        {
            Some(t) if t == "linear" => {
                md_f32(c, &format!("{a}.rope.scaling.factor")).unwrap_or(1.0)
            }
            _ => 1.0,
        };
        let config = GemmaConfig {
            hidden,
            layers: md_usize(c, &format!("{a}.block_count"))?,
            heads,
            kv_heads: md_usize(c, &format!("{a}.attention.head_count_kv")).unwrap_or(heads),
            head_dim,
            rms_eps: f64::from(
                md_f32(c, &format!("{a}.attention.layer_norm_rms_epsilon")).unwrap_or(1e-6),
            ),
            rope_theta: md_f32(c, &format!("{a}.rope.freq_base")).unwrap_or(1_000_000.0),
            rope_theta_local: 10_000.0,
            rope_scale,
            sliding_window: md_usize(c, &format!("{a}.attention.sliding_window")).unwrap_or(512),
            swa_pattern: 6,
            // query_pre_attn_scalar = head_dim for the small Gemma 3 models.
            attn_scale: 1.0 / (head_dim as f64).sqrt(),
            context: max_context.map_or(context, |m| m.min(context)),
        };
        let tied = !c.tensor_infos.contains_key("output.weight");
        let (embed, tied_head) = QEmbedding::load(c, r, "token_embd.weight", tied)?;
        let mut layers = Vec::with_capacity(config.layers);
        for i in 0..config.layers {
            let q = |n: &str, r: &mut R| -> Result<Proj, LocalError> {
                Proj::new(load_qtensor(c, r, &format!("blk.{i}.{n}.weight"), dev)?)
            };
            let f = |n: &str, r: &mut R| load_f32(c, r, &format!("blk.{i}.{n}.weight"), dev);
            layers.push(Layer {
                attn_norm: f("attn_norm", r)?,
                wq: q("attn_q", r)?,
                wk: q("attn_k", r)?,
                wv: q("attn_v", r)?,
                wo: q("attn_output", r)?,
                q_norm: f("attn_q_norm", r)?,
                k_norm: f("attn_k_norm", r)?,
                post_attn_norm: f("post_attention_norm", r)?,
                ffn_norm: f("ffn_norm", r)?,
                gate: q("ffn_gate", r)?,
                up: q("ffn_up", r)?,
                down: q("ffn_down", r)?,
                post_ffn_norm: f("post_ffw_norm", r)?,
            });
        }
        let lm_head = match tied_head {
            Some(head) => head,
            None => Proj::new(load_qtensor(c, r, "output.weight", dev)?)?,
        };
        let rope_local = rope_tables(head_dim, config.context, config.rope_theta_local, 1.0, dev)?;
        let rope_global = rope_tables(
            head_dim,
            config.context,
            config.rope_theta,
            config.rope_scale,
            dev,
        )?;
        Ok(Gemma {
            norm: load_f32(c, r, "output_norm.weight", dev)?,
            config,
            embed,
            layers,
            lm_head,
            rope_local,
            rope_global,
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

    fn is_global(&self, layer: usize) -> bool {
        (layer + 1).is_multiple_of(self.config.swa_pattern)
    }

    /// Runs one chunk of new tokens per sequence; returns each sequence's next-token logits
    /// (f32, `[vocab]`) and extends its cache.
    pub fn forward(&self, batch: &mut [(&mut KvCache, &[u32])]) -> Result<Vec<Tensor>, LocalError> {
        let cfg = &self.config;
        let dev = Device::Cpu;
        let ids = check_batch(batch, cfg.context)?;
        let mut x = (self.embed.lookup(&ids, &dev)? * (cfg.hidden as f64).sqrt()).map_err(ce)?;
        let (h, kvh, hd) = (cfg.heads, cfg.kv_heads, cfg.head_dim);
        let eps = cfg.rms_eps as f32;
        let norm = |t: &Tensor, w: &Tensor| candle_nn::ops::rms_norm(t, w, eps).map_err(ce);
        for (li, layer) in self.layers.iter().enumerate() {
            let global = self.is_global(li);
            let spec = AttnSpec {
                heads: h,
                kv_heads: kvh,
                head_dim: hd,
                scale: cfg.attn_scale,
                window: (!global).then_some(cfg.sliding_window),
            };
            let (cos_t, sin_t) = if global {
                &self.rope_global
            } else {
                &self.rope_local
            };
            let hn = norm(&x, &layer.attn_norm)?;
            let [q, k, v] = Proj::forward_all([&layer.wq, &layer.wk, &layer.wv], &hn)?;
            let mut outs = Vec::with_capacity(batch.len());
            let mut offset = 0;
            for (cache, toks) in batch.iter_mut() {
                let (n, pos) = (toks.len(), cache.len);
                let qc = norm(&split_heads(&q, offset, n, h, hd)?, &layer.q_norm)?;
                let kc = norm(&split_heads(&k, offset, n, kvh, hd)?, &layer.k_norm)?;
                let vc = split_heads(&v, offset, n, kvh, hd)?;
                let cos = cos_t.narrow(0, pos, n).map_err(ce)?;
                let sin = sin_t.narrow(0, pos, n).map_err(ce)?;
                let rope = |t: &Tensor| -> candle_core::Result<Tensor> {
                    candle_nn::rotary_emb::rope(&t.unsqueeze(0)?, &cos, &sin)?.squeeze(0)
                };
                let (qc, kc) = (rope(&qc).map_err(ce)?, rope(&kc).map_err(ce)?);
                outs.push(attend(cache.slot(li, cfg.layers), &qc, kc, vc, pos, &spec)?);
                offset += n;
            }
            let attn = layer.wo.forward(&Tensor::cat(&outs, 0).map_err(ce)?)?;
            x = (x + norm(&attn, &layer.post_attn_norm)?).map_err(ce)?;
            let hn = norm(&x, &layer.ffn_norm)?;
            let [g, u] = Proj::forward_all([&layer.gate, &layer.up], &hn)?;
            let gu = g.gelu().and_then(|g| g * u).map_err(ce)?;
            let mlp = layer.down.forward(&gu)?;
            x = (x + norm(&mlp, &layer.post_ffn_norm)?).map_err(ce)?;
        }
        let last = finish_batch(batch);
        let rows = Tensor::from_vec(last, batch.len(), &dev).map_err(ce)?;
        let xl = norm(&x.index_select(&rows, 0).map_err(ce)?, &self.norm)?;
        let logits = self.lm_head.forward(&xl)?;
        (0..batch.len())
            .map(|i| logits.get(i).map_err(ce))
            .collect()
    }
}
