//! Errors a user sees: why a workload was rejected, why an invocation failed.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits::{Busy, ByteSize};

/// One thing wrong with a workload, found at validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// What the problem is about: `manifest`, `component "api"`, `volume "data"`, …
    pub subject: String,
    pub message: String,
}

impl Problem {
    pub fn new(subject: impl Into<String>, message: impl Into<String>) -> Problem {
        Problem { subject: subject.into(), message: message.into() }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// A workload refused on receipt, with every problem found. Nothing of it runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
pub struct Rejection {
    pub workload: String,
    pub problems: Vec<Problem>,
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(f, "workload `{}` rejected ({n} problem{}):", self.workload, if n == 1 { "" } else { "s" })?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Why one invocation of a component failed. The host and other invocations are
/// unaffected by any of these.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InvokeError {
    #[error("the workload has no component `{0}`")]
    NoSuchComponent(String),
    #[error("component `{component}` does not export `{function}`")]
    NoSuchFunction { component: String, function: String },
    #[error("component `{component}` is {busy}")]
    Busy { component: String, busy: Busy },
    #[error("component `{component}` timed out: it ran longer than its CPU time limit of {}", humantime::format_duration(*.limit))]
    Timeout { component: Arc<str>, limit: Duration },
    #[error("component `{component}` timed out: it did not finish within its timeout of {}", humantime::format_duration(*.limit))]
    DeadlineExceeded { component: Arc<str>, limit: Duration },
    #[error("component `{component}` ran out of memory: it tried to grow past its limit of {limit} ({message})")]
    OutOfMemory { component: Arc<str>, limit: ByteSize, message: String },
    #[error("component `{component}` trapped: {message}")]
    Trap { component: String, message: String },
    #[error("component `{component}` exited with status {code}")]
    Exit { component: String, code: i32 },
    #[error("component `{component}` returned an error from `wasi:cli/run`")]
    RunFailed { component: String },
    #[error("cannot instantiate component `{component}`: {message}")]
    Instantiate { component: String, message: String },
    #[error("the workload is stopping")]
    Stopped,
    /// A plugin took traffic for a workload still starting (which may yet be
    /// rejected): nothing of a workload runs before it is `running`.
    #[error("the workload is not running yet")]
    NotStarted,
}

impl InvokeError {
    /// The exit status a command-line runner should use for this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            InvokeError::Exit { code, .. } => *code,
            // Like `wasmtime run`: a trap looks like an abort.
            InvokeError::Trap { .. }
            | InvokeError::OutOfMemory { .. }
            | InvokeError::Timeout { .. }
            | InvokeError::DeadlineExceeded { .. } => 134,
            _ => 1,
        }
    }
}
