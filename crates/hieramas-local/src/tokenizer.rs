//! Tokenizers built from GGUF metadata.
//!
//! - `gpt2` vocabularies (SmolLM2): byte-level BPE from `tokenizer.ggml.tokens` + `.merges`,
//!   digits split one by one, no prefix space (llama.cpp's `smollm` pre-tokenizer).
//! - `llama` (SentencePiece) vocabularies (Gemma 3): BPE whose merges are derived from the piece
//!   scores (a merge ranks by the score of the piece it makes), `▁` for spaces, byte fallback
//!   through the `<0xNN>` pieces.
//!
//! Control and user-defined tokens are registered as special tokens. [`GgufTokenizer::encode`]
//! treats text that looks like a special token as plain text (so user input cannot inject
//! `<|im_start|>`); [`GgufTokenizer::encode_with_special`] matches them.

use std::collections::HashMap;

use candle_core::quantized::gguf_file;
use tokenizers::decoders::DecoderWrapper;
use tokenizers::decoders::byte_fallback::ByteFallback;
use tokenizers::decoders::byte_level::ByteLevel as ByteLevelDecoder;
use tokenizers::decoders::fuse::Fuse;
use tokenizers::decoders::sequence::Sequence as DecoderSequence;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::replace::Replace;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::{AddedToken, Tokenizer};

use crate::LocalError;

/// GGUF token types (llama.cpp `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// Which tokenizer family a GGUF file declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Byte-level BPE (`tokenizer.ggml.model = "gpt2"`).
    ByteLevelBpe,
    /// SentencePiece (`tokenizer.ggml.model = "llama"`).
    SentencePiece,
}

/// A tokenizer and the special ids a chat template needs.
pub struct GgufTokenizer {
    /// Matches special tokens in text.
    with_special: Tokenizer,
    /// Treats everything as text.
    plain: Tokenizer,
    pub family: Family,
    pub bos_id: Option<u32>,
    pub eos_id: Option<u32>,
    /// Token strings by id.
    pieces: Vec<String>,
    special_ids: HashMap<String, u32>,
}

fn meta<'a>(c: &'a gguf_file::Content, key: &str) -> Result<&'a gguf_file::Value, LocalError> {
    c.metadata
        .get(key)
        .ok_or_else(|| LocalError::Format(format!("GGUF metadata has no {key}")))
}

fn strings(v: &gguf_file::Value, key: &str) -> Result<Vec<String>, LocalError> {
    let arr = v
        .to_vec()
        .map_err(|e| LocalError::Format(format!("{key}: {e}")))?;
    arr.iter()
        .map(|x| {
            x.to_string()
                .cloned()
                .map_err(|e| LocalError::Format(format!("{key}: {e}")))
        })
        .collect()
}

fn opt_u32(c: &gguf_file::Content, key: &str) -> Option<u32> {
    c.metadata.get(key).and_then(|v| v.to_u32().ok())
}

impl GgufTokenizer {
    /// Builds the tokenizer a GGUF file describes.
    pub fn from_gguf(c: &gguf_file::Content) -> Result<GgufTokenizer, LocalError> {
        let model = meta(c, "tokenizer.ggml.model")?
            .to_string()
            .map_err(|e| LocalError::Format(e.to_string()))?
            .clone();
        let tokens = strings(meta(c, "tokenizer.ggml.tokens")?, "tokenizer.ggml.tokens")?;
        let types: Vec<i32> = match c.metadata.get("tokenizer.ggml.token_type") {
            Some(v) => v
                .to_vec()
                .map_err(|e| LocalError::Format(e.to_string()))?
                .iter()
                .map(|x| x.to_i32().unwrap_or(TYPE_NORMAL))
                .collect(),
            None => vec![TYPE_NORMAL; tokens.len()],
        };
        let vocab: HashMap<String, u32> = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        let (family, bpe) = match model.as_str() {
            "gpt2" => {
                let merges = strings(meta(c, "tokenizer.ggml.merges")?, "tokenizer.ggml.merges")?
                    .into_iter()
                    .map(|m| {
                        m.split_once(' ')
                            .map(|(a, b)| (a.to_string(), b.to_string()))
                            .ok_or_else(|| {
                                LocalError::Format(format!("merge without a space: {m:?}"))
                            })
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let bpe = BPE::builder()
                    .vocab_and_merges(
                        vocab
                            .iter()
                            .map(|(k, v)| (k.clone(), *v))
                            .collect::<tokenizers::models::bpe::Vocab>(),
                        merges,
                    )
                    .build()
                    .map_err(|e| LocalError::Format(format!("BPE: {e}")))?;
                (Family::ByteLevelBpe, bpe)
            }
            "llama" => {
                let scores: Vec<f32> = meta(c, "tokenizer.ggml.scores")?
                    .to_vec()
                    .map_err(|e| LocalError::Format(e.to_string()))?
                    .iter()
                    .map(|x| x.to_f32().unwrap_or(0.0))
                    .collect();
                let merges = merges_from_scores(&tokens, &scores, &types, &vocab);
                let mut b = BPE::builder()
                    .vocab_and_merges(
                        vocab
                            .iter()
                            .map(|(k, v)| (k.clone(), *v))
                            .collect::<tokenizers::models::bpe::Vocab>(),
                        merges,
                    )
                    .byte_fallback(true)
                    .fuse_unk(true);
                if let Some(unk) = opt_u32(c, "tokenizer.ggml.unknown_token_id")
                    .and_then(|i| tokens.get(i as usize))
                {
                    b = b.unk_token(unk.clone());
                }
                let bpe = b
                    .build()
                    .map_err(|e| LocalError::Format(format!("BPE: {e}")))?;
                (Family::SentencePiece, bpe)
            }
            other => {
                return Err(LocalError::Format(format!(
                    "unsupported tokenizer.ggml.model {other:?}"
                )));
            }
        };

        let mut plain = Tokenizer::new(bpe);
        match family {
            Family::ByteLevelBpe => {
                plain.with_pre_tokenizer(Some(PreSequence::new(vec![
                    Digits::new(true).into(),
                    ByteLevel::new(false, false, true).into(),
                ])));
                plain.with_decoder(Some(ByteLevelDecoder::new(false, false, true)));
            }
            Family::SentencePiece => {
                let replace =
                    Replace::new(" ", "▁").map_err(|e| LocalError::Format(e.to_string()))?;
                plain.with_normalizer(Some(replace));
                let unreplace =
                    Replace::new("▁", " ").map_err(|e| LocalError::Format(e.to_string()))?;
                plain.with_decoder(Some(DecoderSequence::new(vec![
                    DecoderWrapper::Replace(unreplace),
                    DecoderWrapper::ByteFallback(ByteFallback::new()),
                    DecoderWrapper::Fuse(Fuse::new()),
                ])));
            }
        }
        // User-defined pieces (Gemma: runs of spaces and newlines, HTML tags) are matched in
        // the raw text before anything else, as llama.cpp does, whatever the special-token
        // setting; control tokens only when special tokens are parsed.
        let user_defined: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .filter(|(_, ty)| **ty == TYPE_USER_DEFINED)
            .map(|(t, _)| AddedToken::from(t.clone(), false).normalized(false))
            .collect();
        plain.add_tokens(&user_defined);
        let mut with_special = plain.clone();
        let mut special_ids = HashMap::new();
        let specials: Vec<AddedToken> = tokens
            .iter()
            .zip(&types)
            .enumerate()
            .filter(|(_, (_, ty))| **ty == TYPE_CONTROL)
            .map(|(i, (t, _))| {
                special_ids.insert(t.clone(), i as u32);
                AddedToken::from(t.clone(), true)
            })
            .collect();
        with_special.add_special_tokens(&specials);
        Ok(GgufTokenizer {
            with_special,
            plain,
            family,
            bos_id: opt_u32(c, "tokenizer.ggml.bos_token_id"),
            eos_id: opt_u32(c, "tokenizer.ggml.eos_token_id"),
            pieces: tokens,
            special_ids,
        })
    }

    /// Ids of `text`, with special-looking text treated as plain text. No BOS is added.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        Self::run(&self.plain, text)
    }

    /// Ids of `text`, matching special tokens (`<|im_start|>`, `<start_of_turn>`, …).
    pub fn encode_with_special(&self, text: &str) -> Result<Vec<u32>, LocalError> {
        Self::run(&self.with_special, text)
    }

    fn run(t: &Tokenizer, text: &str) -> Result<Vec<u32>, LocalError> {
        t.encode_fast(text, false)
            .map(|e| e.get_ids().to_vec())
            .map_err(|e| LocalError::Format(format!("tokenize: {e}")))
    }

    /// Text of `ids`, special tokens left out.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LocalError> {
        self.with_special
            .decode(ids, true)
            .map_err(|e| LocalError::Format(format!("detokenize: {e}")))
    }

    /// The id of a special token such as `<|im_end|>`.
    pub fn special_id(&self, token: &str) -> Option<u32> {
        self.special_ids.get(token).copied()
    }

    /// The piece string of an id.
    pub fn piece(&self, id: u32) -> Option<&str> {
        self.pieces.get(id as usize).map(String::as_str)
    }

    pub fn vocab_size(&self) -> usize {
        self.pieces.len()
    }
}

/// SentencePiece BPE merges from piece scores: every split of a normal piece into two pieces of
/// the vocabulary is a merge, ranked by the score of the piece it makes (higher first), ties by
/// the ids of the halves.
fn merges_from_scores(
    tokens: &[String],
    scores: &[f32],
    types: &[i32],
    vocab: &HashMap<String, u32>,
) -> Vec<(String, String)> {
    let mut merges: Vec<(f32, u32, u32, String, String)> = Vec::new();
    for (i, piece) in tokens.iter().enumerate() {
        if types.get(i).copied().unwrap_or(TYPE_NORMAL) != TYPE_NORMAL || piece.chars().count() < 2
        {
            continue;
        }
        let score = scores.get(i).copied().unwrap_or(0.0);
        for (pos, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(pos);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                let normal = |id: u32| types.get(id as usize).copied().unwrap_or(TYPE_NORMAL);
                if normal(li) == TYPE_BYTE || normal(ri) == TYPE_BYTE {
                    continue;
                }
                merges.push((score, li, ri, l.to_string(), r.to_string()));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    merges.into_iter().map(|(_, _, _, l, r)| (l, r)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_rank_by_score_of_the_result() {
        let tokens: Vec<String> = ["a", "b", "c", "ab", "bc", "abc"]
            .map(String::from)
            .to_vec();
        let vocab = tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        // "bc" scores higher than "ab": it merges first.
        let scores = [0.0, 0.0, 0.0, -2.0, -1.0, -3.0];
        let m = merges_from_scores(&tokens, &scores, &[1; 6], &vocab);
        let pairs: Vec<(&str, &str)> = m.iter().map(|(a, b)| (a.as_str(), b.as_str())).collect();
        assert_eq!(pairs, [("b", "c"), ("a", "b"), ("a", "bc"), ("ab", "c")]);
    }
}
