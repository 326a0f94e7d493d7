//! Who is calling: the bearer key (or, without `--api-keys`, the peer address), the
//! deployment's allowed consumers, and the rate limits each caller is admitted under.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::observe::route_label;
use crate::serve::Shared;
use crate::serve::api::ApiError;
use crate::serve::limit::Exceeded;
use crate::serve::metrics::{HttpLabels, LimitLabels};

/// The consumer label of requests without valid credentials.
pub const UNAUTHENTICATED: &str = "unauthenticated";
/// The consumer of every request when the server runs without `--api-keys`.
pub const PUBLIC: &str = "public";

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The consumer (key file name, or [`PUBLIC`]).
    pub consumer: Arc<str>,
    /// What the rate limiter counts against: the consumer, or `addr:<ip>` without keys.
    pub limit_key: Arc<str>,
}

pub(super) fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

pub(super) fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| v[7..].trim_ascii())
}

pub(super) fn missing_key() -> ApiError {
    ApiError::invalid(
        "You didn't provide an API key. Send it in the Authorization header: `Authorization: Bearer <key>`.",
        None,
    )
    .with_status(StatusCode::UNAUTHORIZED)
}

pub(super) fn wrong_key() -> ApiError {
    ApiError::invalid(
        "Incorrect API key provided. Ask the operator of this deployment for a valid key.",
        None,
    )
    .with_status(StatusCode::UNAUTHORIZED)
    .with_code("invalid_api_key")
}

impl Shared {
    /// Who the credentials of `headers` belong to; `Err` carries the consumer when known.
    fn authenticate(
        &self,
        headers: &HeaderMap,
        peer: Option<SocketAddr>,
    ) -> Result<Caller, (Option<Arc<str>>, ApiError)> {
        let Some(keys) = &self.keys else {
            let addr = peer.map_or_else(|| "unknown".to_string(), |p| p.ip().to_string());
            return Ok(Caller {
                consumer: PUBLIC.into(),
                limit_key: format!("addr:{addr}").into(),
            });
        };
        let presented = bearer(headers).ok_or_else(|| (None, missing_key()))?;
        let set = keys.get();
        let consumer: Arc<str> = set
            .lookup(presented)
            .ok_or_else(|| (None, wrong_key()))?
            .into();
        if !self.allowed_consumers.is_empty() && !self.allowed_consumers.contains(&*consumer) {
            let e = ApiError::invalid(
                format!(
                    "The consumer {consumer:?} may not call this deployment (it is not in its allowed consumers)."
                ),
                None,
            )
            .with_status(StatusCode::FORBIDDEN)
            .with_code("consumer_not_allowed");
            return Err((Some(consumer), e));
        }
        Ok(Caller {
            limit_key: consumer.clone(),
            consumer,
        })
    }

    pub(super) fn admit(&self, caller: &Caller) -> Result<(), ApiError> {
        let r = self
            .accounting
            .limiter()
            .admit(&caller.limit_key, Instant::now());
        r.map_err(|e| {
            self.accounting
                .metrics
                .rate_limited
                .get_or_create(&LimitLabels {
                    consumer: caller.consumer.to_string(),
                    limit: e.kind.as_str(),
                })
                .inc();
            rate_limited(&e)
        })
    }
}

fn rate_limited(e: &Exceeded) -> ApiError {
    let secs = e.retry_after_secs();
    let what = match e.kind {
        crate::serve::limit::LimitKind::Requests => "requests per min (RPM)",
        crate::serve::limit::LimitKind::Tokens => "tokens per min (TPM)",
    };
    ApiError {
        status: StatusCode::TOO_MANY_REQUESTS,
        message: format!(
            "Rate limit reached on {what}: Limit {}, Used {}. Please try again in {secs}s.",
            e.limit, e.used
        ),
        kind: e.kind.as_str(),
        param: None,
        code: Some("rate_limit_exceeded"),
        retry_after: Some(secs),
    }
}

/// Middleware of the OpenAI routes: authenticates, records `http_requests_total`.
pub async fn api_auth(State(s): State<Arc<Shared>>, mut req: Request, next: Next) -> Response {
    let route = route_label(req.uri().path());
    let (consumer, resp) = match s.authenticate(req.headers(), peer(&req)) {
        Ok(caller) => {
            let consumer = caller.consumer.to_string();
            req.extensions_mut().insert(caller);
            (consumer, next.run(req).await)
        }
        Err((consumer, e)) => (
            consumer.map_or_else(|| UNAUTHENTICATED.to_string(), |c| c.to_string()),
            e.into_response(),
        ),
    };
    s.accounting
        .metrics
        .http_requests
        .get_or_create(&HttpLabels {
            consumer,
            route,
            code: resp.status().as_u16(),
        })
        .inc();
    resp
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    #[test]
    fn bearer_tokens() {
        let mut h = HeaderMap::new();
        assert_eq!(bearer(&h), None);
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer  sk-1 "),
        );
        assert_eq!(bearer(&h), Some(&b"sk-1"[..]));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("bearer sk-2"),
        );
        assert_eq!(bearer(&h), Some(&b"sk-2"[..]));
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Basic abc"));
        assert_eq!(bearer(&h), None);
    }
}
