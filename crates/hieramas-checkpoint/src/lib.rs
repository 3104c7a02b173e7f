//! Verified checkpoints for candle models: the weights as safetensors at `path`, and beside
//! them `<path>.json`, a sidecar whose type the caller chooses (configuration, tensor names,
//! anything else) and which records the weights' sha256. Loading reads the sidecar, checks the
//! file's sha256 against it and the stored tensor names against the model's, and only then
//! loads: a truncated or swapped file is an error naming the path, never a silently wrong model.
//! The stage-1 selector (`hieramas-reward`) and the stage-2 classifier (`hieramas-gnn`) use it.
//!
//! Every file is written crash-safe: to a temporary file in the same folder, synced, renamed
//! over the target, and the folder synced — a kill leaves the old file or the new one, never
//! half of one. Loading hashes the bytes it then loads (one read), so a file changed between
//! the check and the load cannot slip through.
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

/// `<dir>/.<name>.tmp`: where a file is written before it is renamed to `path`.
fn temp_path(path: &Path) -> PathBuf {
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(".tmp");
    path.with_file_name(name)
}

/// Syncs the written file `tmp`, renames it to `path` and syncs the folder, so that after a
/// crash `path` holds either its old content or all of the new.
fn commit(tmp: &Path, path: &Path) -> Result<(), CheckpointError> {
    let fail = |what: &str, e: std::io::Error| bad(path)(format!("{what}: {e}"));
    std::fs::File::open(tmp)
        .and_then(|f| f.sync_all())
        .map_err(|e| fail("syncing the new file", e))?;
    std::fs::rename(tmp, path).map_err(|e| fail("renaming the new file into place", e))?;
    sync_dir(path).map_err(|e| fail("syncing its folder", e))
}

#[cfg(unix)]
fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent().filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => std::fs::File::open(".")?.sync_all(),
    }
}

#[cfg(not(unix))]
fn sync_dir(_: &Path) -> std::io::Result<()> {
    Ok(())
}

/// Writes `bytes` to `path` crash-safe (a temporary file, synced, renamed into place).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CheckpointError> {
    let tmp = temp_path(path);
    std::fs::write(&tmp, bytes)
        .map_err(|e| bad(path)(format!("writing {}: {e}", tmp.display())))?;
    commit(&tmp, path)
}

/// Writes a file through `write` (given the temporary path) crash-safe; returns the sha256
/// of the bytes committed.
fn write_via(
    path: &Path,
    write: impl FnOnce(&Path) -> Result<(), String>,
) -> Result<String, CheckpointError> {
    let tmp = temp_path(path);
    write(&tmp).map_err(|e| bad(path)(format!("writing {}: {e}", tmp.display())))?;
    let sha = file_sha256(&tmp)?;
    commit(&tmp, path)?;
    Ok(sha)
}

/// Writes `varmap` to `path` (safetensors, crash-safe); returns the file's sha256 for the
/// sidecar.
pub fn save_weights(varmap: &VarMap, path: &Path) -> Result<String, CheckpointError> {
    write_via(path, |tmp| varmap.save(tmp).map_err(|e| e.to_string()))
}

/// Writes named tensors to `path` (safetensors, crash-safe); returns the file's sha256.
pub fn save_tensors(
    tensors: &std::collections::HashMap<String, candle_core::Tensor>,
    path: &Path,
) -> Result<String, CheckpointError> {
    write_via(path, |tmp| {
        candle_core::safetensors::save(tensors, tmp).map_err(|e| e.to_string())
    })
}

/// The bytes of `path`, read once and checked against `recorded_sha256`.
pub fn read_verified(path: &Path, recorded_sha256: &str) -> Result<Vec<u8>, CheckpointError> {
    let bytes = std::fs::read(path).map_err(|e| bad(path)(e.to_string()))?;
    let sha = hex::encode(Sha256::digest(&bytes));
    if sha != recorded_sha256 {
        return Err(bad(path)(format!(
            "sha256 {sha} differs from the recorded {recorded_sha256} (file changed or truncated)"
        )));
    }
    Ok(bytes)
}

/// The tensors of the safetensors file at `path`, from bytes checked against
/// `recorded_sha256`.
pub fn load_tensors_verified(
    path: &Path,
    recorded_sha256: &str,
    dev: &Device,
) -> Result<std::collections::HashMap<String, candle_core::Tensor>, CheckpointError> {
    let bytes = read_verified(path, recorded_sha256)?;
    candle_core::safetensors::load_buffer(&bytes, dev).map_err(|e| bad(path)(e.to_string()))
}

/// Writes `meta` to `<path>.json` (crash-safe).
pub fn write_sidecar(path: &Path, meta: &impl Serialize) -> Result<(), CheckpointError> {
    let json = serde_json::to_string_pretty(meta).map_err(|e| bad(path)(e.to_string()))?;
    write_atomic(&sidecar(path), (json + "\n").as_bytes())
}

/// Reads `<path>.json` as `M`.
pub fn read_sidecar<M: DeserializeOwned>(path: &Path) -> Result<M, CheckpointError> {
    let text = std::fs::read_to_string(sidecar(path))
        .map_err(|e| bad(path)(format!("its sidecar {}: {e}", sidecar(path).display())))?;
    serde_json::from_str(&text).map_err(|e| bad(path)(format!("its sidecar is not valid: {e}")))
}

/// Loads the weights at `path` into `varmap` (whose variables the model has created), after
/// checking the bytes' sha256 against `recorded_sha256` and their tensor names against
/// `varmap`'s. Returns those names.
pub fn load_verified(
    path: &Path,
    recorded_sha256: &str,
    varmap: &mut VarMap,
    dev: &Device,
) -> Result<Vec<String>, CheckpointError> {
    let bad = bad(path);
    let stored = load_tensors_verified(path, recorded_sha256, dev)?;
    let vars = varmap
        .data()
        .lock()
        .map_err(|_| bad("parameter map poisoned".into()))?;
    let mut expected: Vec<String> = vars.keys().cloned().collect();
    expected.sort();
    let mut found: Vec<String> = stored.keys().cloned().collect();
    found.sort();
    if found != expected {
        return Err(bad(format!(
            "tensors {found:?} are not the model's {expected:?}"
        )));
    }
    for (name, var) in vars.iter() {
        let t = stored
            .get(name)
            .ok_or_else(|| bad(format!("no tensor {name}")))?;
        var.set(t).map_err(|e| bad(format!("tensor {name}: {e}")))?;
    }
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

        // A truncated file: refused before anything is loaded.
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let e = load_verified(&path, &sha, &mut model(&["a", "b"]), &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("sha256"), "{e}");

        // No sidecar: an error naming it.
        let e =
            read_sidecar::<serde_json::Value>(&dir.path().join("none.safetensors")).unwrap_err();
        assert!(e.to_string().contains("none.safetensors.json"), "{e}");
    }

    #[test]
    fn a_save_replaces_the_file_whole_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        let first = save_weights(&model(&["a"]), &path).unwrap();
        // A save killed midway left a temporary file: the next save writes over it, and the
        // committed file is only ever a whole one.
        std::fs::write(temp_path(&path), b"half a file").unwrap();
        let varmap = model(&["a"]);
        varmap
            .data()
            .lock()
            .unwrap()
            .get("a")
            .unwrap()
            .set(&candle_core::Tensor::ones((2, 2), DType::F32, &Device::Cpu).unwrap())
            .unwrap();
        let second = save_weights(&varmap, &path).unwrap();
        assert_ne!(first, second);
        assert_eq!(file_sha256(&path).unwrap(), second);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["w.safetensors"]);
        let mut back = model(&["a"]);
        load_verified(&path, &second, &mut back, &Device::Cpu).unwrap();
        let v = back.data().lock().unwrap()["a"]
            .as_tensor()
            .sum_all()
            .unwrap();
        assert_eq!(v.to_scalar::<f32>().unwrap(), 4.0);
    }

    #[test]
    fn tensors_round_trip_and_a_wrong_hash_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.safetensors");
        let mut map = std::collections::HashMap::new();
        map.insert(
            "steps".to_string(),
            candle_core::Tensor::new(&[7f64], &Device::Cpu).unwrap(),
        );
        let sha = save_tensors(&map, &path).unwrap();
        let back = load_tensors_verified(&path, &sha, &Device::Cpu).unwrap();
        assert_eq!(back["steps"].to_vec1::<f64>().unwrap(), vec![7.0]);
        let e = load_tensors_verified(&path, &"0".repeat(64), &Device::Cpu).unwrap_err();
        assert!(e.to_string().contains("t.safetensors"), "{e}");
        write_atomic(&dir.path().join("x.json"), b"{}").unwrap();
        assert_eq!(std::fs::read(dir.path().join("x.json")).unwrap(), b"{}");
    }
}
