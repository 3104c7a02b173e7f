//! Verified checkpoints for candle models: the weights as safetensors at `path`, and beside
//! them `<path>.json`, a sidecar whose type the caller chooses (configuration, tensor names,
//! anything else) and which records the weights' sha256. Loading reads the sidecar, checks the
//! file's sha256 against it and the stored tensor names against the model's, and only then
//! loads: a truncated or swapped file is an error naming the path, never a silently wrong model.
//! The stage-1 selector (`hieramas-reward`) and the stage-2 classifier (`hieramas-gnn`) use it.
//!
//! ```
//! use candle_core::{DType, Device};
//! use candle_nn::{VarBuilder, VarMap};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("w.safetensors");
//! let varmap = VarMap::new();
//! VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu).get((2, 3), "w")?;
//! let sha = hieramas_checkpoint::save_weights(&varmap, &path)?;
//! hieramas_checkpoint::write_sidecar(&path, &serde_json::json!({ "sha256": sha }))?;
//!
//! let mut fresh = VarMap::new();
//! VarBuilder::from_varmap(&fresh, DType::F32, &Device::Cpu).get((2, 3), "w")?;
//! hieramas_checkpoint::load_verified(&path, &sha, &mut fresh, &Device::Cpu)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_nn::VarMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// A checkpoint that cannot be written, read or trusted.
#[derive(Debug, thiserror::Error)]
#[error("checkpoint {}: {detail}", path.display())]
pub struct CheckpointError {
    pub path: PathBuf,
    pub detail: String,
}

fn bad(path: &Path) -> impl Fn(String) -> CheckpointError + '_ {
    move |detail| CheckpointError {
        path: path.to_path_buf(),
        detail,
    }
}

/// `<path>.json`.
pub fn sidecar(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".json");
    PathBuf::from(s)
}

/// The hex sha256 of the file at `path`.
pub fn file_sha256(path: &Path) -> Result<String, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| bad(path)(e.to_string()))?;
    Ok(hex::encode(Sha256::digest(&bytes)))
}

/// The parameter names of `varmap`, sorted.
pub fn tensor_names(varmap: &VarMap) -> Option<Vec<String>> {
    let mut names: Vec<String> = varmap.data().lock().ok()?.keys().cloned().collect();
    names.sort();
    Some(names)
}

/// Writes `varmap` to `path` (safetensors); returns the file's sha256 for the sidecar.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<String, CheckpointError> {
    varmap.save(path).map_err(|e| bad(path)(e.to_string()))?;
    file_sha256(path)
}

/// Writes `meta` to `<path>.json`.
pub fn write_sidecar(path: &Path, meta: &impl Serialize) -> Result<(), CheckpointError> {
    let json = serde_json::to_string_pretty(meta).map_err(|e| bad(path)(e.to_string()))?;
    std::fs::write(sidecar(path), json + "\n").map_err(|e| bad(path)(e.to_string()))
}

/// Reads `<path>.json` as `M`.
pub fn read_sidecar<M: DeserializeOwned>(path: &Path) -> Result<M, CheckpointError> {
    let text = std::fs::read_to_string(sidecar(path))
        .map_err(|e| bad(path)(format!("its sidecar {}: {e}", sidecar(path).display())))?;
    serde_json::from_str(&text).map_err(|e| bad(path)(format!("its sidecar is not valid: {e}")))
}

/// Loads the weights at `path` into `varmap` (whose variables the model has created), after
/// checking the file's sha256 against `recorded_sha256` and its tensor names against
/// `varmap`'s. Returns those names.
pub fn load_verified(
    path: &Path,
    recorded_sha256: &str,
    varmap: &mut VarMap,
    dev: &Device,
) -> Result<Vec<String>, CheckpointError> {
    let bad = bad(path);
    let sha = file_sha256(path)?;
    if sha != recorded_sha256 {
        return Err(bad(format!(
            "sha256 {sha} differs from the recorded {recorded_sha256} (file changed or truncated)"
        )));
    }
    let expected = tensor_names(varmap).ok_or_else(|| bad("parameter map poisoned".into()))?;
    let stored = candle_core::safetensors::load(path, dev).map_err(|e| bad(e.to_string()))?;
    let mut found: Vec<String> = stored.keys().cloned().collect();
    found.sort();
    if found != expected {
        return Err(bad(format!(
            "tensors {found:?} are not the model's {expected:?}"
        )));
    }
    varmap.load(path).map_err(|e| bad(e.to_string()))?;
    Ok(expected)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use candle_core::DType;
    use candle_nn::VarBuilder;

    fn model(names: &[&str]) -> VarMap {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        for n in names {
            vb.get_with_hints((2, 2), n, candle_nn::Init::Const(0.5))
                .unwrap();
        }
        varmap
    }

    #[test]
    fn a_saved_checkpoint_loads_and_a_changed_or_foreign_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.safetensors");
        let sha = save_weights(&model(&["a", "b"]), &path).unwrap();
        write_sidecar(&path, &serde_json::json!({ "sha256": sha })).unwrap();
        let meta: serde_json::Value = read_sidecar(&path).unwrap();
        assert_eq!(meta["sha256"], sha.as_str());

        let mut same = model(&["a", "b"]);
        let names = load_verified(&path, &sha, &mut same, &Device::Cpu).unwrap();
        assert_eq!(names, vec!["a", "b"]);

        // Other tensors: refused, naming them.
        let e = load_verified(&path, &sha, &mut model(&["a"]), &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("are not the model's"), "{e}");

        // A changed file: refused by its sha256.
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = load_verified(&path, &sha, &mut model(&["a", "b"]), &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");
        assert!(e.to_string().contains("m.safetensors"), "{e}");

        // No sidecar: an error naming it.
        let e =
            read_sidecar::<serde_json::Value>(&dir.path().join("none.safetensors")).unwrap_err();
        assert!(e.to_string().contains("none.safetensors.json"), "{e}");
    }
}
