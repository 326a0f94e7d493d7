//! The operator's Prometheus metrics.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// The kind reconciled.
    pub kind: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Labels naming a kind.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    /// The kind.
    pub kind: String,
}

/// Labels of a failed reconcile.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    /// The kind reconciled.
    pub kind: String,
    /// What failed (`kube`, `kube_invalid`, `kube_forbidden`, `kube_conflict`, `invalid`,
    /// `serialize`, or the ledger's `call`, `transport`, `conflict`, …).
    pub error: String,
}

/// Labels of a chain write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LedgerLabels {
    /// The contract method.
    pub method: String,
    /// `ok` or `error`.
    pub result: String,
}

/// Everything the operator exports.
#[derive(Debug)]
pub struct Metrics {
    /// Reconciles by kind and result.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Failed reconciles by kind and error.
    pub errors: Family<ErrorLabels, Counter>,
    /// Reconcile durations by kind.
    pub durations: Family<KindLabels, Histogram>,
    /// 1 while this replica leads.
    pub leader: Gauge,
    /// Chain writes by method and result.
    pub ledger_writes: Family<LedgerLabels, Counter>,
    /// Chain writes sent and not yet confirmed.
    pub ledger_pending: Gauge,
    /// Gas used by the operator's mined chain writes.
    pub ledger_gas: Counter,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let reconciles = Family::<ReconcileLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let leader = Gauge::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let mut registry = Registry::with_prefix("modelcommons_operator");
        registry.register(
            "reconciles",
            "Reconciles by kind and result",
            reconciles.clone(),
        );
        registry.register(
            "reconcile_errors",
            "Failed reconciles by kind and error (permanent ones wait for the object to change)",
            errors.clone(),
        );
        registry.register(
            "reconcile_duration_seconds",
            "Reconcile durations by kind",
            durations.clone(),
        );
        registry.register("leader", "1 while this replica leads", leader.clone());
        let ledger_writes = Family::<LedgerLabels, Counter>::default();
        let ledger_pending = Gauge::default();
        registry.register(
            "ledger_writes",
            "Chain writes by method and result (a write found already done counts as ok)",
            ledger_writes.clone(),
        );
        registry.register(
            "ledger_pending_writes",
            "Chain writes sent and not yet confirmed",
            ledger_pending.clone(),
        );
        let ledger_gas = Counter::default();
        registry.register(
            "ledger_gas",
            "Gas used by the operator's mined chain writes",
            ledger_gas.clone(),
        );
        Self {
            reconciles,
            errors,
            durations,
            leader,
            ledger_writes,
            ledger_pending,
            ledger_gas,
            registry,
        }
    }
}

impl Metrics {
    /// Records one reconcile.
    pub fn observe(&self, kind: &str, ok: bool, seconds: f64) {
        self.reconciles
            .get_or_create(&ReconcileLabels {
                kind: kind.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
        self.durations
            .get_or_create(&KindLabels { kind: kind.into() })
            .observe(seconds);
    }

    /// Records one failed reconcile.
    pub fn reconcile_error(&self, kind: &str, error: &str) {
        self.errors
            .get_or_create(&ErrorLabels {
                kind: kind.into(),
                error: error.into(),
            })
            .inc();
    }

    /// Records one chain write.
    pub fn ledger_write(&self, method: &str, ok: bool) {
        self.ledger_writes
            .get_or_create(&LedgerLabels {
                method: method.into(),
                result: if ok { "ok" } else { "error" }.into(),
            })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
