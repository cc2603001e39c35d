//! A handle on an etcd cluster that keeps working while members are down.
//!
//! etcd-client balances every request over all endpoints, dead ones
//! included, so with flanneld's default `-etcd-endpoints`
//! (`127.0.0.1:4001,127.0.0.1:2379`) half the requests of a host running
//! etcd on 2379 alone fail. Here each endpoint has a client of its own;
//! calls go to the member that answered last, and a call that fails for a
//! reason that concerns the member (see [`is_transient`]) moves on to the
//! next one at once, members known to be failing last. When every member
//! has failed, the call waits (100 ms doubling to 1 s, ±25 % jitter) and
//! tries them all again until its time budget is spent; then it fails with
//! every endpoint and its reason. A member is logged once when it starts
//! failing and once when it answers again.

use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use etcd_client::{Client, ConnectOptions};
use tokio::sync::OnceCell;
use tokio::time::{sleep, timeout, Instant};

use crate::error::{describe, is_transient, EtcdError};

/// How long one call keeps trying the members before it gives up.
pub const CALL_BUDGET: Duration = Duration::from_secs(5);
/// The longest one attempt on one member may take (large listings included).
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
const BACKOFF_FIRST: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(1);

struct Member {
    endpoint: String,
    /// Made on first use: with etcd authentication, making a client is
    /// itself a request, which a dead member must be able to fail.
    client: OnceCell<Client>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Health {
    /// The member calls go to first.
    current: usize,
    /// Members whose last attempt failed.
    failing: Vec<bool>,
}

impl Health {
    fn new(n: usize) -> Health {
        Health {
            current: 0,
            failing: vec![false; n],
        }
    }

    /// The order to try members in: the current one, then the others in
    /// ring order, those known to be failing last.
    pub(crate) fn order(&self) -> Vec<usize> {
        let n = self.failing.len();
        let ring = (0..n).map(|k| (self.current + k) % n);
        let (mut ok, bad): (Vec<usize>, Vec<usize>) =
            ring.partition(|&i| i == self.current || !self.failing[i]);
        ok.extend(bad);
        ok
    }

    /// Marks `i` failing; returns whether it was answering before and the
    /// member to try next.
    pub(crate) fn failed(&mut self, i: usize) -> (bool, usize) {
        let was_ok = !std::mem::replace(&mut self.failing[i], true);
        let next = self
            .order()
            .into_iter()
            .find(|&j| j != i && !self.failing[j])
            .unwrap_or((i + 1) % self.failing.len());
        if self.current == i {
            self.current = next;
        }
        (was_ok, next)
    }

    /// Marks `i` answering and makes it current; returns whether it was
    /// failing before.
    pub(crate) fn answered(&mut self, i: usize) -> bool {
        self.current = i;
        std::mem::replace(&mut self.failing[i], false)
    }
}

struct Shared {
    members: Vec<Member>,
    options: ConnectOptions,
    health: Mutex<Health>,
    budget: Duration,
}

/// An etcd cluster reached through any of its endpoints. Cheap to clone;
/// clones share the members' connections and health.
#[derive(Clone)]
pub struct Etcd {
    shared: Arc<Shared>,
}

/// `d` ± 25 %.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.75..1.25))
}

impl Etcd {
    /// A handle on `endpoints` (already checked), each reached with `options`.
    pub(crate) fn new(endpoints: Vec<String>, options: ConnectOptions) -> Etcd {
        let n = endpoints.len();
        Etcd {
            shared: Arc::new(Shared {
                members: endpoints
                    .into_iter()
                    .map(|endpoint| Member {
                        endpoint,
                        client: OnceCell::new(),
                    })
                    .collect(),
                options,
                health: Mutex::new(Health::new(n)),
                budget: CALL_BUDGET,
            }),
        }
    }

    /// The endpoints, as given.
    pub fn endpoints(&self) -> Vec<String> {
        self.shared
            .members
            .iter()
            .map(|m| m.endpoint.clone())
            .collect()
    }

    fn health(&self) -> std::sync::MutexGuard<'_, Health> {
        self.shared
            .health
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    async fn client(&self, i: usize) -> Result<Client, etcd_client::Error> {
        let m = &self.shared.members[i];
        m.client
            .get_or_try_init(|| {
                Client::connect([m.endpoint.as_str()], Some(self.shared.options.clone()))
            })
            .await
            .cloned()
    }

    /// Runs `op` on a member that answers (see the module's doc).
    pub async fn call<T, F, Fut>(&self, what: &str, op: F) -> Result<T, EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call_on(what, op).await.map(|(v, _)| v)
    }

    /// [`Etcd::call`], also returning which member answered (for streams
    /// that outlive the call: see [`Etcd::member_failed`]).
    pub async fn call_on<T, F, Fut>(&self, what: &str, mut op: F) -> Result<(T, usize), EtcdError>
    where
        F: FnMut(Client) -> Fut,
        Fut: Future<Output = Result<T, etcd_client::Error>>,
    {
        let start = Instant::now();
        // each member's last failure, in the order they were last tried
        let mut failures: Vec<(usize, String)> = Vec::new();
        let mut delay = BACKOFF_FIRST;
        loop {
            let order = self.health().order();
            for i in order {
                let attempt = async {
                    let client = self.client(i).await?;
                    op(client).await
                };
                let reason = match timeout(ATTEMPT_TIMEOUT, attempt).await {
                    Ok(Ok(v)) => {
                        self.answered(i);
                        return Ok((v, i));
                    }
                    Ok(Err(e)) if is_transient(&e) => describe(&e),
                    Ok(Err(e)) => {
                        // an answer, if not the one hoped for: the member is fine
                        self.answered(i);
                        return Err(EtcdError::Refused {
                            what: what.to_string(),
                            reason: describe(&e),
                        });
                    }
                    Err(_) => "timed out".to_string(),
                };
                self.member_failed(i, &reason);
                failures.retain(|(j, _)| *j != i);
                failures.push((i, reason));
            }
            let elapsed = start.elapsed();
            if elapsed >= self.shared.budget {
                let failures = failures
                    .into_iter()
                    .map(|(i, why)| (self.shared.members[i].endpoint.clone(), why))
                    .collect();
                return Err(EtcdError::Unreachable {
                    what: what.to_string(),
                    elapsed,
                    failures,
                });
            }
            sleep(jitter(delay).min(self.shared.budget - elapsed)).await;
            delay = (delay * 2).min(BACKOFF_MAX);
        }
    }

    fn answered(&self, i: usize) {
        if self.health().answered(i) {
            tracing::info!("etcd {}: answering again", self.shared.members[i].endpoint);
        }
    }

    /// Records that member `i` failed (a call, or a stream opened on it
    /// with [`Etcd::call_on`]): later calls go elsewhere first. Logged
    /// when the member was answering until now.
    pub fn member_failed(&self, i: usize, reason: &str) {
        let (was_ok, next) = self.health().failed(i);
        let members = &self.shared.members;
        if !was_ok {
            tracing::debug!("etcd {}: {reason}", members[i].endpoint);
        } else if members.len() == 1 {
            tracing::warn!("etcd {}: {reason} (retrying)", members[i].endpoint);
        } else {
            tracing::warn!(
                "etcd {}: {reason} (trying {})",
                members[i].endpoint,
                members[next].endpoint
            );
        }
    }

    /// A stream opened on member `i` broke for `why`: the member is
    /// recorded failing ([`Etcd::member_failed`]) and the reason comes back
    /// naming it, for the caller's log.
    pub fn stream_broken(&self, i: usize, why: &str) -> String {
        self.member_failed(i, why);
        format!("{why} (on {})", self.endpoint(i))
    }

    /// The endpoint of member `i`.
    pub fn endpoint(&self, i: usize) -> &str {
        &self.shared.members[i].endpoint
    }
}

#[cfg(test)]
mod tests {
    use super::Health;

    #[test]
    fn calls_start_at_the_member_that_answered_last_and_try_failing_ones_last() {
        let mut h = Health::new(3);
        assert_eq!(h.order(), [0, 1, 2]);
        // the first endpoint is dead: the next healthy one takes over
        assert_eq!(h.failed(0), (true, 1));
        assert_eq!(h.order(), [1, 2, 0]);
        // a second failure of a member already failing is not news
        assert_eq!(h.failed(0), (false, 1));
        // member 1 dies too: 2 is next, the dead ones after it
        assert_eq!(h.failed(1), (true, 2));
        assert_eq!(h.order(), [2, 0, 1]);
        // all dead: the ring goes on from the current member
        assert_eq!(h.failed(2), (true, 0));
        assert_eq!(h.order(), [0, 1, 2]);
        // 1 answers again: it becomes current, the failing ones follow
        assert!(h.answered(1));
        assert_eq!(h.order(), [1, 2, 0]);
        assert!(!h.answered(1));
    }

    #[test]
    fn a_failure_of_a_member_that_is_not_current_keeps_the_current_one() {
        let mut h = Health::new(3);
        h.answered(2);
        // a watch opened earlier on member 0 broke
        assert_eq!(h.failed(0), (true, 2));
        assert_eq!(h.order(), [2, 1, 0]);
    }

    #[test]
    fn one_endpoint_is_retried_on_itself() {
        let mut h = Health::new(1);
        assert_eq!(h.failed(0), (true, 0));
        assert_eq!(h.order(), [0]);
    }
}
