//! What every request costs the metrics: the in-flight gauge and the latency histogram, by
//! a fixed route label.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

use crate::serve::metrics::RouteLabels;
use crate::serve::{Accounting, Shared};

/// A fixed label for a path (unknown paths are `other`: no unbounded label values).
pub fn route_label(path: &str) -> &'static str {
    match path {
        "/v1/completions" => "/v1/completions",
        "/v1/chat/completions" => "/v1/chat/completions",
        "/v1/models" => "/v1/models",
        "/v1/usage" => "/v1/usage",
        "/metrics" => "/metrics",
        "/healthz" => "/healthz",
        "/readyz" => "/readyz",
        _ => "other",
    }
}

/// Counts a request in flight until its response body is done (or dropped).
struct InFlight {
    accounting: Arc<Accounting>,
    route: &'static str,
    since: Instant,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let m = &self.accounting.metrics;
        m.in_flight.dec();
        m.http_duration
            .get_or_create(&RouteLabels { route: self.route })
            .observe(self.since.elapsed().as_secs_f64());
    }
}

/// A response body that carries its [`InFlight`].
struct Observed {
    inner: Body,
    _in_flight: InFlight,
}

impl HttpBody for Observed {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// Middleware of every route: the in-flight gauge and the latency histogram (to the last
/// byte of the body, so a stream counts until it ends).
pub async fn observe(State(s): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let route = route_label(req.uri().path());
    s.accounting.metrics.in_flight.inc();
    let in_flight = InFlight {
        accounting: s.accounting.clone(),
        route,
        since: Instant::now(),
    };
    let resp = next.run(req).await;
    resp.map(|inner| {
        Body::new(Observed {
            inner,
            _in_flight: in_flight,
        })
    })
}
