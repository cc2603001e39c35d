//! What every weft component that talks to the Kubernetes API shares: a
//! client built from a kubeconfig and/or API URL (else the in-cluster
//! service account), errors turned into one line of words, and the
//! retry backoff of its watches, and one kind followed (listed, then
//! watched) in protobuf ([`follow`]). Used by the proxy's Kubernetes
//! source and the agent's `-kube-subnet-mgr` lease source.

pub mod follow;

use std::path::Path;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use kube::Client;

/// The names of the flags the connection comes from, for error messages:
/// `--kubeconfig`/`--master` for the proxy, `-kubeconfig-file`/
/// `-kube-api-url` for the agent.
#[derive(Debug, Clone, Copy)]
pub struct FlagNames {
    pub kubeconfig: &'static str,
    pub url: &'static str,
    /// What else could have been given instead (e.g. the etcd flags).
    pub alternative: &'static str,
}

/// How to reach the API server: `kubeconfig` (with `url` replacing its
/// server when both are given), or `url` alone, else the in-cluster
/// service account (`KUBERNETES_SERVICE_HOST`, the mounted token and CA).
pub async fn client(
    kubeconfig: Option<&Path>,
    url: Option<&str>,
    flags: FlagNames,
) -> Result<Client> {
    let parse_url = |u: &str| {
        u.parse()
            .with_context(|| format!("{} {u:?} is not a URL", flags.url))
    };
    let mut config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| anyhow!("{} {}: {}", flags.kubeconfig, path.display(), words(&e)))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| anyhow!("{} {}: {}", flags.kubeconfig, path.display(), words(&e)))?
        }
        None => match url {
            Some(u) => kube::Config::new(parse_url(u)?),
            None => kube::Config::incluster().map_err(|e| {
                anyhow!(
                    "no {}, {}{}, and not in a pod: {}",
                    flags.kubeconfig,
                    flags.url,
                    flags.alternative,
                    words(&e)
                )
            })?,
        },
    };
    if let (Some(u), Some(_)) = (url, kubeconfig) {
        config.cluster_url = parse_url(u)?;
    }
    Client::try_from(config).map_err(|e| anyhow!("Kubernetes client: {}", words(&e)))
}

/// An error and its causes on one line, in their own words.
/// The most of an API server's message that goes into one log line.
pub const MESSAGE_CHARS: usize = 512;

/// `text` cut to `max` characters (on a character boundary), with the
/// number of characters left out; line breaks become spaces.
pub fn clip(text: &str, max: usize) -> String {
    let text = text.trim();
    let mut out: String = text
        .chars()
        .take(max)
        .collect::<String>()
        .replace(['\n', '\r'], " ");
    let left = text.chars().count().saturating_sub(max);
    if left > 0 {
        out.push_str(&format!("… ({left} more characters)"));
    }
    out
}

pub fn words(e: &(dyn std::error::Error + 'static)) -> String {
    clip(&words_whole(e), MESSAGE_CHARS)
}

fn words_whole(e: &(dyn std::error::Error + 'static)) -> String {
    // the API server's own words, not the Status object's Debug form (a
    // kube-runtime watcher error wraps it, and its Display shows the Debug)
    let causes = || std::iter::successors(Some(e), |c| c.source());
    if let Some(message) = causes().find_map(api_message) {
        return message;
    }
    joined(causes())
}

/// The API server's message, when `e` is a Kubernetes API error.
fn api_message(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    match e.downcast_ref::<kube::Error>() {
        Some(kube::Error::Api(status)) => Some(status.message.replace('\n', " ")),
        _ => None,
    }
}

/// `causes` on one line, each text once, up to and including an API
/// error's message (its source is the same words again).
fn joined<'a>(causes: impl Iterator<Item = &'a (dyn std::error::Error + 'static)>) -> String {
    let mut out = String::new();
    for cause in causes {
        let api = api_message(cause);
        let is_api = api.is_some();
        let text = api.unwrap_or_else(|| cause.to_string());
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        if is_api {
            break;
        }
    }
    // a library's pointer to its manual is not the reader's business
    out.split(": ")
        .filter(|part| !part.starts_with("https://docs.rs/"))
        .collect::<Vec<_>>()
        .join(": ")
        .replace('\n', " ")
}

/// An error chain on one line, each context once, the API server's own
/// words where a Kubernetes API error is in it (its Display is the Status
/// object's Debug form): what a command prints when it fails.
pub fn chain_words(e: &anyhow::Error) -> String {
    joined(e.chain())
}

/// Whether `e` is the API server answering 404 Not Found.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Retries of a failed list or watch: 200 ms doubling to 5 s, ±25 %
/// jitter, back to 200 ms once a retry succeeds (the watcher resets it).
/// client-go's reflectors back off to 30 s; one API server's outage should
/// not cost a node 30 s of stale state after it returns.
#[derive(Clone, Copy)]
pub struct Retry {
    next: Duration,
    seed: u64,
}

impl Default for Retry {
    fn default() -> Self {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(7)
            | 1;
        Retry {
            next: Duration::from_millis(200),
            seed,
        }
    }
}

impl Iterator for Retry {
    type Item = Duration;
    fn next(&mut self) -> Option<Duration> {
        // xorshift: jitter without a random-number dependency
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let jitter = 0.75 + (self.seed % 1000) as f64 / 2000.0;
        let now = self.next.mul_f64(jitter);
        self.next = (self.next * 2).min(Duration::from_secs(5));
        Some(now)
    }
}

impl kube::runtime::utils::Backoff for Retry {
    fn reset(&mut self) {
        self.next = Duration::from_millis(200);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error that wraps another, as kube-runtime's watcher errors do.
    #[derive(Debug)]
    struct Wrapped(kube::Error);

    impl std::fmt::Display for Wrapped {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "listing failed: {:?}", self.0)
        }
    }

    impl std::error::Error for Wrapped {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn the_api_server_s_words_even_when_wrapped() {
        let status: kube::core::Status = serde_json::from_str(
            r#"{"code":403,"message":"nodes is forbidden: User \"x\" cannot list resource \"nodes\""}"#,
        )
        .expect("status");
        let e = Wrapped(kube::Error::Api(Box::new(status)));
        let text = words(&e);
        assert_eq!(
            text,
            r#"nodes is forbidden: User "x" cannot list resource "nodes""#
        );
    }

    #[test]
    fn a_failed_command_names_its_context_and_the_api_server_s_words() {
        let status: kube::core::Status =
            serde_json::from_str(r#"{"code":500,"message":"etcdserver: request timed out"}"#)
                .expect("status");
        let e = anyhow::Error::new(kube::Error::Api(Box::new(status)))
            .context("creating 10000 Services");
        assert_eq!(
            chain_words(&e),
            "creating 10000 Services: etcdserver: request timed out"
        );
        let plain = anyhow::anyhow!("no route").context("reaching the API server");
        assert_eq!(chain_words(&plain), "reaching the API server: no route");
    }

    #[test]
    fn a_long_message_is_cut_for_the_log() {
        let long = format!("{}\n{}", "x".repeat(600), "é".repeat(100));
        let status: kube::core::Status =
            serde_json::from_value(serde_json::json!({"code": 500, "message": long}))
                .expect("status");
        let text = words(&kube::Error::Api(Box::new(status)));
        assert!(text.starts_with(&"x".repeat(512)), "{text}");
        assert!(text.ends_with("… (189 more characters)"), "{text}");
        assert_eq!(clip("a\nb", 10), "a b");
        assert_eq!(clip("ééé", 2), "éé… (1 more characters)");
    }

    #[test]
    fn library_manual_links_are_left_out() {
        #[derive(Debug)]
        struct Eof;
        impl std::fmt::Display for Eof {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "peer closed connection without sending TLS close_notify: https://docs.rs/rustls/latest/rustls/manual/_03_howto/index.html#unexpected-eof")
            }
        }
        impl std::error::Error for Eof {}
        assert_eq!(
            words(&Eof),
            "peer closed connection without sending TLS close_notify"
        );
    }

    #[test]
    fn retries_double_to_five_seconds_with_jitter_and_reset() {
        use kube::runtime::utils::Backoff;
        let mut r = Retry::default();
        let first: Vec<Duration> = (0..8).filter_map(|_| r.next()).collect();
        assert!(first[0] >= Duration::from_millis(150) && first[0] <= Duration::from_millis(250));
        assert!(first[7] >= Duration::from_millis(3750) && first[7] <= Duration::from_millis(6250));
        r.reset();
        let again = r.next().unwrap_or_default();
        assert!(again <= Duration::from_millis(250), "{again:?}");
    }
}
