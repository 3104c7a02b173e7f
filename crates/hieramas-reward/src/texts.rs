//! The texts the selector embeds (method §5.1, §1.3): LLM profiles, task+role texts and task
//! metadata summaries — profiles and role descriptions are data (`texts/*.toml`) — and an
//! on-disk cache of their embeddings keyed by content hash.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::RewardError;

const PROFILES: &str = include_str!("../texts/profiles.toml");
const ROLES: &str = include_str!("../texts/roles.toml");
const METADATA: &str = include_str!("../texts/metadata.toml");

/// How much of the task the task+role text keeps (characters).
pub const TASK_CHARS: usize = 1500;

/// How much of the task its own embedding reads (characters; the classifier's task feature,
/// method §4.3, and the role-aware selector's task input share this text and its embedding).
pub const TASK_EMBED_CHARS: usize = 2000;

/// The text embedded for a task on its own: its first [`TASK_EMBED_CHARS`] characters.
pub fn task_text(task: &str) -> String {
    task.chars().take(TASK_EMBED_CHARS).collect()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesFile {
    profiles: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RolesFile {
    descriptions: BTreeMap<String, String>,
}

/// LLM profiles and role descriptions.
#[derive(Clone, Debug, PartialEq)]
pub struct Texts {
    pub profiles: BTreeMap<String, String>,
    pub roles: BTreeMap<String, String>,
}

impl Texts {
    /// The shipped texts.
    pub fn builtin() -> Result<Texts, RewardError> {
        Texts::from_toml(PROFILES, "texts/profiles.toml", ROLES, "texts/roles.toml")
    }

    pub fn from_toml(
        profiles: &str,
        profiles_source: &str,
        roles: &str,
        roles_source: &str,
    ) -> Result<Texts, RewardError> {
        let err = |source: &str, detail: String| RewardError::Config {
            source_name: source.to_string(),
            detail,
        };
        let p: ProfilesFile =
            toml::from_str(profiles).map_err(|e| err(profiles_source, e.to_string()))?;
        let r: RolesFile = toml::from_str(roles).map_err(|e| err(roles_source, e.to_string()))?;
        if !p.profiles.contains_key("skip") {
            return Err(err(profiles_source, "no profile for `skip`".into()));
        }
        if !r.descriptions.contains_key("default") {
            return Err(err(roles_source, "no `default` description".into()));
        }
        Ok(Texts {
            profiles: p.profiles,
            roles: r.descriptions,
        })
    }

    /// The profile of pool model `id` (a generic one, naming it, when none is written).
    pub fn profile(&self, id: &str) -> String {
        self.profiles.get(id).cloned().unwrap_or_else(|| {
            format!("{id}, a language model of the pool. No profile is written for it: judge it by results.")
        })
    }

    /// The role's name and description, then the first [`TASK_CHARS`] characters of the task.
    ///
    /// The official text puts the task first. With an embedder that reads 256 tokens
    /// (all-MiniLM-L6-v2) that order truncates the role away for most tasks, and every role of a
    /// query gets the same embedding, so the selector cannot tell roles apart (measured: identical
    /// policies for two MATH roles). The role comes first here: the same content, and the part
    /// an embedder drops is the tail of the task.
    pub fn task_role(&self, task: &str, role: &str) -> String {
        let head: String = task.chars().take(TASK_CHARS).collect();
        format!("{}\n\nTask: {head}", self.role(role))
    }

    /// The role's name and description alone (the role-aware selector's role input).
    pub fn role(&self, role: &str) -> String {
        let description = self
            .roles
            .get(role)
            .or_else(|| self.roles.get("default"))
            .map_or("", String::as_str);
        format!("Role: {role}\n{description}")
    }
}

/// What is known about a task (method §5.1); any field may be missing.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, Deserialize)]
pub struct TaskMeta {
    /// math, coding, analysis, explanation, reasoning or general.
    pub kind: Option<String>,
    /// easy, medium or hard.
    pub difficulty: Option<String>,
    pub domain: Option<String>,
    pub key_skills: Vec<String>,
    pub description: Option<String>,
}

impl TaskMeta {
    /// "Task type: …. Difficulty: …. Domain: …. Key skills: a, b. Description: …." — missing
    /// parts left out; "General task." when nothing is known.
    pub fn summary(&self) -> String {
        let field = |label: &str, v: &Option<String>| {
            v.as_ref()
                .filter(|v| !v.trim().is_empty())
                .map(|v| format!("{label}: {}.", v.trim().trim_end_matches('.')))
        };
        let skills = (!self.key_skills.is_empty())
            .then(|| format!("Key skills: {}.", self.key_skills.join(", ")));
        let parts: Vec<String> = [
            field("Task type", &self.kind),
            field("Difficulty", &self.difficulty),
            field("Domain", &self.domain),
            skills,
            field("Description", &self.description),
        ]
        .into_iter()
        .flatten()
        .collect();
        if parts.is_empty() {
            "General task.".into()
        } else {
            parts.join(" ")
        }
    }

    /// The metadata in an LLM's reply: the first `{` to the last `}` read as JSON with `type`,
    /// `difficulty`, `domain`, `description` and `key_skills`. `None` when that is not a JSON
    /// object or holds none of the fields.
    pub fn parse(reply: &str) -> Option<TaskMeta> {
        let start = reply.find('{')?;
        let end = reply.rfind('}')?;
        if end < start {
            return None;
        }
        let v: serde_json::Value = serde_json::from_str(&reply[start..=end]).ok()?;
        let obj = v.as_object()?;
        let text = |k: &str| {
            obj.get(k)
                .and_then(|x| x.as_str())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        };
        let key_skills: Vec<String> = obj
            .get("key_skills")
            .and_then(|x| x.as_array())
            .map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str())
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let meta = TaskMeta {
            kind: text("type").map(|t| t.to_lowercase()),
            difficulty: text("difficulty").map(|t| t.to_lowercase()),
            domain: text("domain"),
            key_skills,
            description: text("description"),
        };
        (meta != TaskMeta::default()).then_some(meta)
    }

    /// The deterministic keyword heuristic (the official fallback when its LLM call fails):
    /// type from keywords, difficulty from length (> 200 words hard, > 50 medium), domain =
    /// type, the first 200 characters as description, default skills per type.
    pub fn heuristic(task: &str) -> TaskMeta {
        let lower = task.to_lowercase();
        let has = |words: &[&str]| words.iter().any(|w| lower.contains(w));
        let kind = if has(&["def ", "return", "python", "function", "```"]) {
            "coding"
        } else if has(&[
            "solve",
            "compute",
            "calculate",
            "equation",
            "$",
            "\\frac",
            "integer",
        ]) {
            "math"
        } else if has(&["explain", "why", "describe"]) {
            "explanation"
        } else if has(&["a.", "b.", "c.", "d.", "which of the following"]) {
            "reasoning"
        } else {
            "general"
        };
        let words = task.split_whitespace().count();
        let difficulty = if words > 200 {
            "hard"
        } else if words > 50 {
            "medium"
        } else {
            "easy"
        };
        let skills: &[&str] = match kind {
            "coding" => &["programming", "algorithms"],
            "math" => &["calculation", "problem solving"],
            "reasoning" => &["knowledge", "logical reasoning"],
            _ => &["comprehension", "reasoning"],
        };
        TaskMeta {
            kind: Some(kind.into()),
            difficulty: Some(difficulty.into()),
            domain: Some(kind.into()),
            key_skills: skills.iter().map(|s| s.to_string()).collect(),
            description: Some(task.chars().take(200).collect()),
        }
    }
}

/// `dir/<2 hex>/<sha256 of the parts, NUL-separated>.<ext>`: a content-addressed file name.
fn content_path(dir: &std::path::Path, parts: &[&str], ext: &str) -> PathBuf {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0]);
        }
        h.update(part.as_bytes());
    }
    let key = hex::encode(h.finalize());
    dir.join(&key[..2]).join(format!("{key}.{ext}"))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetadataPrompt {
    system: String,
    user: String,
    max_tokens: u32,
}

/// Task metadata from an LLM (method §5.1), cached on disk per (model id, task) — one
/// content-addressed file each, written atomically, so concurrent runs and every role of a
/// query share one extraction (the official per-node caches could disagree, §10 item 11).
#[derive(Clone, Debug)]
pub struct MetadataCache {
    pub dir: PathBuf,
}

/// A task's metadata, where it came from, and what getting it cost.
#[derive(Clone, Debug, PartialEq)]
pub struct Fetched {
    pub meta: TaskMeta,
    pub source: MetaSource,
    /// The extraction call's exact cost (zero from the cache).
    pub cost: hieramas_llm::Usd,
}

/// Where a task's metadata came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetaSource {
    Cache,
    Llm,
    /// The LLM's reply was not usable: the keyword heuristic.
    Heuristic,
}

impl MetadataCache {
    fn path(&self, model: &str, task: &str) -> PathBuf {
        content_path(&self.dir, &["metadata", model, task], "json")
    }

    /// The metadata of `task` by `model`: cached, else asked (a failed call is an error; an
    /// unusable reply falls back to the heuristic, and that result is cached too).
    pub async fn get(
        &self,
        model: &dyn hieramas_llm::ChatModel,
        task: &str,
    ) -> Result<Fetched, hieramas_llm::LlmError> {
        let io = |path: &std::path::Path, e: String| hieramas_llm::LlmError::Backend {
            model: model.id().to_string(),
            detail: format!("metadata cache {}: {e}", path.display()),
        };
        let p = self.path(model.id(), task);
        if let Ok(text) = std::fs::read_to_string(&p)
            && let Ok(meta) = serde_json::from_str::<TaskMeta>(&text)
        {
            return Ok(Fetched {
                meta,
                source: MetaSource::Cache,
                cost: hieramas_llm::Usd::ZERO,
            });
        }
        let prompt: MetadataPrompt = toml::from_str(METADATA)
            .map_err(|e| io(std::path::Path::new("texts/metadata.toml"), e.to_string()))?;
        let head: String = task.chars().take(TASK_CHARS).collect();
        let mut req = hieramas_llm::ChatRequest::new(vec![
            hieramas_llm::Message::system(prompt.system),
            hieramas_llm::Message::user(prompt.user.replace("{task}", &head)),
        ]);
        req.temperature = Some(0.2);
        req.max_tokens = Some(prompt.max_tokens);
        let reply = model.chat(&req).await?;
        let (meta, source) = match TaskMeta::parse(&reply.text) {
            Some(m) => (m, MetaSource::Llm),
            None => {
                tracing::warn!(
                    model = model.id(),
                    "unusable metadata reply; keyword heuristic used"
                );
                (TaskMeta::heuristic(task), MetaSource::Heuristic)
            }
        };
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| io(d, e.to_string()))?;
        }
        // This process's own temporary file (see `EmbeddingCache::embed`).
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        let json = serde_json::to_string(&meta).map_err(|e| io(&p, e.to_string()))?;
        std::fs::write(&tmp, json).map_err(|e| io(&tmp, e.to_string()))?;
        std::fs::rename(&tmp, &p).map_err(|e| io(&p, e.to_string()))?;
        Ok(Fetched {
            meta,
            source,
            cost: reply.cost,
        })
    }
}

/// Embeddings on disk, one file per (embedder id, text) under `dir`, named by the sha256 of
/// both: a text is embedded once per machine, whatever process asks.
#[derive(Clone, Debug)]
pub struct EmbeddingCache {
    pub dir: PathBuf,
}

impl EmbeddingCache {
    fn path(&self, embedder: &str, text: &str) -> PathBuf {
        content_path(&self.dir, &[embedder, text], "f32")
    }

    /// The embeddings of `texts` (in order), computing only those not cached yet.
    pub async fn embed(
        &self,
        embedder: &dyn hieramas_llm::Embedder,
        texts: &[String],
    ) -> Result<Vec<Vec<f32>>, hieramas_llm::LlmError> {
        let io = |path: &std::path::Path, e: std::io::Error| hieramas_llm::LlmError::Backend {
            model: embedder.id().to_string(),
            detail: format!("embedding cache {}: {e}", path.display()),
        };
        let mut out: Vec<Option<Vec<f32>>> = Vec::with_capacity(texts.len());
        let mut missing = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let p = self.path(embedder.id(), t);
            match std::fs::read(&p) {
                Ok(bytes) if bytes.len() % 4 == 0 && !bytes.is_empty() => out.push(Some(
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                        .collect(),
                )),
                _ => {
                    out.push(None);
                    missing.push(i);
                }
            }
        }
        if !missing.is_empty() {
            let batch: Vec<String> = missing.iter().map(|&i| texts[i].clone()).collect();
            let e = embedder.embed(&batch).await?;
            for (&i, v) in missing.iter().zip(e.vectors) {
                let p = self.path(embedder.id(), &texts[i]);
                if let Some(d) = p.parent() {
                    std::fs::create_dir_all(d).map_err(|e| io(d, e))?;
                }
                let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
                // Written whole to a temporary name of this process, then renamed: a crash
                // leaves no torn file, and two processes sharing the cache do not write into
                // each other's temporary file.
                let tmp = p.with_extension(format!("tmp{}", std::process::id()));
                std::fs::write(&tmp, &bytes).map_err(|e| io(&tmp, e))?;
                std::fs::rename(&tmp, &p).map_err(|e| io(&p, e))?;
                out[i] = Some(v);
            }
        }
        Ok(out.into_iter().flatten().collect())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn every_shipped_role_has_a_description_and_the_pools_have_profiles() {
        let t = Texts::builtin().unwrap();
        for role in [
            "Mathematical Analyst",
            "Math Solver",
            "Inspector",
            "Knowledgeable Expert",
            "Critic",
            "Mathematician",
            "Psychologist",
            "Historian",
            "Doctor",
            "Lawyer",
            "Economist",
            "Project Manager",
            "Algorithm Designer",
            "Programming Expert",
            "Test Analyst",
            "Bug Fixer",
        ] {
            assert!(t.roles.contains_key(role), "{role}");
        }
        for id in [
            "qwen3-8b",
            "gpt-5-mini",
            "local/smollm2-135m",
            "local/gemma3-270m",
            "skip",
        ] {
            assert!(t.profiles.contains_key(id), "{id}");
        }
        assert!(t.profile("unknown-model").contains("unknown-model"));
    }

    #[test]
    fn task_role_text_keeps_the_head_of_the_task() {
        let t = Texts::builtin().unwrap();
        let long = "é".repeat(2000);
        let s = t.task_role(&long, "Critic");
        let task = s.split_once("\n\nTask: ").unwrap().1;
        assert_eq!(task.chars().take_while(|&c| c == 'é').count(), TASK_CHARS);
        assert_eq!(task.chars().count(), TASK_CHARS);
        // The role leads, so a short-context embedder keeps it.
        assert!(s.starts_with("Role: Critic\nSpecialty: scrutinising"));
        assert!(
            t.task_role("x", "Nobody")
                .contains("Specialty: general problem solving")
        );
    }

    #[test]
    fn metadata_summaries() {
        assert_eq!(TaskMeta::default().summary(), "General task.");
        let m = TaskMeta {
            kind: Some("math".into()),
            difficulty: None,
            domain: Some("algebra".into()),
            key_skills: vec!["a".into(), "b".into()],
            description: Some("Solve it.".into()),
        };
        assert_eq!(
            m.summary(),
            "Task type: math. Domain: algebra. Key skills: a, b. Description: Solve it."
        );
        let h = TaskMeta::heuristic("def f(x):\n    return x");
        assert_eq!(
            (h.kind.as_deref(), h.difficulty.as_deref()),
            (Some("coding"), Some("easy"))
        );
        let words = "solve ".repeat(60);
        assert_eq!(
            TaskMeta::heuristic(&words).difficulty.as_deref(),
            Some("medium")
        );
    }

    #[test]
    fn metadata_replies_are_parsed_leniently() {
        let m = TaskMeta::parse(
            "Sure! ```json\n{\"type\": \"Math\", \"difficulty\": \"HARD\", \"domain\": \"number theory\", \"description\": \"Count primes.\", \"key_skills\": [\"primes\", \" \", \"counting\"]}\n```",
        )
        .unwrap();
        assert_eq!(m.kind.as_deref(), Some("math"));
        assert_eq!(m.difficulty.as_deref(), Some("hard"));
        assert_eq!(m.key_skills, vec!["primes", "counting"]);
        assert_eq!(
            m.summary(),
            "Task type: math. Difficulty: hard. Domain: number theory. Key skills: primes, counting. Description: Count primes."
        );
        assert_eq!(TaskMeta::parse("no json here"), None);
        assert_eq!(TaskMeta::parse("} {"), None);
        assert_eq!(
            TaskMeta::parse("{\"other\": 1}"),
            None,
            "none of the fields"
        );
        assert_eq!(TaskMeta::parse("[1, 2]"), None);
    }

    proptest::proptest! {
        #[test]
        fn parse_never_panics_and_reads_back_what_it_wrote(
            noise in ".{0,40}",
            kind in "[a-z]{1,10}",
            skills in proptest::collection::vec("[a-z]{1,8}", 0..4),
        ) {
            let _ = TaskMeta::parse(&noise);
            let m = TaskMeta { kind: Some(kind), key_skills: skills, ..TaskMeta::default() };
            let reply = format!("{}{}", noise.replace(['{', '}'], ""), serde_json::json!({"type": m.kind, "key_skills": m.key_skills}));
            proptest::prop_assert_eq!(TaskMeta::parse(&reply), Some(m));
        }
    }
}
