//! Kubernetes Leases (coordination.k8s.io/v1), one per policy, by which the
//! replicas of `dr serve` share the policies: the holder of `dr-<policy>`
//! runs that policy's work. The algorithm is client-go's leader election
//! (k8s.io/client-go/tools/leaderelection, `tryAcquireOrRenew`): renew your
//! own record; take a record that is released or has not changed for its
//! `leaseDurationSeconds` as observed on *this* replica's clock (so clock
//! skew between nodes does not matter); every write is a replace with the
//! read resourceVersion, so two replicas racing for the same Lease cannot
//! both win. `leaseTransitions` counts holder changes: it is the term the
//! catalog fences writes with (`catalog::leaders`).
//!
//! Why not the kube-lease-manager crate: its `watch()` reports only
//! changes of the lock it observed; when renewals fail (the API server
//! unreachable) it logs and retries, and the holder is never told that its
//! lease ran out, so a partitioned replica would go on working while
//! another takes over. Here the caller knows when each renewal succeeded
//! and stops by its own deadline.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::time::Instant;

/// A failure to read or write a Lease.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("Lease {name} in namespace {namespace}: {source}")]
    Api {
        name: String,
        namespace: String,
        source: kube::Error,
    },
}

/// What a replica should do about a Lease it has just read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// No Lease yet: create it, held by us.
    Create,
    /// Ours: renew it.
    Renew,
    /// Released, or its holder let it run out: take it (a new term).
    TakeOver,
    /// Another replica holds it.
    Wait,
}

/// The decision (pure): `unchanged_for` is how long this replica has seen
/// the record unchanged.
pub fn decide(spec: Option<&LeaseSpec>, me: &str, unchanged_for: Duration, ours: Duration) -> Step {
    let Some(spec) = spec else {
        return Step::Create;
    };
    match spec.holder_identity.as_deref().filter(|h| !h.is_empty()) {
        Some(h) if h == me => Step::Renew,
        None => Step::TakeOver,
        Some(_) => {
            let theirs = spec
                .lease_duration_seconds
                .and_then(|s| u64::try_from(s).ok())
                .map_or(ours, Duration::from_secs);
            if unchanged_for >= theirs {
                Step::TakeOver
            } else {
                Step::Wait
            }
        }
    }
}

/// One policy's Lease, as one replica sees it.
pub struct Elector {
    api: Api<Lease>,
    name: String,
    namespace: String,
    identity: String,
    duration: Duration,
    /// The resourceVersion last read, and when this replica first saw it.
    seen: Option<(String, Instant)>,
}

/// What one attempt found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// This replica holds the Lease, in this term.
    Held { term: i64 },
    /// Another replica holds it (`None`: it is being taken over meanwhile).
    Other { holder: Option<String> },
}

impl Elector {
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: String,
        identity: String,
        duration: Duration,
    ) -> Elector {
        Elector {
            api: Api::namespaced(client, namespace),
            name,
            namespace: namespace.to_owned(),
            identity,
            duration,
            seen: None,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    fn err(&self, source: kube::Error) -> LeaseError {
        LeaseError::Api {
            name: self.name.clone(),
            namespace: self.namespace.clone(),
            source,
        }
    }

    /// Reads the Lease and acquires or renews it if this replica may. The
    /// term held is at least `floor` (the Lease is moved up to it): a
    /// Lease deleted and created again starts counting at 0, while the
    /// catalog remembers the terms already used.
    pub async fn attempt(&mut self, floor: i64) -> Result<Attempt, LeaseError> {
        let current = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?;
        let now = Instant::now();
        let version = current
            .as_ref()
            .and_then(|l| l.metadata.resource_version.clone())
            .unwrap_or_default();
        let since = match &self.seen {
            Some((v, at)) if *v == version => *at,
            _ => now,
        };
        self.seen = Some((version, since));
        let spec = current.as_ref().and_then(|l| l.spec.as_ref());
        let step = decide(spec, &self.identity, now - since, self.duration);
        let term = i64::from(spec.and_then(|s| s.lease_transitions).unwrap_or(0));
        let result = match (step, current) {
            (Step::Create, _) => {
                let l = self.lease(None, floor.max(0));
                self.api.create(&PostParams::default(), &l).await
            }
            (Step::Renew, Some(l)) => self.write(l, term.max(floor)).await,
            (Step::TakeOver, Some(l)) => self.write(l, (term + 1).max(floor)).await,
            (_, current) => {
                let holder = current.and_then(|l| l.spec).and_then(|s| s.holder_identity);
                return Ok(Attempt::Other { holder });
            }
        };
        match result {
            Ok(l) => Ok(Attempt::Held {
                term: i64::from(l.spec.and_then(|s| s.lease_transitions).unwrap_or(0)),
            }),
            // Another replica wrote first (409 on replace, or on create).
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(Attempt::Other { holder: None }),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Gives the Lease up if this replica holds it, so that another takes
    /// it at once instead of after its duration.
    pub async fn release(&mut self) -> Result<(), LeaseError> {
        let Some(mut l) = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.err(e))?
        else {
            return Ok(());
        };
        let Some(spec) = l.spec.as_mut() else {
            return Ok(());
        };
        if spec.holder_identity.as_deref() != Some(self.identity.as_str()) {
            return Ok(());
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(MicroTime(k8s_openapi::jiff::Timestamp::now()));
        self.api
            .replace(&self.name, &PostParams::default(), &l)
            .await
            .map_err(|e| self.err(e))?;
        Ok(())
    }

    /// Replaces `current` (its resourceVersion kept) with this replica as
    /// the holder in `term`.
    async fn write(&self, current: Lease, term: i64) -> Result<Lease, kube::Error> {
        let acquired = current
            .spec
            .as_ref()
            .filter(|s| s.holder_identity.as_deref() == Some(self.identity.as_str()))
            .and_then(|s| s.acquire_time.clone());
        let mut next = self.lease(acquired, term);
        next.metadata.resource_version = current.metadata.resource_version;
        self.api
            .replace(&self.name, &PostParams::default(), &next)
            .await
    }

    fn lease(&self, acquired: Option<MicroTime>, term: i64) -> Lease {
        let now = MicroTime(k8s_openapi::jiff::Timestamp::now());
        let secs = i32::try_from(self.duration.as_secs().max(1)).unwrap_or(i32::MAX);
        Lease {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(BTreeMap::from([(
                    "app.kubernetes.io/name".to_owned(),
                    "dr".to_owned(),
                )])),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(self.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(acquired.unwrap_or_else(|| now.clone())),
                renew_time: Some(now),
                lease_transitions: Some(i32::try_from(term).unwrap_or(i32::MAX)),
                ..Default::default()
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: Duration = Duration::from_secs(15);

    fn held(by: Option<&str>, secs: Option<i32>) -> LeaseSpec {
        LeaseSpec {
            holder_identity: by.map(str::to_owned),
            lease_duration_seconds: secs,
            ..Default::default()
        }
    }

    #[test]
    fn a_replica_creates_renews_waits_and_takes_over() {
        let s = Duration::from_secs;
        assert_eq!(decide(None, "a", s(0), D), Step::Create);
        assert_eq!(
            decide(Some(&held(Some("a"), Some(15))), "a", s(99), D),
            Step::Renew
        );
        assert_eq!(
            decide(Some(&held(Some("b"), Some(15))), "a", s(14), D),
            Step::Wait
        );
        assert_eq!(
            decide(Some(&held(Some("b"), Some(15))), "a", s(15), D),
            Step::TakeOver
        );
        // The holder's own duration counts, not ours.
        assert_eq!(
            decide(Some(&held(Some("b"), Some(60))), "a", s(30), D),
            Step::Wait
        );
        assert_eq!(
            decide(Some(&held(Some("b"), None)), "a", s(15), D),
            Step::TakeOver
        );
        // Released (no holder, or an empty one): taken at once.
        assert_eq!(
            decide(Some(&held(None, Some(1))), "a", s(0), D),
            Step::TakeOver
        );
        assert_eq!(
            decide(Some(&held(Some(""), Some(1))), "a", s(0), D),
            Step::TakeOver
        );
        // A negative duration is read as ours.
        assert_eq!(
            decide(Some(&held(Some("b"), Some(-5))), "a", s(14), D),
            Step::Wait
        );
    }
}
