//! Leader election between `berth run` replicas with a `coordination.k8s.io/v1` Lease in
//! berth's namespace: only the holder syncs, launches and cleans up. [`decide`] is the rule
//! (pure); [`Elector`] applies it with optimistic concurrency (resourceVersion).

use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::Client;
use kube::api::{Api, PostParams};
use tracing::{debug, info, warn};

use crate::cluster::Fence;
use crate::vocab::LEASE_NAME;

/// What to do with the Lease as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// We hold it: renew.
    Renew,
    /// Nobody holds it, or the holder let it expire: take it.
    Acquire,
    /// Someone else holds a live lease.
    Wait,
}

/// The rule: renew our own lease; take a free or expired one; otherwise wait.
pub(crate) fn decide(spec: Option<&LeaseSpec>, me: &str, now: Timestamp) -> Decision {
    let Some(spec) = spec else {
        return Decision::Acquire;
    };
    match spec.holder_identity.as_deref() {
        Some(h) if h == me => Decision::Renew,
        None | Some("") => Decision::Acquire,
        Some(_) => {
            let renewed = spec
                .renew_time
                .as_ref()
                .or(spec.acquire_time.as_ref())
                .map(|t| t.0);
            let duration =
                SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
            match renewed {
                Some(at) if now.duration_since(at) <= duration => Decision::Wait,
                _ => Decision::Acquire,
            }
        }
    }
}

/// Holds or waits for the Lease.
pub(crate) struct Elector {
    api: Api<Lease>,
    identity: String,
    duration: Duration,
    /// When we last renewed successfully; `None` while not leading.
    renewed: Option<Instant>,
    /// The writes of this replica's working client: open only while the lease is held.
    fence: Arc<Fence>,
}

impl Elector {
    /// An elector using `client`, which must not pass through `fence` (it writes the Lease
    /// while the fence is closed).
    pub(crate) fn new(
        client: &Client,
        namespace: &str,
        identity: String,
        duration: Duration,
        fence: Arc<Fence>,
    ) -> Self {
        Self {
            api: Api::namespaced(client.clone(), namespace),
            identity,
            duration,
            renewed: None,
            fence,
        }
    }

    /// How often [`Elector::step`] should run.
    pub(crate) fn period(&self) -> Duration {
        self.duration / 3
    }

    /// Work must stop once this long has passed since the last renewal: well before the lease
    /// expires for the other replicas.
    fn renew_deadline(&self) -> Duration {
        self.duration * 2 / 3
    }

    pub(crate) fn identity(&self) -> &str {
        &self.identity
    }

    /// Acquires or renews, and opens or closes the fence to match. Returns whether this
    /// replica may work now.
    pub(crate) async fn step(&mut self) -> bool {
        let lead = self.hold().await;
        match self.renewed.filter(|_| lead) {
            Some(at) => self.fence.hold_until(at + self.renew_deadline()),
            None => self.fence.close(),
        }
        lead
    }

    async fn hold(&mut self) -> bool {
        // the lease counts from before the request, so the fence never outlasts it
        let asked = Instant::now();
        match self.try_hold().await {
            Ok(true) => {
                if self.renewed.is_none() {
                    info!(identity = %self.identity, "acquired the lease; leading");
                }
                self.renewed = Some(asked);
                true
            }
            Ok(false) => {
                if self.renewed.take().is_some() {
                    warn!(identity = %self.identity, "another replica holds the lease; stopping work");
                }
                false
            }
            Err(e) => {
                let Some(at) = self.renewed else {
                    debug!(error = %e, "lease not reachable");
                    return false;
                };
                if at.elapsed() < self.renew_deadline() {
                    warn!(error = %e, "lease renewal failed; retrying");
                    true
                } else {
                    warn!(error = %e, "lease not renewed in time; stopping work");
                    self.renewed = None;
                    false
                }
            }
        }
    }

    async fn try_hold(&self) -> Result<bool, kube::Error> {
        let now = Timestamp::now();
        let current = self.api.get_opt(LEASE_NAME).await?;
        let decision = decide(
            current.as_ref().and_then(|l| l.spec.as_ref()),
            &self.identity,
            now,
        );
        if decision == Decision::Wait {
            return Ok(false);
        }
        let seconds = i32::try_from(self.duration.as_secs()).unwrap_or(i32::MAX);
        let Some(mut lease) = current else {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(LEASE_NAME.to_owned()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(self.identity.clone()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(MicroTime(now)),
                    renew_time: Some(MicroTime(now)),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            return match self.api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(true),
                Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
                Err(e) => Err(e),
            };
        };
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        if decision == Decision::Acquire {
            spec.holder_identity = Some(self.identity.clone());
            spec.acquire_time = Some(MicroTime(now));
            spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        }
        spec.lease_duration_seconds = Some(seconds);
        spec.renew_time = Some(MicroTime(now));
        // replace carries the resourceVersion we read: a concurrent writer makes this 409
        match self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Gives the lease up on shutdown so a standby takes over at its next step.
    pub(crate) async fn release(&mut self) {
        self.fence.close();
        if self.renewed.take().is_none() {
            return;
        }
        let Ok(Some(mut lease)) = self.api.get_opt(LEASE_NAME).await else {
            return;
        };
        let Some(spec) = lease.spec.as_mut() else {
            return;
        };
        if spec.holder_identity.as_deref() != Some(&self.identity) {
            return;
        }
        spec.holder_identity = None;
        if let Err(e) = self
            .api
            .replace(LEASE_NAME, &PostParams::default(), &lease)
            .await
        {
            warn!(error = %e, "failed to release the lease");
        } else {
            info!("released the lease");
        }
    }
}

/// This replica's identity: the pod name when set, else host name and process id.
pub(crate) fn identity() -> String {
    std::env::var("POD_NAME")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| {
            let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
            format!("{}-{}", host.trim(), std::process::id())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(holder: Option<&str>, renewed_secs_ago: i64, now: Timestamp) -> LeaseSpec {
        LeaseSpec {
            holder_identity: holder.map(str::to_owned),
            lease_duration_seconds: Some(15),
            renew_time: Some(MicroTime(now - SignedDuration::from_secs(renewed_secs_ago))),
            ..LeaseSpec::default()
        }
    }

    #[test]
    fn leases_are_renewed_taken_when_free_or_expired_and_respected_otherwise() {
        let now = Timestamp::now();
        assert_eq!(decide(None, "a", now), Decision::Acquire);
        assert_eq!(
            decide(Some(&spec(Some("a"), 3, now)), "a", now),
            Decision::Renew
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 3, now)), "a", now),
            Decision::Wait
        );
        assert_eq!(
            decide(Some(&spec(Some("b"), 16, now)), "a", now),
            Decision::Acquire
        );
        assert_eq!(
            decide(Some(&spec(None, 1, now)), "a", now),
            Decision::Acquire
        );
    }
}
