//! Prints the token ids (JSON array, no BOS) of a text under a fetched local model's tokenizer.
//!
//! `cargo run -p hieramas-local --example tokenize -- smollm2-135m "What is 7*8?" [--special]`
//! (fetch the model first with `cargo xtask models`). With `--special`, text such as
//! `<|im_start|>` becomes the special token; without it, it is plain text.

use hieramas_local::fetch::{Manifest, ModelStore};
use hieramas_local::tokenizer::GgufTokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(id), Some(text)) = (args.first(), args.get(1)) else {
        return Err("usage: tokenize MODEL_ID TEXT [--special]".into());
    };
    let entry = Manifest::builtin()?.get(id)?.clone();
    let path = ModelStore::from_env().path(&entry);
    let mut f = std::fs::File::open(&path)
        .map_err(|e| format!("{}: {e} (run `cargo xtask models`)", path.display()))?;
    let content = candle_core::quantized::gguf_file::Content::read(&mut f)?;
    let tok = GgufTokenizer::from_gguf(&content)?;
    let ids = if args.iter().any(|a| a == "--special") {
        tok.encode_with_special(text)?
    } else {
        tok.encode(text)?
    };
    println!("{}", serde_json::to_string(&ids)?);
    Ok(())
}
