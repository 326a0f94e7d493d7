//! The one reconcile wrapper and the one error policy of every controller.
//!
//! [`instrumented`] times and counts each reconcile by kind and result and forgets an
//! object's failures once it reconciles. [`error_policy`] tells permanent errors (the object
//! or the operator's configuration must change first: retrying cannot help) from transient
//! ones (the API server, the chain): a permanent error waits for the next change to the object
//! or its children and says why in a `ReconcileFailed` event; a transient one is retried with
//! exponential backoff, 5 s doubling to 5 min. Every failure is counted by kind and by
//! [`crate::controller::Error::metric_label`].

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::Resource;
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;

use crate::controller::{Context, Error};

/// The first retry of a transient error.
pub const BACKOFF_MIN: Duration = Duration::from_secs(5);
/// The longest wait between retries of a transient error.
pub const BACKOFF_MAX: Duration = Duration::from_secs(300);
/// The event reason of a reconcile that failed for good (until the object changes).
pub const RECONCILE_FAILED: &str = "ReconcileFailed";

/// Consecutive failures per object (`namespace/name` of a kind), reset by a success.
#[derive(Debug, Default)]
pub struct Failures(Mutex<HashMap<(&'static str, String), u32>>);

impl Failures {
    fn bump(&self, key: (&'static str, String)) -> u32 {
        let mut m = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let n = m.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        *n
    }

    fn clear(&self, key: &(&'static str, String)) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).remove(key);
    }
}

/// The wait before retry `n` (1-based) of a transient error: 5 s, 10 s, 20 s … 5 min.
pub fn backoff(n: u32) -> Duration {
    let doublings = n.saturating_sub(1).min(16);
    BACKOFF_MIN
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_MAX)
}

fn key<K: Resource<DynamicType = ()>>(obj: &K) -> (&'static str, String) {
    let meta = obj.meta();
    (
        kind_of::<K>(),
        format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        ),
    )
}

/// The kind's name as a `'static` label (the kinds are few and fixed).
fn kind_of<K: Resource<DynamicType = ()>>() -> &'static str {
    match K::kind(&()).as_ref() {
        "ModelProposal" => "ModelProposal",
        "Datanet" => "Datanet",
        "FineTuneJob" => "FineTuneJob",
        "RLHFRound" => "RLHFRound",
        "ModelDeployment" => "ModelDeployment",
        _ => "other",
    }
}

/// Runs one reconcile of `obj`: timed and counted by kind and result; a success forgets the
/// object's earlier failures (its next error starts the backoff again at 5 s).
pub async fn instrumented<K, F>(ctx: &Context, obj: &K, reconcile: F) -> Result<Action, Error>
where
    K: Resource<DynamicType = ()>,
    F: Future<Output = Result<Action, Error>>,
{
    let started = Instant::now();
    let res = reconcile.await;
    let kind = kind_of::<K>();
    ctx.metrics
        .observe(kind, res.is_ok(), started.elapsed().as_secs_f64());
    if res.is_ok() {
        ctx.failures.clear(&key(obj));
    }
    res
}

/// The error policy of every controller (see the module docs).
pub fn error_policy<K, C>(obj: Arc<K>, err: &Error, ctx: Arc<C>) -> Action
where
    K: Resource<DynamicType = ()>,
    C: AsRef<Context>,
{
    let ctx = (*ctx).as_ref();
    let k = key(&*obj);
    ctx.metrics.reconcile_error(k.0, err.metric_label());
    if err.is_permanent() {
        tracing::warn!(kind = k.0, object = %k.1, error = %err, "reconcile failed; waiting for the object to change");
        ctx.event(
            &*obj,
            EventType::Warning,
            RECONCILE_FAILED,
            format!("{err}; nothing is retried until the object changes"),
        );
        ctx.failures.clear(&k);
        return Action::await_change();
    }
    let n = ctx.failures.bump(k.clone());
    let wait = backoff(n);
    tracing::warn!(kind = k.0, object = %k.1, error = %err, attempt = n, retry_in = ?wait, "reconcile failed");
    Action::requeue(wait)
}

impl AsRef<Context> for Context {
    fn as_ref(&self) -> &Context {
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transient_errors_back_off_exponentially_to_five_minutes() {
        let waits: Vec<u64> = (1..=8).map(|n| backoff(n).as_secs()).collect();
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff(u32::MAX), BACKOFF_MAX);
    }

    #[test]
    fn failures_count_per_object_and_reset() {
        let f = Failures::default();
        let a = ("Datanet", "ns/a".to_string());
        assert_eq!(f.bump(a.clone()), 1);
        assert_eq!(f.bump(a.clone()), 2);
        assert_eq!(f.bump(("Datanet", "ns/b".into())), 1);
        f.clear(&a);
        assert_eq!(f.bump(a), 1);
    }

    #[test]
    fn permanent_errors_are_the_ones_retrying_cannot_fix() {
        let api = |code: u16| {
            Error::Kube(kube::Error::Api(
                kube::core::Status::failure("x", "Invalid")
                    .with_code(code)
                    .boxed(),
            ))
        };
        assert!(Error::Invalid("no namespace".into()).is_permanent());
        assert!(api(422).is_permanent(), "an object the API server refuses");
        assert!(api(400).is_permanent());
        assert!(!api(403).is_permanent(), "a missing grant can be given");
        assert!(!api(409).is_permanent(), "a conflict clears on a re-read");
        assert!(!api(500).is_permanent());
        assert!(!api(429).is_permanent());
        assert_eq!(api(422).metric_label(), "kube_invalid");
        assert_eq!(api(503).metric_label(), "kube");
    }
}
