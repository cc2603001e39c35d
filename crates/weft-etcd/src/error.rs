//! What went wrong talking to etcd, in words, and which failures are worth
//! trying on another member.

use std::time::Duration;

use etcd_client::Error as ClientError;

#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// A member answered, and the answer was an error (not retried).
    #[error("etcd: {what}: {reason}")]
    Refused { what: String, reason: String },
    /// No member gave an answer within the call's time budget.
    #[error(
        "etcd: {what}: no endpoint answered in {}: {}",
        seconds(*.elapsed),
        failure_list(.failures)
    )]
    Unreachable {
        what: String,
        elapsed: Duration,
        /// (endpoint, why it failed), in the order they were last tried.
        failures: Vec<(String, String)>,
    },
    #[error("etcd setup: {0}")]
    Setup(String),
    #[error("etcd lease {0:x} no longer exists")]
    LeaseLost(i64),
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 10.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

fn failure_list(failures: &[(String, String)]) -> String {
    failures
        .iter()
        .map(|(endpoint, why)| format!("{} ({why})", without_scheme(endpoint)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `http://10.0.0.1:2379` → `10.0.0.1:2379`.
pub(crate) fn without_scheme(endpoint: &str) -> &str {
    endpoint
        .split_once("://")
        .map_or(endpoint, |(_, rest)| rest)
}

/// Whether a failure says something about the member or the path to it
/// (down, restarting, unreachable, without a leader, overloaded), so the
/// same request may succeed on another member. Answers about the request
/// itself (not found, permission denied, compacted, invalid) are final.
pub fn is_transient(e: &ClientError) -> bool {
    use tonic::Code;
    match e {
        ClientError::TransportError(_) | ClientError::IoError(_) => true,
        // the stream broke under the watch or keep-alive
        ClientError::WatchError(_) | ClientError::LeaseKeepAliveError(_) => true,
        ClientError::GRpcStatus(s) => match s.code() {
            Code::Unavailable
            | Code::DeadlineExceeded
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Aborted => true,
            // hyper and h2 failures surface as Internal with a transport source
            Code::Internal => io_error(s).is_some() || s.message().contains("h2 protocol error"),
            _ => false,
        },
        _ => false,
    }
}

/// The first I/O error in an error's chain of sources.
fn io_error<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        cur = err.source();
    }
    None
}

/// An I/O error as a few words: `connection refused`, `timed out`, …
fn io_words(e: &std::io::Error) -> String {
    use std::io::ErrorKind as K;
    match e.kind() {
        K::ConnectionRefused => "connection refused".into(),
        K::ConnectionReset => "connection reset".into(),
        K::ConnectionAborted => "connection aborted".into(),
        K::TimedOut => "timed out".into(),
        K::HostUnreachable => "host unreachable".into(),
        K::NetworkUnreachable => "network unreachable".into(),
        K::BrokenPipe => "connection closed".into(),
        K::UnexpectedEof => "connection closed".into(),
        K::NotFound => "not found".into(),
        K::PermissionDenied => "permission denied".into(),
        _ => {
            // "Connection refused (os error 111)" → "connection refused"
            let text = e.to_string();
            let text = text.split(" (os error").next().unwrap_or(&text).to_string();
            lower_first(&text)
        }
    }
}

fn lower_first(s: &str) -> String {
    let mut c = s.chars();
    match c.next() {
        Some(f) => f.to_lowercase().chain(c).collect(),
        None => String::new(),
    }
}

/// A client error as one line of words, without the library's wrapping
/// (`grpc request error: code: …, source: tonic::transport::Error(…)`).
pub fn describe(e: &ClientError) -> String {
    use tonic::Code;
    match e {
        ClientError::IoError(io) => io_words(io),
        ClientError::TransportError(t) => match io_error(t) {
            Some(io) => io_words(io),
            None => lower_first(&t.to_string()),
        },
        ClientError::GRpcStatus(s) => {
            if let Some(io) = io_error(s) {
                return io_words(io);
            }
            let msg = s.message().trim();
            let msg = msg.strip_prefix("etcdserver: ").unwrap_or(msg);
            if s.code() == Code::Unavailable && (msg.is_empty() || msg.contains("tcp connect")) {
                return "unavailable (could not connect)".into();
            }
            // hyper's words for a connection that died under a request or stream
            if msg.starts_with("h2 protocol error") || msg.contains("error reading a body") {
                return "connection lost".into();
            }
            if !msg.is_empty() {
                return lower_first(msg);
            }
            match s.code() {
                Code::DeadlineExceeded => "timed out".into(),
                Code::Unavailable => "unavailable".into(),
                Code::PermissionDenied => "permission denied".into(),
                Code::Unauthenticated => "authentication failed".into(),
                code => lower_first(code.description()),
            }
        }
        ClientError::WatchError(m) => format!("watch stream: {m}"),
        ClientError::LeaseKeepAliveError(m) => format!("lease keep-alive stream: {m}"),
        ClientError::InvalidUri(u) => format!("invalid endpoint URL: {u}"),
        ClientError::InvalidArgs(m) => format!("invalid arguments: {m}"),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};
    use tonic::{Code, Status};

    fn status(code: Code, msg: &str) -> ClientError {
        ClientError::GRpcStatus(Status::new(code, msg))
    }

    #[test]
    fn member_failures_are_retried_elsewhere_and_answers_are_not() {
        for code in [
            Code::Unavailable,
            Code::DeadlineExceeded,
            Code::Cancelled,
            Code::Unknown,
            Code::ResourceExhausted,
            Code::Aborted,
        ] {
            assert!(is_transient(&status(code, "x")), "{code:?}");
        }
        for code in [
            Code::InvalidArgument,
            Code::NotFound,
            Code::AlreadyExists,
            Code::PermissionDenied,
            Code::Unauthenticated,
            Code::FailedPrecondition,
            Code::OutOfRange,
            Code::Unimplemented,
            Code::DataLoss,
            Code::Internal,
        ] {
            assert!(!is_transient(&status(code, "x")), "{code:?}");
        }
        let refused = IoError::from(ErrorKind::ConnectionRefused);
        assert!(is_transient(&ClientError::IoError(refused)));
        assert!(is_transient(&ClientError::GRpcStatus(Status::from_error(
            Box::new(IoError::from(ErrorKind::ConnectionReset))
        ))));
        assert!(is_transient(&status(
            Code::Internal,
            "h2 protocol error: connection reset"
        )));
        assert!(!is_transient(&ClientError::InvalidArgs("empty".into())));
    }

    #[test]
    fn failures_read_as_words_not_debug_dumps() {
        let connect = Status::from_error(Box::new(IoError::new(
            ErrorKind::ConnectionRefused,
            "Connection refused (os error 111)",
        )));
        assert_eq!(
            describe(&ClientError::GRpcStatus(connect)),
            "connection refused"
        );
        assert_eq!(
            describe(&ClientError::IoError(IoError::from(ErrorKind::TimedOut))),
            "timed out"
        );
        assert_eq!(
            describe(&status(Code::Unavailable, "etcdserver: no leader")),
            "no leader"
        );
        assert_eq!(
            describe(&status(
                Code::NotFound,
                "etcdserver: requested lease not found"
            )),
            "requested lease not found"
        );
        assert_eq!(
            describe(&status(Code::Unavailable, "tcp connect error")),
            "unavailable (could not connect)"
        );
        assert_eq!(
            describe(&status(Code::PermissionDenied, "")),
            "permission denied"
        );
        assert_eq!(
            describe(&status(
                Code::Unknown,
                "h2 protocol error: error reading a body from connection"
            )),
            "connection lost"
        );
        let odd = IoError::other("Weird failure (os error 5)");
        assert_eq!(describe(&ClientError::IoError(odd)), "weird failure");
        for e in [
            status(Code::Unavailable, "tcp connect error"),
            ClientError::IoError(IoError::from(ErrorKind::ConnectionRefused)),
        ] {
            let text = describe(&e);
            assert!(!text.contains("Status") && !text.contains('{'), "{text}");
        }
    }

    #[test]
    fn an_unreachable_cluster_names_every_endpoint_and_why() {
        let e = EtcdError::Unreachable {
            what: "reading /coreos.com/network/config".into(),
            elapsed: Duration::from_millis(5_040),
            failures: vec![
                ("http://127.0.0.1:4001".into(), "connection refused".into()),
                ("http://127.0.0.1:2379".into(), "timed out".into()),
            ],
        };
        assert_eq!(
            e.to_string(),
            "etcd: reading /coreos.com/network/config: no endpoint answered in 5.0 s: \
             127.0.0.1:4001 (connection refused), 127.0.0.1:2379 (timed out)"
        );
        assert_eq!(
            EtcdError::Refused {
                what: "renewing lease 1f".into(),
                reason: "requested lease not found".into()
            }
            .to_string(),
            "etcd: renewing lease 1f: requested lease not found"
        );
    }
}
