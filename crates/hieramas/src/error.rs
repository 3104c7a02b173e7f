//! The facade's error: every lower crate's error, plus what the pipeline itself refuses, each
//! with the context of where it happened (`{context}` on top, the cause as its `source`).

use std::fmt::Display;

/// An error of a pipeline step. `Display` gives the outermost message; [`Error::report`] (or
/// `anyhow`'s `{:#}`) gives the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Something the pipeline itself refuses (bad settings, a missing file, a mismatch).
    #[error("{0}")]
    Invalid(String),
    /// A cause, with what was being done.
    #[error("{context}")]
    Context {
        context: String,
        #[source]
        source: Box<Error>,
    },
    #[error(transparent)]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Json(#[from] serde_json::Error),
    #[error(transparent)]
    Fmt(#[from] std::fmt::Error),
    #[error(transparent)]
    Llm(Box<hieramas_llm::LlmError>),
    #[error(transparent)]
    Tasks(Box<hieramas_tasks::TasksError>),
    #[error(transparent)]
    Bench(Box<hieramas_bench::BenchError>),
    #[error(transparent)]
    Topology(Box<hieramas_topology::TopologyError>),
    #[error(transparent)]
    Schedule(Box<hieramas_topology::schedule::ScheduleError>),
    #[error(transparent)]
    Supernode(Box<hieramas_supernode::SupernodeError>),
    #[error(transparent)]
    Reward(Box<hieramas_reward::RewardError>),
    #[error(transparent)]
    Gnn(Box<hieramas_gnn::GnnError>),
    #[cfg(feature = "engine")]
    #[error(transparent)]
    Selector(Box<hieramas_reward::selector::SelectorError>),
    #[cfg(feature = "engine")]
    #[error(transparent)]
    Sim(Box<hieramas_sim::SimError>),
    #[cfg(feature = "engine")]
    #[error(transparent)]
    Local(Box<hieramas_local::LocalError>),
    #[cfg(feature = "engine")]
    #[error(transparent)]
    Candle(Box<candle_core::Error>),
}

/// The lower crates' errors, boxed: an `Error` stays one pointer wide beside its context.
macro_rules! boxed_from {
    ($($(#[$m:meta])* $v:ident($t:ty)),* $(,)?) => {
        $($(#[$m])* impl From<$t> for Error {
            fn from(e: $t) -> Self {
                Error::$v(Box::new(e))
            }
        })*
    };
}

boxed_from!(
    Llm(hieramas_llm::LlmError),
    Tasks(hieramas_tasks::TasksError),
    Bench(hieramas_bench::BenchError),
    Topology(hieramas_topology::TopologyError),
    Schedule(hieramas_topology::schedule::ScheduleError),
    Supernode(hieramas_supernode::SupernodeError),
    Reward(hieramas_reward::RewardError),
    Gnn(hieramas_gnn::GnnError),
    #[cfg(feature = "engine")]
    Selector(hieramas_reward::selector::SelectorError),
    #[cfg(feature = "engine")]
    Sim(hieramas_sim::SimError),
    #[cfg(feature = "engine")]
    Local(hieramas_local::LocalError),
    #[cfg(feature = "engine")]
    Candle(candle_core::Error),
);

/// The facade's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The message and every cause, `outer: inner: root`.
    pub fn report(&self) -> String {
        let mut s = self.to_string();
        let mut cur: Option<&dyn std::error::Error> = std::error::Error::source(self);
        while let Some(e) = cur {
            let m = e.to_string();
            if !s.ends_with(&m) {
                s.push_str(": ");
                s.push_str(&m);
            }
            cur = e.source();
        }
        s
    }
}

/// `.context(..)` and `.with_context(..)` on results and options: the error gets what was
/// being done on top.
pub trait Context<T> {
    fn context(self, what: impl Display) -> Result<T>;
    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Error>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl Display) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: what.to_string(),
            source: Box::new(e.into()),
        })
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::Context {
            context: what().to_string(),
            source: Box::new(e.into()),
        })
    }
}

impl<T> Context<T> for Option<T> {
    fn context(self, what: impl Display) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(what.to_string()))
    }

    fn with_context<D: Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.ok_or_else(|| Error::Invalid(what().to_string()))
    }
}

/// Returns an [`Error::Invalid`] with a formatted message.
#[allow(unused_macros)]
macro_rules! bail {
    ($($t:tt)*) => {
        return Err($crate::error::Error::Invalid(format!($($t)*)))
    };
}
#[allow(unused_imports)]
pub(crate) use bail;

/// Returns an [`Error::Invalid`] unless the condition holds.
#[allow(unused_macros)]
macro_rules! ensure {
    ($cond:expr, $($t:tt)*) => {
        if !$cond {
            $crate::error::bail!($($t)*);
        }
    };
}
#[allow(unused_imports)]
pub(crate) use ensure;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_report_chains_every_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
        let e = Err::<(), _>(io)
            .context("reading pool.toml")
            .context("loading the system")
            .unwrap_err();
        assert_eq!(e.to_string(), "loading the system");
        assert_eq!(
            e.report(),
            "loading the system: reading pool.toml: no such file"
        );
        let none: Option<u8> = None;
        assert_eq!(none.context("empty").unwrap_err().report(), "empty");
    }
}
