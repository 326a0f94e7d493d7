//! Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection: take
//! the lease when it is free or expired, renew it every `renew` interval, and stop leading
//! (the process exits, as controller-runtime's managers do) when a renewal cannot be made
//! before it would expire. Writes are conditional on the resourceVersion read, so two
//! candidates can never both believe they lead.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};

/// Lease settings.
#[derive(Debug, Clone)]
pub struct LeaseConfig {
    /// The Lease's namespace and name.
    pub namespace: String,
    pub name: String,
    /// This candidate's identity (the pod name).
    pub identity: String,
    /// How long a lease is valid without renewal.
    pub duration: Duration,
    /// How often the leader renews (well below `duration`).
    pub renew: Duration,
    /// How often a follower retries.
    pub retry: Duration,
}

/// The outcome of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// We hold the lease.
    Leading,
    /// Someone else holds a live lease.
    Following { holder: String },
}

fn micro_now() -> MicroTime {
    MicroTime(Timestamp::now())
}

/// Tries once to acquire or renew.
pub async fn try_acquire(api: &Api<Lease>, cfg: &LeaseConfig) -> Result<Attempt, kube::Error> {
    let secs = i32::try_from(cfg.duration.as_secs()).unwrap_or(i32::MAX);
    match api.get_opt(&cfg.name).await? {
        None => {
            let lease: Lease = serde_json::from_value(serde_json::json!({
                "metadata": {"name": cfg.name, "namespace": cfg.namespace},
                "spec": {"holderIdentity": cfg.identity, "leaseDurationSeconds": secs,
                         "acquireTime": micro_now(), "renewTime": micro_now(), "leaseTransitions": 0}
            }))
            .map_err(kube::Error::SerdeError)?;
            match api.create(&PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following {
                    holder: "another candidate (just created)".into(),
                }),
                Err(e) => Err(e),
            }
        }
        Some(mut lease) => {
            let spec = lease.spec.clone().unwrap_or_default();
            let holder = spec.holder_identity.clone().unwrap_or_default();
            let expired = spec.renew_time.as_ref().is_none_or(|t| {
                let dur = i64::from(spec.lease_duration_seconds.unwrap_or(secs));
                Timestamp::now().as_second() > t.0.as_second() + dur
            });
            if holder != cfg.identity && !holder.is_empty() && !expired {
                return Ok(Attempt::Following { holder });
            }
            let mut s = spec;
            if holder != cfg.identity {
                s.acquire_time = Some(micro_now());
                s.lease_transitions = Some(s.lease_transitions.unwrap_or(0) + 1);
            }
            s.holder_identity = Some(cfg.identity.clone());
            s.lease_duration_seconds = Some(secs);
            s.renew_time = Some(micro_now());
            lease.spec = Some(s);
            // replace() carries the resourceVersion we read: a concurrent writer makes it 409.
            match api.replace(&cfg.name, &PostParams::default(), &lease).await {
                Ok(_) => Ok(Attempt::Leading),
                Err(kube::Error::Api(e)) if e.code == 409 => Ok(Attempt::Following { holder }),
                Err(e) => Err(e),
            }
        }
    }
}

/// Waits until this candidate leads.
pub async fn acquire(api: &Api<Lease>, cfg: &LeaseConfig) {
    let mut last_holder = String::new();
    loop {
        match try_acquire(api, cfg).await {
            Ok(Attempt::Leading) => {
                tracing::info!(lease = %cfg.name, identity = %cfg.identity, "became the leader");
                return;
            }
            Ok(Attempt::Following { holder }) => {
                if holder != last_holder {
                    tracing::info!(lease = %cfg.name, %holder, "following; another replica leads");
                    last_holder = holder;
                }
            }
            Err(e) => tracing::warn!(error = %e, "leader election: reading the lease failed"),
        }
        tokio::time::sleep(cfg.retry).await;
    }
}

/// Renews the lease until a renewal fails for longer than the lease lasts; then returns
/// (the caller stops leading).
pub async fn keep(api: &Api<Lease>, cfg: &LeaseConfig) {
    let mut last_ok = std::time::Instant::now();
    loop {
        tokio::time::sleep(cfg.renew).await;
        match try_acquire(api, cfg).await {
            Ok(Attempt::Leading) => last_ok = std::time::Instant::now(),
            Ok(Attempt::Following { holder }) => {
                tracing::error!(%holder, "lost the lease to another replica");
                return;
            }
            Err(e) => {
                tracing::warn!(error = %e, "renewing the lease failed");
                if last_ok.elapsed() >= cfg.duration {
                    tracing::error!("could not renew the lease in time; stepping down");
                    return;
                }
            }
        }
    }
}
