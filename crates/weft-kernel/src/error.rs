use std::io;

/// A failed kernel operation, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("netlink socket: {0}")]
    Socket(#[source] io::Error),
    #[error("{what}: {source}")]
    Request {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("netlink reply could not be decoded: {0}")]
    Decode(String),
    #[error("entering network namespace {path}: {source}")]
    Netns {
        path: String,
        #[source]
        source: io::Error,
    },
}

impl KernelError {
    pub fn request(what: impl Into<String>, source: io::Error) -> Self {
        KernelError::Request {
            what: what.into(),
            source,
        }
    }

    /// The errno behind a failed request, if any.
    pub fn errno(&self) -> Option<i32> {
        match self {
            KernelError::Request { source, .. } | KernelError::Socket(source) => {
                source.raw_os_error()
            }
            _ => None,
        }
    }
}
