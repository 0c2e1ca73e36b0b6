//! The error type shared by every painvrl crate.

use std::path::PathBuf;

/// Errors raised by painvrl. Variants name what was wrong and where, so that a user can fix the
/// input without reading the source.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file's content does not have the expected form.
    #[error("{path}{}: {message}", line.map(|l| format!(", line {l}")).unwrap_or_default())]
    Parse {
        /// The file involved.
        path: PathBuf,
        /// 1-based line number, when the problem is on one line.
        line: Option<usize>,
        /// What was expected and what was found.
        message: String,
    },
    /// Data that is well-formed but unusable (empty split, ids out of range, NaN features, ...).
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// A configuration field or option has a value outside its domain.
    #[error("invalid value for `{field}`: {message}")]
    Config {
        /// The offending field or option name.
        field: String,
        /// What was expected.
        message: String,
    },
    /// A requested device is unavailable.
    #[error("device: {0}")]
    Device(String),
    /// Training produced a non-finite value.
    #[error("diverged in {module} at epoch {epoch}, step {step}: {what} is not finite")]
    Diverged {
        /// The module that was training (backbone, mask, environments, ...).
        module: String,
        /// 0-based epoch.
        epoch: usize,
        /// 0-based step within the epoch.
        step: usize,
        /// Which value was NaN or Inf.
        what: String,
    },
    /// Training was interrupted by a signal; a checkpoint was written.
    #[error("interrupted: {0}")]
    Interrupted(String),
    /// An error from libtorch.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl Error {
    /// Builds an [`Error::Io`] for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// Builds an [`Error::Parse`] for `path` at an optional 1-based `line`.
    pub fn parse(path: impl Into<PathBuf>, line: Option<usize>, message: impl Into<String>) -> Self {
        Error::Parse { path: path.into(), line, message: message.into() }
    }

    /// Builds an [`Error::Config`] naming `field`.
    pub fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config { field: field.into(), message: message.into() }
    }
}

/// Result alias used across painvrl.
pub type Result<T, E = Error> = std::result::Result<T, E>;
