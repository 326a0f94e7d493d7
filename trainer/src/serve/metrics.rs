//! `/metrics` (OpenMetrics text from `prometheus-client`) and the per-consumer usage ledger
//! behind `GET /v1/usage`.
//!
//! Metrics (prefix `modelcommons_serve_`):
//!
//! | name | type | labels |
//! | --- | --- | --- |
//! | `http_requests_total` | counter | `consumer`, `route`, `code` |
//! | `http_request_duration_seconds` | histogram (until the last byte of the body, streams included) | `route` |
//! | `http_requests_in_flight` | gauge | |
//! | `generations_total` | counter: generations started | `consumer` |
//! | `prompt_tokens_total` | counter | `consumer` |
//! | `completion_tokens_total` | counter | `consumer` |
//! | `rate_limited_total` | counter | `consumer`, `limit` (`requests`/`tokens`) |
//! | `time_to_first_token_seconds` | histogram (from the request's arrival) | |
//! | `active_generations` / `queued_generations` | gauge | |
//! | `model_ready` | gauge (1 once the model is loaded) | |
//!
//! `consumer` is the API key's file name, `public` without `--api-keys`, and
//! `unauthenticated` for refused credentials.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Serialize;

/// `consumer`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConsumerLabels {
    /// The consumer.
    pub consumer: String,
}

/// `consumer`, `route`, `code`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    /// The consumer.
    pub consumer: String,
    /// The route (a fixed set: unknown paths are `other`).
    pub route: &'static str,
    /// The HTTP status.
    pub code: u16,
}

/// `route`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    /// The route.
    pub route: &'static str,
}

/// `consumer`, `limit`.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LimitLabels {
    /// The consumer.
    pub consumer: String,
    /// `requests` or `tokens`.
    pub limit: &'static str,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 5 ms … ~80 s.
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

/// Token and request counts of one consumer since the server started.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
pub struct ConsumerUsage {
    /// Generations started (requests that reached the model).
    pub requests: u64,
    /// Prompt tokens.
    pub prompt_tokens: u64,
    /// Generated tokens.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

/// Every metric, and the usage ledger.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// API requests by consumer, route and status.
    pub http_requests: Family<HttpLabels, Counter>,
    /// Request latency by route.
    pub http_duration: HistogramFamily<RouteLabels>,
    /// Requests being answered.
    pub in_flight: Gauge,
    generations: Family<ConsumerLabels, Counter>,
    prompt_tokens: Family<ConsumerLabels, Counter>,
    completion_tokens: Family<ConsumerLabels, Counter>,
    /// Refusals by the rate limiter.
    pub rate_limited: Family<LimitLabels, Counter>,
    /// Time to first token.
    pub ttft: Histogram,
    /// Generations being decoded.
    pub active_generations: Gauge,
    /// Generations waiting for a slot.
    pub queued_generations: Gauge,
    /// 1 once the model is loaded.
    pub model_ready: Gauge,
    usage: Mutex<BTreeMap<String, ConsumerUsage>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("modelcommons_serve");
        let m = Self {
            http_requests: Family::default(),
            http_duration: Family::new_with_constructor(latency_histogram),
            in_flight: Gauge::default(),
            generations: Family::default(),
            prompt_tokens: Family::default(),
            completion_tokens: Family::default(),
            rate_limited: Family::default(),
            ttft: latency_histogram(),
            active_generations: Gauge::default(),
            queued_generations: Gauge::default(),
            model_ready: Gauge::default(),
            usage: Mutex::new(BTreeMap::new()),
            registry: Registry::default(),
        };
        registry.register(
            "http_requests",
            "API requests by consumer, route and status",
            m.http_requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to the last byte of its response (streams included)",
            m.http_duration.clone(),
        );
        registry.register(
            "http_requests_in_flight",
            "Requests being answered",
            m.in_flight.clone(),
        );
        registry.register(
            "generations",
            "Generations started, by consumer",
            m.generations.clone(),
        );
        registry.register(
            "prompt_tokens",
            "Prompt tokens processed, by consumer",
            m.prompt_tokens.clone(),
        );
        registry.register(
            "completion_tokens",
            "Tokens generated, by consumer",
            m.completion_tokens.clone(),
        );
        registry.register(
            "rate_limited",
            "Requests refused by a rate limit, by consumer and limit",
            m.rate_limited.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time from a request's arrival to its first generated token",
            m.ttft.clone(),
        );
        registry.register(
            "active_generations",
            "Generations being decoded",
            m.active_generations.clone(),
        );
        registry.register(
            "queued_generations",
            "Generations waiting for a decode slot",
            m.queued_generations.clone(),
        );
        registry.register(
            "model_ready",
            "1 once the model is loaded",
            m.model_ready.clone(),
        );
        Self { registry, ..m }
    }

    /// The OpenMetrics text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!("encoding metrics: {e}");
        }
        out
    }

    fn with_usage(&self, consumer: &str, f: impl FnOnce(&mut ConsumerUsage)) {
        let mut usage = self
            .usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match usage.get_mut(consumer) {
            Some(u) => f(u),
            None => f(usage.entry(consumer.to_string()).or_default()),
        }
    }

    /// A generation of `consumer` started with a prompt of `prompt_tokens`.
    pub fn generation_started(&self, consumer: &str, prompt_tokens: u64) {
        self.with_usage(consumer, |u| {
            u.requests += 1;
            u.prompt_tokens += prompt_tokens;
            u.total_tokens += prompt_tokens;
        });
        let l = ConsumerLabels {
            consumer: consumer.to_string(),
        };
        self.generations.get_or_create(&l).inc();
        self.prompt_tokens.get_or_create(&l).inc_by(prompt_tokens);
        // Make the completion counter visible (at 0) from the first generation on.
        let _ = self.completion_tokens.get_or_create(&l);
    }

    /// `consumer`'s generation produced a token.
    pub fn completion_token(&self, consumer: &str) {
        self.with_usage(consumer, |u| {
            u.completion_tokens += 1;
            u.total_tokens += 1;
        });
        self.completion_tokens
            .get_or_create(&ConsumerLabels {
                consumer: consumer.to_string(),
            })
            .inc();
    }

    /// Every consumer's usage since the server started.
    pub fn usage(&self) -> BTreeMap<String, ConsumerUsage> {
        self.usage
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_and_counters_agree() {
        let m = Metrics::new();
        m.generation_started("alice", 5);
        for _ in 0..3 {
            m.completion_token("alice");
        }
        m.generation_started("bob", 2);
        let u = m.usage();
        assert_eq!(
            u["alice"],
            ConsumerUsage {
                requests: 1,
                prompt_tokens: 5,
                completion_tokens: 3,
                total_tokens: 8
            }
        );
        assert_eq!(u["bob"].completion_tokens, 0);
        let text = m.encode();
        for line in [
            r#"modelcommons_serve_prompt_tokens_total{consumer="alice"} 5"#,
            r#"modelcommons_serve_completion_tokens_total{consumer="alice"} 3"#,
            r#"modelcommons_serve_completion_tokens_total{consumer="bob"} 0"#,
            r#"modelcommons_serve_generations_total{consumer="bob"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
