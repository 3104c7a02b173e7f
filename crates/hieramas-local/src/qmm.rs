//! Quantized matrix products `x·Wᵀ` read straight from GGUF Q8_0 and Q4_1 blocks, for x86-64
//! CPUs with AVX-512 VNNI.
//!
//! candle 0.11's fast x86 kernels keep a re-tiled copy beside every weight they multiply and
//! only take input widths that are a multiple of 256; they have none for Q4_1. Here the weights
//! are used as stored: no second copy (Gemma 3's 262k × 640 tied head is 178 MB once, not
//! twice), no padding, and Q4_1 stays 0.625 bytes per weight instead of Q8_0's 1.06 — what
//! bounds single-stream decoding is reading every weight once per token.
//!
//! The arithmetic is llama.cpp's: activations are quantized per 32-value block to i8 with
//! scale `max|x| / 127` (for Q4_1 also the block sum, as its Q8_1), each block product is an
//! exact integer (VNNI `dpbusd`), scaled and summed in f32. Each weight block is read once per
//! group of up to four activation rows; weight rows are split over candle's thread pool.
//!
//! [`available`] says whether this path runs (CPU features, and `HIERAMAS_QMM=candle` to force
//! candle's kernels for comparison).

use std::sync::OnceLock;

use candle_core::quantized::GgmlDType;

/// Weight formats multiplied here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// f16 scale, 32 × i8.
    Q8_0,
    /// f16 scale, f16 minimum, 32 × 4-bit (element i in the low nibble of byte i, element
    /// 16 + i in its high nibble).
    Q4_1,
}

/// Values per block.
const QK: usize = 32;

impl Format {
    pub(crate) fn of(t: GgmlDType) -> Option<Format> {
        match t {
            GgmlDType::Q8_0 => Some(Format::Q8_0),
            GgmlDType::Q4_1 => Some(Format::Q4_1),
            _ => None,
        }
    }

    fn block_bytes(self) -> usize {
        match self {
            Format::Q8_0 => 34,
            Format::Q4_1 => 20,
        }
    }
}

/// Whether the kernels here run on this CPU (AVX-512 F/VL/VNNI, AVX2, FMA, F16C) and are not
/// switched off with `HIERAMAS_QMM=candle`.
pub(crate) fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        let off = std::env::var("HIERAMAS_QMM").as_deref() == Ok("candle");
        !off && cpu_has_features()
    })
}

fn cpu_has_features() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512vl")
            && std::is_x86_feature_detected!("avx512vnni")
            && std::is_x86_feature_detected!("avx2")
            && std::is_x86_feature_detected!("fma")
            && std::is_x86_feature_detected!("f16c")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Activation rows `[m, k]` quantized in 32-value blocks.
pub(crate) struct QAct {
    m: usize,
    k: usize,
    /// `x / d` rounded to nearest, ties to even (as llama.cpp's SIMD quantizers), in
    /// [-127, 127].
    q: Vec<i8>,
    /// `q + 128` (VNNI multiplies unsigned by signed bytes).
    u: Vec<u8>,
    /// Per block: the scale `d`.
    d: Vec<f32>,
    /// Per block: `d · Σ q`.
    s: Vec<f32>,
}

impl QAct {
    /// Quantizes `x` (`m` rows of `k`, `k` a multiple of 32).
    ///
    /// # Panics
    /// If `k` is not a multiple of 32 or `x` does not hold exactly `m · k` values: the vector
    /// quantizer writes one block per 32 inputs, so either would write past the buffers.
    pub(crate) fn new(x: &[f32], m: usize, k: usize) -> QAct {
        assert!(
            k.is_multiple_of(QK) && Some(x.len()) == m.checked_mul(k),
            "QAct::new: {} values for {m} rows of {k} (k must be a multiple of {QK})",
            x.len()
        );
        let blocks = m * k / QK;
        let mut a = QAct {
            m,
            k,
            q: Vec::new(),
            u: Vec::new(),
            d: Vec::new(),
            s: Vec::new(),
        };
        a.q.resize(m * k, 0);
        a.u.resize(m * k, 0);
        a.d.resize(blocks, 0.0);
        a.s.resize(blocks, 0.0);
        #[cfg(target_arch = "x86_64")]
        if cpu_has_features() {
            // SAFETY: the CPU features were just checked; the buffers hold `blocks` blocks.
            unsafe { x86::quantize(x, &mut a) };
            return a;
        }
        quantize_scalar(x, &mut a);
        a
    }

    fn blocks_per_row(&self) -> usize {
        self.k / QK
    }
}

/// [`QAct::new`]'s arithmetic one value at a time (CPUs without the kernels' features).
fn quantize_scalar(x: &[f32], a: &mut QAct) {
    for (b, block) in x.chunks_exact(QK).enumerate() {
        let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
        let d = amax / 127.0;
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (i, v) in block.iter().enumerate() {
            let q = (v * id).round_ties_even() as i8;
            sum += i32::from(q);
            a.q[b * QK + i] = q;
            a.u[b * QK + i] = (i16::from(q) + 128) as u8;
        }
        a.d[b] = d;
        a.s[b] = d * sum as f32;
    }
}

/// One weight `[n, k]` in `fmt`, as its GGUF bytes.
pub(crate) struct Weight<'a> {
    pub(crate) fmt: Format,
    pub(crate) n: usize,
    pub(crate) k: usize,
    pub(crate) data: &'a [u8],
}

/// Weight rows per unit of work handed to a thread.
const TILE: usize = 16;

/// `x·Wᵀ` for each weight (all with `a.k` inputs): one `[m, n]` buffer per weight. Every weight's bytes must be
/// `n · k / 32` whole blocks (checked).
pub(crate) fn matmul_t(ws: &[Weight<'_>], a: &QAct) -> Result<Vec<Vec<f32>>, String> {
    for w in ws {
        let want = w.n * (w.k / QK) * w.fmt.block_bytes();
        if w.k != a.k || !w.k.is_multiple_of(QK) || w.data.len() != want {
            return Err(format!(
                "quantized matmul: weight {}x{} {:?} of {} bytes (want {want}) against inputs of {}",
                w.n,
                w.k,
                w.fmt,
                w.data.len(),
                a.k
            ));
        }
    }
    if !cpu_has_features() {
        return Err("quantized matmul: this CPU lacks AVX-512 VNNI".into());
    }
    let mut outs: Vec<Vec<f32>> = ws.iter().map(|w| vec![0f32; w.n * a.m]).collect();
    // Tiles of all weights in one parallel region: (weight, first tile index).
    let mut firsts = Vec::with_capacity(ws.len());
    let mut tiles = 0;
    for w in ws {
        firsts.push(tiles);
        tiles += w.n.div_ceil(TILE);
    }
    let ptrs: Vec<OutPtr> = outs.iter_mut().map(|o| OutPtr(o.as_mut_ptr())).collect();
    let run = |range: std::ops::Range<usize>| {
        for tile in range {
            let wi = firsts.partition_point(|&f| f <= tile) - 1;
            let w = &ws[wi];
            let r0 = (tile - firsts[wi]) * TILE;
            let rows = r0..(r0 + TILE).min(w.n);
            // SAFETY: the CPU features were checked above; tiles write disjoint columns of
            // their weight's buffer, which outlives the parallel region.
            #[cfg(target_arch = "x86_64")]
            unsafe {
                x86::tile(w, rows, a, ptrs[wi].0)
            };
        }
    };
    candle_core::utils::barrier_pool().execute_chunked(tiles, run);
    Ok(outs)
}

/// A buffer written by several threads at disjoint offsets.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: each tile writes only its own columns (see `matmul_t`).
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::{Format, QAct, QK, Weight};
    use std::arch::x86_64::*;

    /// Fills `a` (buffers sized) from `x`, 32 values per block, two 512-bit vectors each.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn quantize(x: &[f32], a: &mut QAct) {
        let flip = _mm_set1_epi8(-128);
        for (b, block) in x.chunks_exact(QK).enumerate() {
            let (v0, v1) = unsafe {
                (
                    _mm512_loadu_ps(block.as_ptr()),
                    _mm512_loadu_ps(block.as_ptr().add(16)),
                )
            };
            let amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            let d = amax / 127.0;
            let id = _mm512_set1_ps(if d != 0.0 { 1.0 / d } else { 0.0 });
            // Round to nearest, ties to even (the default rounding mode).
            let i0 = _mm512_cvtps_epi32(_mm512_mul_ps(v0, id));
            let i1 = _mm512_cvtps_epi32(_mm512_mul_ps(v1, id));
            let (q0, q1) = (_mm512_cvtepi32_epi8(i0), _mm512_cvtepi32_epi8(i1));
            let at = b * QK;
            unsafe {
                _mm_storeu_si128(a.q.as_mut_ptr().add(at).cast(), q0);
                _mm_storeu_si128(a.q.as_mut_ptr().add(at + 16).cast(), q1);
                // q + 128 as an unsigned byte is q with its top bit flipped.
                _mm_storeu_si128(a.u.as_mut_ptr().add(at).cast(), _mm_xor_si128(q0, flip));
                _mm_storeu_si128(
                    a.u.as_mut_ptr().add(at + 16).cast(),
                    _mm_xor_si128(q1, flip),
                );
            }
            a.d[b] = d;
            a.s[b] = d * _mm512_reduce_add_epi32(_mm512_add_epi32(i0, i1)) as f32;
        }
    }

    /// Weight rows `rows` of `w` times every activation row, into columns `rows` of `out`
    /// (`[m, n]`).
    ///
    /// The inner loops step raw pointers (no index arithmetic) so that they stay free of
    /// overflow and bounds checks even in dev builds.
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    pub(super) unsafe fn tile(
        w: &Weight<'_>,
        rows: std::ops::Range<usize>,
        a: &QAct,
        out: *mut f32,
    ) {
        let nb = a.blocks_per_row();
        let row_bytes = nb * w.fmt.block_bytes();
        let xs = match w.fmt {
            Format::Q8_0 => a.u.as_ptr(),
            Format::Q4_1 => a.q.as_ptr().cast::<u8>(),
        };
        let mut j = 0;
        while j < a.m {
            let r = (a.m - j).min(4);
            // Activation rows j..j+r (repeating the last one past r; those results are unused).
            let x: [*const u8; 4] =
                std::array::from_fn(|t| unsafe { xs.add((j + t.min(r - 1)) * a.k) });
            let d: [*const f32; 4] =
                std::array::from_fn(|t| unsafe { a.d.as_ptr().add((j + t.min(r - 1)) * nb) });
            let s: [*const f32; 4] =
                std::array::from_fn(|t| unsafe { a.s.as_ptr().add((j + t.min(r - 1)) * nb) });
            for row in rows.clone() {
                let wr = unsafe { w.data.as_ptr().add(row * row_bytes) };
                let res = unsafe {
                    match (w.fmt, r) {
                        (Format::Q8_0, 1) => dot_q8_0::<1>(wr, nb, x, d),
                        (Format::Q8_0, 2) => dot_q8_0::<2>(wr, nb, x, d),
                        (Format::Q8_0, 3) => dot_q8_0::<3>(wr, nb, x, d),
                        (Format::Q8_0, _) => dot_q8_0::<4>(wr, nb, x, d),
                        (Format::Q4_1, 1) => dot_q4_1::<1>(wr, nb, x, d, s),
                        (Format::Q4_1, 2) => dot_q4_1::<2>(wr, nb, x, d, s),
                        (Format::Q4_1, 3) => dot_q4_1::<3>(wr, nb, x, d, s),
                        (Format::Q4_1, _) => dot_q4_1::<4>(wr, nb, x, d, s),
                    }
                };
                for (t, v) in res.iter().take(r).enumerate() {
                    unsafe { *out.add((j + t) * w.n + row) = *v };
                }
            }
            j += 4;
        }
    }

    /// How far ahead of the block being read the next weight bytes are requested.
    const PREFETCH: usize = 512;

    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn f16_at(p: *const u8) -> f32 {
        let bits = unsafe { p.cast::<u16>().read_unaligned() };
        _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(bits))))
    }

    #[inline]
    #[target_feature(enable = "avx2")]
    fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_movehdup_ps(s));
        _mm_cvtss_f32(s)
    }

    /// `[a·b for block 0 ×8, for block 1 ×8]` from two-lane `a` and `b`.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn pair_scale(a: __m128, b: __m128) -> __m512 {
        let idx = _mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
        _mm512_permutexvar_ps(idx, _mm512_castps128_ps512(_mm_mul_ps(a, b)))
    }

    /// Two consecutive f16 values 34 (Q8_0) or 20 (Q4_1) bytes apart, as `[a, b, 0, 0]`.
    #[inline]
    #[target_feature(enable = "avx2,f16c")]
    unsafe fn f16_pair(p: *const u8, stride: usize) -> __m128 {
        let (a, b) = unsafe {
            (
                p.cast::<u16>().read_unaligned(),
                p.add(stride).cast::<u16>().read_unaligned(),
            )
        };
        _mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(a) | (i32::from(b) << 16)))
    }

    /// Two f32 values at `p` as `[a, b, 0, 0]`.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn f32_pair(p: *const f32) -> __m128 {
        _mm_castsi128_ps(unsafe { _mm_loadl_epi64(p.cast()) })
    }

    /// One Q8_0 weight row (`nb` blocks at `wr`) against the first `R` activation rows of
    /// `x` (values `q + 128`) with block scales `d`. Two blocks per 512-bit step.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn dot_q8_0<const R: usize>(
        wr: *const u8,
        nb: usize,
        mut x: [*const u8; 4],
        mut d: [*const f32; 4],
    ) -> [f32; 4] {
        let c128 = _mm512_set1_epi8(-128); // 0x80: 128 as the unsigned operand
        let mut acc = [_mm512_setzero_ps(); R];
        let mut blk = wr;
        for _ in 0..nb / 2 {
            _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH).cast());
            let dw = unsafe { f16_pair(blk, 34) };
            let wv = unsafe {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(_mm256_loadu_si256(blk.add(2).cast())),
                    _mm256_loadu_si256(blk.add(36).cast()),
                )
            };
            // Σ (q + 128)·w − 128·Σ w, lane by lane.
            let bias = _mm512_sub_epi32(
                _mm512_setzero_si512(),
                _mm512_dpbusd_epi32(_mm512_setzero_si512(), c128, wv),
            );
            for t in 0..R {
                let (xu, dx) = unsafe { (_mm512_loadu_si512(x[t].cast()), f32_pair(d[t])) };
                let p = _mm512_dpbusd_epi32(bias, xu, wv);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(dw, dx), acc[t]);
                x[t] = x[t].wrapping_add(2 * QK);
                d[t] = d[t].wrapping_add(2);
            }
            blk = blk.wrapping_add(68);
        }
        let mut out = [0f32; 4];
        for t in 0..R {
            out[t] = _mm512_reduce_add_ps(acc[t]);
        }
        if nb % 2 == 1 {
            let dw = unsafe { f16_at(blk) };
            let wv = unsafe { _mm256_loadu_si256(blk.add(2).cast()) };
            let bias = _mm256_sub_epi32(
                _mm256_setzero_si256(),
                _mm256_dpbusd_epi32(_mm256_setzero_si256(), _mm256_set1_epi8(-128), wv),
            );
            for t in 0..R {
                let (xu, dx) = unsafe { (_mm256_loadu_si256(x[t].cast()), *d[t]) };
                let p = _mm256_dpbusd_epi32(bias, xu, wv);
                out[t] += hsum(_mm256_cvtepi32_ps(p)) * dw * dx;
            }
        }
        out
    }

    /// One Q4_1 block's 32 weights as unsigned bytes, in element order.
    #[inline]
    #[target_feature(enable = "avx2")]
    unsafe fn q4_1_values(blk: *const u8) -> __m256i {
        let mask = _mm_set1_epi8(0x0F);
        let q = unsafe { _mm_loadu_si128(blk.add(4).cast()) };
        let lo = _mm_and_si128(q, mask);
        let hi = _mm_and_si128(_mm_srli_epi16(q, 4), mask);
        _mm256_set_m128i(hi, lo)
    }

    /// One Q4_1 weight row against the first `R` activation rows of `x` (values `q`), block
    /// scales `d` and scaled sums `s`: `d_w·d·Σ q_w·q + m_w·s` per block. Two blocks per
    /// 512-bit step.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512vl,avx512vnni")]
    unsafe fn dot_q4_1<const R: usize>(
        wr: *const u8,
        nb: usize,
        mut x: [*const u8; 4],
        mut d: [*const f32; 4],
        mut s: [*const f32; 4],
    ) -> [f32; 4] {
        let mut acc = [_mm512_setzero_ps(); R];
        let mut mins = [_mm_setzero_ps(); R];
        let mut blk = wr;
        for _ in 0..nb / 2 {
            _mm_prefetch::<_MM_HINT_T0>(blk.wrapping_add(PREFETCH).cast());
            let dw = unsafe { f16_pair(blk, 20) };
            let mw = unsafe { f16_pair(blk.add(2), 20) };
            let wv = unsafe {
                _mm512_inserti64x4::<1>(
                    _mm512_castsi256_si512(q4_1_values(blk)),
                    q4_1_values(blk.add(20)),
                )
            };
            for t in 0..R {
                let (xq, dx, sx) = unsafe {
                    (
                        _mm512_loadu_si512(x[t].cast()),
                        f32_pair(d[t]),
                        f32_pair(s[t]),
                    )
                };
                let p = _mm512_dpbusd_epi32(_mm512_setzero_si512(), wv, xq);
                acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(p), pair_scale(dw, dx), acc[t]);
                mins[t] = _mm_fmadd_ps(mw, sx, mins[t]);
                x[t] = x[t].wrapping_add(2 * QK);
                d[t] = d[t].wrapping_add(2);
                s[t] = s[t].wrapping_add(2);
            }
            blk = blk.wrapping_add(40);
        }
        let mut out = [0f32; 4];
        for t in 0..R {
            let m = _mm_add_ss(mins[t], _mm_movehdup_ps(mins[t]));
            out[t] = _mm512_reduce_add_ps(acc[t]) + _mm_cvtss_f32(m);
        }
        if nb % 2 == 1 {
            let (dw, mw) = unsafe { (f16_at(blk), f16_at(blk.add(2))) };
            let wv = unsafe { q4_1_values(blk) };
            for t in 0..R {
                let (xq, dx, sx) = unsafe { (_mm256_loadu_si256(x[t].cast()), *d[t], *s[t]) };
                let p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), wv, xq);
                out[t] += hsum(_mm256_cvtepi32_ps(p)) * dw * dx + mw * sx;
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::quantized::QTensor;
    use candle_core::{Device, Tensor};
    use proptest::prelude::*;

    fn f16(bytes: &[u8]) -> f32 {
        // IEEE half → f32, by hand (normals, subnormals, zero; GGUF scales are finite).
        let h = u16::from_le_bytes([bytes[0], bytes[1]]);
        let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
        let exp = i32::from((h >> 10) & 0x1f);
        let frac = f32::from(h & 0x3ff);
        sign * if exp == 0 {
            frac * 2f32.powi(-24)
        } else {
            (1.0 + frac / 1024.0) * 2f32.powi(exp - 15)
        }
    }

    /// The same products computed one value at a time from the blocks' bytes.
    fn reference(w: &Weight<'_>, a: &QAct) -> Vec<f32> {
        let nb = w.k / QK;
        let mut out = vec![0f32; w.n * a.m];
        for r in 0..w.n {
            for j in 0..a.m {
                let mut total = 0f64;
                for b in 0..nb {
                    let blk = &w.data[(r * nb + b) * w.fmt.block_bytes()..];
                    let xs = &a.q[j * a.k + b * QK..][..QK];
                    let dx = f64::from(a.d[j * nb + b]);
                    let dot: i32 = match w.fmt {
                        Format::Q8_0 => (0..QK)
                            .map(|i| i32::from(blk[2 + i] as i8) * i32::from(xs[i]))
                            .sum(),
                        Format::Q4_1 => (0..QK)
                            .map(|i| {
                                let byte = blk[4 + i % 16];
                                let q = if i < 16 { byte & 0x0f } else { byte >> 4 };
                                i32::from(q) * i32::from(xs[i])
                            })
                            .sum(),
                    };
                    total += f64::from(f16(blk)) * dx * f64::from(dot);
                    if w.fmt == Format::Q4_1 {
                        total += f64::from(f16(&blk[2..])) * f64::from(a.s[j * nb + b]);
                    }
                }
                out[j * w.n + r] = total as f32;
            }
        }
        out
    }

    fn quantized(n: usize, k: usize, seed: u64, dtype: GgmlDType) -> QTensor {
        let w: Vec<f32> = (0..n * k)
            .map(|i| {
                let h = (i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                (h % 2001) as f32 / 500.0 - 2.0
            })
            .collect();
        let w = Tensor::from_vec(w, (n, k), &Device::Cpu).unwrap();
        QTensor::quantize(&w, dtype).unwrap()
    }

    #[test]
    fn activations_round_like_llama_cpp() {
        let mut x = vec![0f32; 64];
        x[0] = 127.0;
        x[1] = -63.5;
        x[2] = 0.4;
        x[3] = 2.5;
        let a = QAct::new(&x, 2, 32);
        assert_eq!(a.d, vec![1.0, 0.0]);
        assert_eq!(&a.q[..3], &[127, -64, 0]); // -63.5: ties to even
        assert_eq!(a.q[3], 2); // ties to even, not away from zero
        assert_eq!(&a.u[..4], &[255, 64, 128, 130]);
        assert_eq!(a.s[0], 65.0);
        assert!(a.q[32..].iter().all(|&q| q == 0) && a.s[1] == 0.0);
    }

    proptest! {
        /// The vector quantizer gives the scalar one's bytes and scales exactly (on a CPU that
        /// has it).
        #[test]
        fn vector_and_scalar_quantizers_agree(
            x in proptest::collection::vec(-300f32..300.0, 32..=256), scale in 0.001f32..10.0,
        ) {
            // Without the CPU features both would be the scalar path (`cargo xtask test`
            // prints that the SIMD kernels go untested on such a CPU).
            if !cpu_has_features() {
                crate::note_test_skip("qmm: vector_and_scalar_quantizers_agree (this CPU lacks AVX-512 VNNI)");
                return Ok(());
            }
            let k = x.len() / QK * QK;
            let x: Vec<f32> = x[..k].iter().map(|v| v * scale).collect();
            let fast = QAct::new(&x, 1, k);
            let mut slow = QAct::new(&x, 1, k);
            quantize_scalar(&x, &mut slow);
            prop_assert_eq!(&fast.q, &slow.q);
            prop_assert_eq!(&fast.u, &slow.u);
            prop_assert_eq!(&fast.d, &slow.d);
            for (f, s) in fast.s.iter().zip(&slow.s) {
                prop_assert!((f - s).abs() <= 1e-6 * s.abs().max(1.0));
            }
        }
    }

    #[test]
    #[should_panic(expected = "96 values for 1 rows of 64")]
    fn a_too_long_input_is_refused() {
        let _ = QAct::new(&[1.0; 96], 1, 64);
    }

    #[test]
    #[should_panic(expected = "k must be a multiple of 32")]
    fn a_width_off_the_block_size_is_refused() {
        let _ = QAct::new(&[1.0; 40], 1, 40);
    }

    #[test]
    fn a_weight_of_the_wrong_size_is_an_error() {
        let a = QAct::new(&[0.0; 64], 1, 64);
        let bytes = vec![0u8; 33];
        let w = Weight {
            fmt: Format::Q8_0,
            n: 1,
            k: 64,
            data: &bytes,
        };
        let err = matmul_t(&[w], &a).unwrap_err();
        assert!(err.contains("33 bytes"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The kernels equal the value-by-value products, for any shape and either format,
        /// several weights at once.
        #[test]
        fn kernels_match_the_reference(
            n in 1usize..70, kb in 1usize..12, m in 1usize..10, seed in 0u64..1000, q41 in any::<bool>(),
        ) {
            if !available() {
                crate::note_test_skip("qmm: kernels_match_the_reference (this CPU lacks AVX-512 VNNI)");
                return Ok(());
            }
            let k = kb * QK;
            let dtype = if q41 { GgmlDType::Q4_1 } else { GgmlDType::Q8_0 };
            let fmt = Format::of(dtype).unwrap();
            let (t1, t2) = (quantized(n, k, seed, dtype), quantized(n + 3, k, seed + 1, GgmlDType::Q8_0));
            let (d1, d2) = (t1.data().unwrap(), t2.data().unwrap());
            let x: Vec<f32> = (0..m * k).map(|i| ((i * 37 + seed as usize) % 23) as f32 / 7.0 - 1.5).collect();
            let a = QAct::new(&x, m, k);
            let ws = [
                Weight { fmt, n, k, data: &d1 },
                Weight { fmt: Format::Q8_0, n: n + 3, k, data: &d2 },
            ];
            let outs = matmul_t(&ws, &a).unwrap();
            for (w, got) in ws.iter().zip(&outs) {
                let want = reference(w, &a);
                for (g, e) in got.iter().zip(&want) {
                    prop_assert!((g - e).abs() <= 1e-4 * (1.0 + e.abs()), "{g} vs {e}");
                }
            }
        }
    }

    #[test]
    fn products_are_close_to_the_f32_matmul() {
        if !available() {
            crate::note_test_skip(
                "qmm: products_are_close_to_the_f32_matmul (this CPU lacks AVX-512 VNNI)",
            );
            return;
        }
        let (n, k, m) = (40, 640, 3);
        for dtype in [GgmlDType::Q8_0, GgmlDType::Q4_1] {
            let t = quantized(n, k, 7, dtype);
            let wf = t.dequantize(&Device::Cpu).unwrap();
            let x: Vec<f32> = (0..m * k)
                .map(|i| ((i * 13) % 29) as f32 / 9.0 - 1.6)
                .collect();
            let xt = Tensor::from_vec(x.clone(), (m, k), &Device::Cpu).unwrap();
            let want = xt
                .matmul(&wf.t().unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            let data = t.data().unwrap();
            let w = Weight {
                fmt: Format::of(dtype).unwrap(),
                n,
                k,
                data: &data,
            };
            let got = &matmul_t(&[w], &QAct::new(&x, m, k)).unwrap()[0];
            let scale = want.iter().flatten().fold(0f32, |a, v| a.max(v.abs()));
            for (j, row) in want.iter().enumerate() {
                for (r, e) in row.iter().enumerate() {
                    let g = got[j * n + r];
                    assert!(
                        (g - e).abs() < 0.01 * scale,
                        "{dtype:?} [{j},{r}]: {g} vs {e}"
                    );
                }
            }
        }
    }
}
