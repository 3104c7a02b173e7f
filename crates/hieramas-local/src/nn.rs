//! Building blocks shared by the llama and Gemma 3 forwards: GGUF tensor loading (with
//! re-quantisation of slow formats), quantized projections padded for candle's fast kernels
//! ([`Proj`]), a quantized embedding table read row by row, RoPE
//! tables, and attention of new queries against a per-layer KV cache with an optional
//! sliding window.

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor, ggml_file, gguf_file};
use candle_core::{DType, Device, Module, Tensor};

use crate::{LocalError, qmm};

pub(crate) fn ce(e: candle_core::Error) -> LocalError {
    LocalError::Format(e.to_string())
}

/// Replaces a quantized projection by its f32 dequantization (see `Net::dequantize`).
pub(crate) fn dequantize(m: &mut candle_core::quantized::QMatMul) -> Result<(), LocalError> {
    if let candle_core::quantized::QMatMul::QTensor(q) = m {
        *m = candle_core::quantized::QMatMul::Tensor(q.dequantize(&Device::Cpu).map_err(ce)?);
    }
    Ok(())
}

/// Input widths that get candle's repacked int8 kernels on x86 (`k % 256 == 0`).
const PAD_TO: usize = 256;

/// Whether candle 0.11 runs Q8_0 matmuls through its repacked int8 kernels on this CPU: on
/// x86-64 with AVX-512 VNNI or AVX-VNNI (with plain AVX2 it keeps Q8_0 on the per-row dot
/// products, whose i8 pair sums could overflow).
fn repacked_q8_0() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        let vnni512 =
            std::is_x86_feature_detected!("avx512f") && std::is_x86_feature_detected!("avx512vnni");
        let vnni256 =
            std::is_x86_feature_detected!("avxvnni") && std::is_x86_feature_detected!("avx2");
        // candle's own switch down to its AVX2 kernels (named after mistral.rs).
        let forced_avx2 = std::env::var("MISTRALRS_FORCE_AVX2").as_deref() == Ok("1");
        (vnni512 || vnni256) && !forced_avx2
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A quantized projection `x·Wᵀ` (`W`: `[out, in]`).
///
/// Q8_0 and Q4_1 weights go through [`crate::qmm`] where the CPU has AVX-512 VNNI (weights as
/// stored, one copy). Otherwise candle multiplies: its fast x86 path — weights re-tiled once,
/// the activations quantized once per call, several rows multiplied per weight read — needs an
/// input width that is a multiple of 256, which SmolLM2 (576) and Gemma 3 (640) do not have.
/// Where that path exists (see [`repacked_q8_0`]) Q8_0 weights are stored zero-padded to the
/// next multiple, and every input is padded likewise: the extra columns multiply zeros, so the
/// product is unchanged up to activation rounding.
pub(crate) struct Proj {
    kind: Kind,
}

enum Kind {
    /// Multiplied by [`crate::qmm`].
    Own {
        w: Arc<QTensor>,
        fmt: qmm::Format,
        n: usize,
        k: usize,
    },
    /// Multiplied by candle, the weight stored with `pad` zero columns (0: unpadded).
    Candle { m: QMatMul, pad: usize },
}

impl Proj {
    /// Wraps a loaded (and, where slow, re-quantised) weight; see [`load_qtensor`].
    pub(crate) fn new(t: QTensor) -> Result<Proj, LocalError> {
        let (t, pad) = padded_weight(t)?;
        Proj::shared(Arc::new(t), pad)
    }

    /// A projection over a weight shared with an embedding table, stored with `pad` zero
    /// columns.
    fn shared(t: Arc<QTensor>, pad: usize) -> Result<Proj, LocalError> {
        let fmt = qmm::Format::of(t.dtype()).filter(|_| pad == 0 && qmm::available());
        let kind = match fmt {
            Some(fmt) => {
                let (n, k) = t.shape().dims2().map_err(ce)?;
                Kind::Own { w: t, fmt, n, k }
            }
            None => Kind::Candle {
                m: QMatMul::from_arc(t).map_err(ce)?,
                pad,
            },
        };
        Ok(Proj { kind })
    }

    pub(crate) fn forward(&self, x: &Tensor) -> Result<Tensor, LocalError> {
        let [y] = Proj::forward_all([self], x)?;
        Ok(y)
    }

    /// Several projections of one input (q, k, v; gate, up): the input quantized (or padded)
    /// once, and the [`crate::qmm`] ones multiplied in one parallel pass.
    pub(crate) fn forward_all<const N: usize>(
        ps: [&Proj; N],
        x: &Tensor,
    ) -> Result<[Tensor; N], LocalError> {
        let mut out: [Option<Tensor>; N] = std::array::from_fn(|_| None);
        let own: Vec<usize> = (0..N)
            .filter(|&i| matches!(ps[i].kind, Kind::Own { .. }))
            .collect();
        if !own.is_empty() {
            for (i, y) in own.iter().zip(own_forward(
                &own.iter().map(|&i| ps[i]).collect::<Vec<_>>(),
                x,
            )?) {
                out[*i] = Some(y);
            }
        }
        let mut cache: Option<(usize, Tensor)> = None;
        for (p, slot) in ps.iter().zip(out.iter_mut()) {
            let Kind::Candle { m, pad } = &p.kind else {
                continue;
            };
            let xp = match &cache {
                Some((cached, t)) if cached == pad => t.clone(),
                _ => {
                    let t = if *pad == 0 {
                        x.clone()
                    } else {
                        x.pad_with_zeros(candle_core::D::Minus1, 0, *pad)
                            .map_err(ce)?
                    };
                    cache = Some((*pad, t.clone()));
                    t
                }
            };
            *slot = Some(m.forward(&xp).map_err(ce)?);
        }
        let out: Vec<Tensor> = out.into_iter().flatten().collect();
        out.try_into()
            .map_err(|_| LocalError::Format("forward_all: wrong number of outputs".into()))
    }

    /// Replaces the quantized weight by its f32 dequantization (see `Net::dequantize`).
    pub(crate) fn dequantize(&mut self) -> Result<(), LocalError> {
        match &mut self.kind {
            Kind::Own { w, .. } => {
                let f = w.dequantize(&Device::Cpu).map_err(ce)?;
                self.kind = Kind::Candle {
                    m: QMatMul::Tensor(f),
                    pad: 0,
                };
                Ok(())
            }
            Kind::Candle { m, .. } => dequantize(m),
        }
    }
}

/// `x` (`[m, k]`) through projections that are all [`Kind::Own`]: `[m, n]` each.
fn own_forward(ps: &[&Proj], x: &Tensor) -> Result<Vec<Tensor>, LocalError> {
    let (m, k) = x.dims2().map_err(ce)?;
    let xs = x
        .flatten_all()
        .and_then(|t| t.to_vec1::<f32>())
        .map_err(ce)?;
    let a = qmm::QAct::new(&xs, m, k);
    let mut bytes = Vec::with_capacity(ps.len());
    let mut shapes = Vec::with_capacity(ps.len());
    for p in ps {
        if let Kind::Own { w, fmt, n, k } = &p.kind {
            bytes.push(w.data().map_err(ce)?);
            shapes.push((*fmt, *n, *k));
        }
    }
    let ws: Vec<qmm::Weight<'_>> = bytes
        .iter()
        .zip(&shapes)
        .map(|(data, &(fmt, n, k))| qmm::Weight { fmt, n, k, data })
        .collect();
    let outs = qmm::matmul_t(&ws, &a).map_err(LocalError::Format)?;
    outs.into_iter()
        .zip(&shapes)
        .map(|(o, &(_, n, _))| Tensor::from_vec(o, (m, n), &Device::Cpu))
        .collect::<candle_core::Result<Vec<_>>>()
        .map_err(ce)
}

/// `t` zero-padded where that gets the repacked kernels (see [`Proj`]), with the number of
/// columns added.
fn padded_weight(t: QTensor) -> Result<(QTensor, usize), LocalError> {
    let (_, k) = t.shape().dims2().map_err(ce)?;
    let pad = k.next_multiple_of(PAD_TO) - k;
    if pad == 0 || t.dtype() != GgmlDType::Q8_0 || !repacked_q8_0() || qmm::available() {
        return Ok((t, 0));
    }
    // Byte by byte: each row gets `pad / 32` all-zero blocks (scale 0, values 0), exactly.
    let (n, _) = t.shape().dims2().map_err(ce)?;
    let data = t.data().map_err(ce)?;
    let (block, bs) = (GgmlDType::Q8_0.type_size(), GgmlDType::Q8_0.block_size());
    let (row, extra) = (k / bs * block, pad / bs * block);
    let mut bytes = Vec::with_capacity(n * (row + extra));
    for r in data.chunks_exact(row) {
        bytes.extend_from_slice(r);
        bytes.resize(bytes.len() + extra, 0);
    }
    // The original goes before the copy is made: one table fewer at the peak (Gemma: 178 MB).
    drop(data);
    drop(t);
    let padded =
        ggml_file::qtensor_from_ggml(GgmlDType::Q8_0, &bytes, vec![n, k + pad], &Device::Cpu)
            .map_err(ce)?;
    Ok((padded, pad))
}

/// Quant types without a fast CPU kernel here: re-quantised to Q8_0 at load (Q4_1 only where
/// [`crate::qmm`] cannot multiply it).
fn is_slow(t: GgmlDType) -> bool {
    match t {
        GgmlDType::Q4_1 => !qmm::available(),
        GgmlDType::Q5_0 | GgmlDType::Q5_1 => true,
        _ => false,
    }
}

/// Loads a quantized tensor, re-quantising slow CPU formats to Q8_0.
pub(crate) fn load_qtensor<R: std::io::Read + std::io::Seek>(
    c: &gguf_file::Content,
    r: &mut R,
    name: &str,
    dev: &Device,
) -> Result<QTensor, LocalError> {
    let t = c
        .tensor(r, name, dev)
        .map_err(|e| LocalError::Format(format!("tensor {name}: {e}")))?;
    requantize(t)
}

fn requantize(t: QTensor) -> Result<QTensor, LocalError> {
    if is_slow(t.dtype()) {
        let f = t.dequantize(&Device::Cpu).map_err(ce)?;
        QTensor::quantize(&f, GgmlDType::Q8_0).map_err(ce)
    } else {
        Ok(t)
    }
}

/// Loads a tensor as f32 (norm weights).
pub(crate) fn load_f32<R: std::io::Read + std::io::Seek>(
    c: &gguf_file::Content,
    r: &mut R,
    name: &str,
    dev: &Device,
) -> Result<Tensor, LocalError> {
    c.tensor(r, name, dev)
        .and_then(|t| t.dequantize(dev))
        .map_err(|e| LocalError::Format(format!("tensor {name}: {e}")))
}

pub(crate) fn md_usize(c: &gguf_file::Content, key: &str) -> Result<usize, LocalError> {
    c.metadata
        .get(key)
        .and_then(|v| {
            v.to_u32()
                .ok()
                .map(|x| x as usize)
                .or_else(|| v.to_u64().ok().map(|x| x as usize))
        })
        .ok_or_else(|| LocalError::Format(format!("GGUF metadata has no integer {key}")))
}

pub(crate) fn md_f32(c: &gguf_file::Content, key: &str) -> Option<f32> {
    c.metadata.get(key).and_then(|v| v.to_f32().ok())
}

/// A token embedding table kept in its quantized form (Gemma's is 262k × 640: 670 MB as f32)
/// and dequantized one row per looked-up token.
pub(crate) struct QEmbedding {
    rows_data: Rows,
    dtype: GgmlDType,
    row_bytes: usize,
    pub(crate) rows: usize,
    pub(crate) dim: usize,
    /// Values stored per row: `dim`, or more when the table is padded for a tied head.
    stored_dim: usize,
}

/// Where the quantized rows live: shared with the tied output head when it keeps the table's
/// format (Gemma 3: one copy of 262k × 640 instead of two), else a copy of the file's bytes.
enum Rows {
    Shared(Arc<QTensor>),
    Owned(Vec<u8>),
}

impl QEmbedding {
    /// Reads `name` (`[rows, dim]`); with `tied`, also the output head over the same table
    /// (re-quantised if its format is slow, then the table keeps the original bytes; padded
    /// like any [`Proj`] otherwise, then the table is read from the padded copy).
    pub(crate) fn load<R: std::io::Read + std::io::Seek>(
        c: &gguf_file::Content,
        r: &mut R,
        name: &str,
        tied: bool,
    ) -> Result<(QEmbedding, Option<Proj>), LocalError> {
        let t = c
            .tensor(r, name, &Device::Cpu)
            .map_err(|e| LocalError::Format(format!("tensor {name}: {e}")))?;
        let (rows, dim) = t.shape().dims2().map_err(ce)?;
        let dtype = t.dtype();
        if dim % dtype.block_size() != 0 {
            return Err(LocalError::Format(format!(
                "{name}: row of {dim} is not whole {dtype:?} blocks"
            )));
        }
        let row_bytes = dim / dtype.block_size() * dtype.type_size();
        let bytes = t.data().map_err(ce)?.len();
        if bytes != rows * row_bytes {
            return Err(LocalError::Format(format!(
                "{name}: {bytes} bytes for {rows} rows of {row_bytes}"
            )));
        }
        let table = |rows_data, stored_dim: usize| QEmbedding {
            rows_data,
            dtype,
            row_bytes: stored_dim / dtype.block_size() * dtype.type_size(),
            rows,
            dim,
            stored_dim,
        };
        if !tied {
            return Ok((table(Rows::Shared(Arc::new(t)), dim), None));
        }
        if is_slow(dtype) {
            let raw = t.data().map_err(ce)?.into_owned();
            let head = Proj::new(requantize(t)?)?;
            return Ok((table(Rows::Owned(raw), dim), Some(head)));
        }
        let (t, pad) = padded_weight(t)?;
        let shared = Arc::new(t);
        let head = Proj::shared(shared.clone(), pad)?;
        Ok((table(Rows::Shared(shared), dim + pad), Some(head)))
    }

    /// `[ids.len(), dim]` f32 rows.
    pub(crate) fn lookup(&self, ids: &[u32], dev: &Device) -> Result<Tensor, LocalError> {
        let all: std::borrow::Cow<'_, [u8]> = match &self.rows_data {
            Rows::Shared(q) => q.data().map_err(ce)?,
            Rows::Owned(raw) => std::borrow::Cow::Borrowed(raw),
        };
        let mut out = Vec::with_capacity(ids.len() * self.dim);
        for &id in ids {
            let id = id as usize;
            if id >= self.rows {
                return Err(LocalError::Format(format!(
                    "token id {id} outside the vocabulary of {}",
                    self.rows
                )));
            }
            let bytes = &all[id * self.row_bytes..(id + 1) * self.row_bytes];
            let row = ggml_file::qtensor_from_ggml(self.dtype, bytes, vec![self.stored_dim], dev)
                .and_then(|q| q.dequantize(dev))
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(ce)?;
            out.extend_from_slice(&row[..self.dim]);
        }
        Tensor::from_vec(out, (ids.len(), self.dim), dev).map_err(ce)
    }
}

/// cos/sin tables `[len, dim/2]` for positions `0..len`, rotary dimension `dim`, base `theta`,
/// positions divided by `scale` (linear RoPE scaling; 1.0 for none).
pub(crate) fn rope_tables(
    dim: usize,
    len: usize,
    theta: f32,
    scale: f32,
    dev: &Device,
) -> Result<(Tensor, Tensor), LocalError> {
    let inv: Vec<f32> = (0..dim / 2)
        .map(|i| 1.0 / theta.powf(2.0 * i as f32 / dim as f32) / scale)
        .collect();
    let inv = Tensor::from_vec(inv, (1, dim / 2), dev).map_err(ce)?;
    let pos = Tensor::arange(0u32, len as u32, dev)
        .and_then(|p| p.to_dtype(DType::F32))
        .and_then(|p| p.reshape((len, 1)))
        .map_err(ce)?;
    let freqs = pos.broadcast_mul(&inv).map_err(ce)?;
    Ok((freqs.cos().map_err(ce)?, freqs.sin().map_err(ce)?))
}

/// One layer's cached keys and values: rows of `kv_heads × head_dim` values, one per token,
/// appended in place (no re-concatenation per step). Rows before `skip` have left a sliding
/// window and are dropped in bulk once they are half the buffer.
#[derive(Clone, Default)]
pub(crate) struct LayerKv {
    k: Vec<f32>,
    v: Vec<f32>,
    /// Rows at the front no longer attended to.
    skip: usize,
    /// Absolute position of row `skip`.
    start: usize,
}

impl LayerKv {
    /// Appends `n` tokens' keys and values given head-major (`[kv_heads, n, d]`).
    fn push(&mut self, k: &[f32], v: &[f32], kvh: usize, n: usize, d: usize) {
        self.k.reserve(n * kvh * d);
        self.v.reserve(n * kvh * d);
        for i in 0..n {
            for g in 0..kvh {
                let at = (g * n + i) * d;
                self.k.extend_from_slice(&k[at..at + d]);
                self.v.extend_from_slice(&v[at..at + d]);
            }
        }
    }

    /// Forgets the keys before absolute position `from`.
    fn keep_from(&mut self, from: usize, row: usize) {
        if from <= self.start {
            return;
        }
        self.skip += from - self.start;
        self.start = from;
        if self.skip >= 64 && self.skip * row * 2 >= self.k.len() {
            self.k.drain(..self.skip * row);
            self.v.drain(..self.skip * row);
            self.skip = 0;
        }
    }

    /// Rows kept (absolute positions `start..start + rows`).
    fn rows(&self, row: usize) -> usize {
        self.k.len() / row - self.skip
    }
}

/// How new queries attend.
pub(crate) struct AttnSpec {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub scale: f64,
    /// A query at position p sees keys at positions > p - window (Gemma's local layers).
    pub window: Option<usize>,
}

/// Up to this many new tokens per sequence (decoding) attend in plain loops over the cache;
/// more (prefill chunks) through candle's matmuls.
const LOOP_ATTENTION_MAX: usize = 8;

/// Attention of `n` new tokens at absolute positions `pos..pos + n` (`q`: `[heads, n, d]`,
/// `k`/`v`: `[kv_heads, n, d]`, already rotated) against `slot`'s cache, which they extend.
/// With a window, the cache keeps only the keys a later query can still see. Returns
/// `[n, heads * d]`.
pub(crate) fn attend(
    slot: &mut Option<LayerKv>,
    q: &Tensor,
    k: Tensor,
    v: Tensor,
    pos: usize,
    spec: &AttnSpec,
) -> Result<Tensor, LocalError> {
    let n = q.dim(1).map_err(ce)?;
    let (kvh, d) = (spec.kv_heads, spec.head_dim);
    let row = kvh * d;
    let flat = |t: &Tensor| t.flatten_all().and_then(|t| t.to_vec1::<f32>()).map_err(ce);
    let cache = slot.get_or_insert_with(|| LayerKv {
        start: pos,
        ..LayerKv::default()
    });
    if cache.start + cache.rows(row) != pos {
        return Err(LocalError::Format(format!(
            "attention: cache holds positions {}..{}, new tokens start at {pos}",
            cache.start,
            cache.start + cache.rows(row)
        )));
    }
    cache.push(&flat(&k)?, &flat(&v)?, kvh, n, d);
    let out = if n <= LOOP_ATTENTION_MAX {
        let out = attend_loops(cache, &flat(q)?, n, pos, spec);
        Tensor::from_vec(out, (n, spec.heads * d), q.device()).map_err(ce)?
    } else {
        attend_matmul(cache, q, n, pos, spec)?
    };
    // Keep what a later query (position ≥ pos + n) can still see.
    if let Some(w) = spec.window {
        cache.keep_from((pos + n).saturating_sub(w - 1), row);
    }
    Ok(out)
}

/// First absolute key position a query at `qp` sees.
fn first_visible(qp: usize, start: usize, window: Option<usize>) -> usize {
    window.map_or(start, |w| (qp + 1).saturating_sub(w).max(start))
}

/// `[n, heads * d]` attention outputs, one query row and head at a time (few new tokens:
/// candle's per-op overhead would dominate).
fn attend_loops(kv: &LayerKv, q: &[f32], n: usize, pos: usize, spec: &AttnSpec) -> Vec<f32> {
    let (h, kvh, d) = (spec.heads, spec.kv_heads, spec.head_dim);
    let (row, rep) = (kvh * d, h / kvh);
    let scale = spec.scale as f32;
    let mut out = vec![0f32; n * h * d];
    let mut scores = Vec::new();
    for head in 0..h {
        let g = head / rep;
        for i in 0..n {
            let qp = pos + i;
            let first = first_visible(qp, kv.start, spec.window);
            let qv = &q[(head * n + i) * d..][..d];
            let key_at = |kp: usize| (kv.skip + kp - kv.start) * row + g * d;
            scores.clear();
            scores.extend((first..=qp).map(|kp| dot(qv, &kv.k[key_at(kp)..][..d]) * scale));
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0f32;
            for s in scores.iter_mut() {
                *s = (*s - max).exp();
                sum += *s;
            }
            let o = &mut out[(i * h + head) * d..][..d];
            for (kp, s) in (first..=qp).zip(&scores) {
                axpy(s / sum, &kv.v[key_at(kp)..][..d], o);
            }
        }
    }
    out
}

/// `Σ a·b`, eight lanes at a time (vectorised by the compiler).
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ca.zip(cb) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// `o += a·x`.
fn axpy(a: f32, x: &[f32], o: &mut [f32]) {
    for (o, x) in o.iter_mut().zip(x) {
        *o += a * x;
    }
}

/// The same as [`attend_loops`] with candle's matmuls over the whole cache (prefill chunks).
fn attend_matmul(
    kv: &LayerKv,
    q: &Tensor,
    n: usize,
    pos: usize,
    spec: &AttnSpec,
) -> Result<Tensor, LocalError> {
    let (kvh, d) = (spec.kv_heads, spec.head_dim);
    let row = kvh * d;
    let total = kv.rows(row);
    let head_major = |data: &[f32]| {
        Tensor::from_slice(&data[kv.skip * row..], (total, kvh, d), q.device())
            .and_then(|t| t.transpose(0, 1))
            .and_then(|t| t.contiguous())
            .map_err(ce)
    };
    let (k_all, v_all) = (head_major(&kv.k)?, head_major(&kv.v)?);
    let rep = spec.heads / kvh;
    // Grouped-query attention without copying K and V per query head: the queries of the
    // `rep` heads that read one kv head (heads kvh·rep + r) are stacked as rows, [kvh, rep·n, d].
    let qg = q.reshape((kvh, rep * n, d)).map_err(ce)?;
    let mut att = (qg.matmul(&k_all.t().map_err(ce)?).map_err(ce)? * spec.scale).map_err(ce)?;
    if let Some(mask) = mask(n, pos, kv.start, total, spec.window, q.device())? {
        att = att
            .reshape((kvh, rep, n, total))
            .and_then(|a| a.broadcast_add(&mask))
            .and_then(|a| a.reshape((kvh, rep * n, total)))
            .map_err(ce)?;
    }
    let att = candle_nn::ops::softmax_last_dim(&att).map_err(ce)?;
    att.matmul(&v_all)
        .and_then(|o| o.reshape((spec.heads, n, d)))
        .and_then(|o| o.transpose(0, 1))
        .and_then(|o| o.reshape((n, spec.heads * d)))
        .map_err(ce)
}

/// Additive mask `[n, total]` for queries at `pos..pos+n` over keys at `start..start+total`,
/// or `None` when every key is visible to every query.
fn mask(
    n: usize,
    pos: usize,
    start: usize,
    total: usize,
    window: Option<usize>,
    dev: &Device,
) -> Result<Option<Tensor>, LocalError> {
    let visible = |qp: usize, kp: usize| kp <= qp && window.is_none_or(|w| qp - kp < w);
    let all = (0..n).all(|i| (0..total).all(|j| visible(pos + i, start + j)));
    if all {
        return Ok(None);
    }
    let m: Vec<f32> = (0..n)
        .flat_map(|i| {
            (0..total).map(move |j| {
                if visible(pos + i, start + j) {
                    0.0
                } else {
                    f32::NEG_INFINITY
                }
            })
        })
        .collect();
    Tensor::from_vec(m, (n, total), dev).map(Some).map_err(ce)
}

/// `[n, heads * d]` rows `offset..offset+n` of a projection → `[heads, n, d]`.
pub(crate) fn split_heads(
    x: &Tensor,
    offset: usize,
    n: usize,
    heads: usize,
    d: usize,
) -> Result<Tensor, LocalError> {
    x.narrow(0, offset, n)
        .and_then(|t| t.reshape((n, heads, d)))
        .and_then(|t| t.transpose(0, 1))
        .and_then(|t| t.contiguous())
        .map_err(ce)
}

/// A sequence's KV cache: one slot per layer.
#[derive(Default)]
pub struct KvCache {
    pub(crate) layers: Vec<Option<LayerKv>>,
    pub(crate) len: usize,
}

impl KvCache {
    /// Tokens seen so far (the position of the next token).
    pub fn len(&self) -> usize {
        self.len
    }
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Forgets everything: the next forward starts at position 0.
    pub fn clear(&mut self) {
        self.layers.clear();
        self.len = 0;
    }
    pub(crate) fn slot(&mut self, layer: usize, n_layers: usize) -> &mut Option<LayerKv> {
        if self.layers.len() < n_layers {
            self.layers.resize(n_layers, None);
        }
        &mut self.layers[layer]
    }
}

/// Checks a batch for [`crate::llama::Llama::forward`]-style calls: every sequence has new
/// tokens and fits the context. Returns all ids concatenated.
pub(crate) fn check_batch(
    batch: &[(&mut KvCache, &[u32])],
    context: usize,
) -> Result<Vec<u32>, LocalError> {
    if batch.is_empty() || batch.iter().any(|(_, t)| t.is_empty()) {
        return Err(LocalError::Format(
            "forward: every sequence needs at least one new token".into(),
        ));
    }
    for (cache, toks) in batch {
        if cache.len + toks.len() > context {
            return Err(LocalError::Format(format!(
                "sequence of {} tokens exceeds the context of {context}",
                cache.len + toks.len()
            )));
        }
    }
    Ok(batch.iter().flat_map(|(_, t)| t.iter().copied()).collect())
}

/// Rows of each sequence's last new token, and advances every cache by its chunk.
pub(crate) fn finish_batch(batch: &mut [(&mut KvCache, &[u32])]) -> Vec<u32> {
    let mut last = Vec::with_capacity(batch.len());
    let mut offset = 0;
    for (cache, toks) in batch.iter_mut() {
        offset += toks.len();
        last.push((offset - 1) as u32);
        cache.len += toks.len();
    }
    last
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn weight(n: usize, k: usize) -> QTensor {
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 7919) % 251) as f32 / 50.0 - 2.5)
            .collect();
        let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, GgmlDType::Q8_0).unwrap()
    }

    #[test]
    fn padding_appends_exact_zero_columns_and_keeps_the_product() {
        let (n, k) = (48, 576);
        let orig = weight(n, k);
        let reference = orig.dequantize(&Device::Cpu).unwrap();
        let (padded, pad) = padded_weight(weight(n, k)).unwrap();
        assert_eq!(
            pad,
            if repacked_q8_0() && !qmm::available() {
                192
            } else {
                0
            }
        );
        let p = padded.dequantize(&Device::Cpu).unwrap();
        assert_eq!(p.dims(), &[n, k + pad]);
        let left = p.narrow(1, 0, k).unwrap();
        let diff = (left - &reference).unwrap().abs().unwrap();
        assert_eq!(diff.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        if pad > 0 {
            let right = p.narrow(1, k, pad).unwrap().abs().unwrap();
            assert_eq!(right.max_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
        }
        // The projection of a padded weight equals the plain one up to activation rounding.
        let x: Vec<f32> = (0..3 * k)
            .map(|i| ((i * 31) % 17) as f32 / 8.0 - 1.0)
            .collect();
        let x = Tensor::from_vec(x, (3, k), &Device::Cpu).unwrap();
        let got = Proj::new(weight(n, k)).unwrap().forward(&x).unwrap();
        let want = x.matmul(&reference.t().unwrap()).unwrap();
        let err = (got - &want).unwrap().abs().unwrap().max_all().unwrap();
        let scale = want
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(
            err.to_scalar::<f32>().unwrap() < 0.02 * scale,
            "error {err} vs {scale}"
        );
    }

    #[test]
    fn a_padded_tied_table_looks_up_the_original_rows() {
        let (rows, dim) = (64, 576);
        let orig = weight(rows, dim);
        let reference = orig.dequantize(&Device::Cpu).unwrap();
        let (t, pad) = padded_weight(orig).unwrap();
        let shared = Arc::new(t);
        let table = QEmbedding {
            rows_data: Rows::Shared(shared),
            dtype: GgmlDType::Q8_0,
            row_bytes: (dim + pad) / 32 * 34,
            rows,
            dim,
            stored_dim: dim + pad,
        };
        let got = table.lookup(&[5, 0, 63], &Device::Cpu).unwrap();
        let ids = Tensor::new(&[5u32, 0, 63], &Device::Cpu).unwrap();
        let want = reference.index_select(&ids, 0).unwrap();
        let diff = (got - want).unwrap().abs().unwrap().max_all().unwrap();
        assert_eq!(diff.to_scalar::<f32>().unwrap(), 0.0);
        assert!(table.lookup(&[64], &Device::Cpu).is_err());
    }

    fn values(len: usize, seed: usize) -> Vec<f32> {
        (0..len)
            .map(|i| (((i + seed) * 2654435761) % 1000) as f32 / 250.0 - 2.0)
            .collect()
    }

    /// Loop and matmul attention agree, step by step, with grouped heads and a sliding window
    /// that drops (and compacts) old keys.
    #[test]
    fn loop_and_matmul_attention_agree_over_a_sliding_window() {
        let dev = Device::Cpu;
        for window in [None, Some(5)] {
            let spec = AttnSpec {
                heads: 4,
                kv_heads: 2,
                head_dim: 16,
                scale: 0.25,
                window,
            };
            let (h, kvh, d) = (spec.heads, spec.kv_heads, spec.head_dim);
            let mut slot = None;
            let mut pos = 0;
            for (step, n) in [3usize, 1, 1, 2, 1, 1, 1, 4, 1]
                .into_iter()
                .cycle()
                .take(90)
                .enumerate()
            {
                let t = |heads: usize, salt: usize| {
                    Tensor::from_vec(values(heads * n * d, step * 7 + salt), (heads, n, d), &dev)
                        .unwrap()
                };
                let (q, k, v) = (t(h, 1), t(kvh, 2), t(kvh, 3));
                let before = slot.clone();
                let got = attend(&mut slot, &q, k.clone(), v.clone(), pos, &spec).unwrap();
                // The same step through the other path, from the same cache.
                let mut other = before.clone();
                let cache = other.get_or_insert_with(|| LayerKv {
                    start: pos,
                    ..LayerKv::default()
                });
                let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                cache.push(&flat(&k), &flat(&v), kvh, n, d);
                let a = Tensor::from_vec(
                    attend_loops(cache, &flat(&q), n, pos, &spec),
                    (n, h * d),
                    &dev,
                )
                .unwrap();
                let b = attend_matmul(cache, &q, n, pos, &spec).unwrap();
                let diff = |x: &Tensor, y: &Tensor| {
                    (x - y)
                        .unwrap()
                        .abs()
                        .unwrap()
                        .max_all()
                        .unwrap()
                        .to_scalar::<f32>()
                        .unwrap()
                };
                assert!(diff(&a, &b) < 1e-5, "step {step}: loops vs matmul differ");
                assert!(diff(&got, &a) < 1e-5, "step {step}: attend differs");
                pos += n;
                let kept = slot.as_ref().unwrap();
                if let Some(w) = window {
                    assert_eq!(kept.start, (pos + 1).saturating_sub(w), "step {step}");
                    assert!(kept.k.len() <= (64 * 2 + w) * kvh * d * 2);
                } else {
                    assert_eq!(kept.rows(kvh * d), pos);
                }
            }
        }
        // A cache that does not end where the new tokens start is refused.
        let spec = AttnSpec {
            heads: 1,
            kv_heads: 1,
            head_dim: 8,
            scale: 1.0,
            window: None,
        };
        let one = Tensor::zeros((1, 1, 8), DType::F32, &dev).unwrap();
        let mut slot = None;
        attend(&mut slot, &one, one.clone(), one.clone(), 0, &spec).unwrap();
        assert!(attend(&mut slot, &one, one.clone(), one.clone(), 5, &spec).is_err());
    }
}
