//! The operational endpoints (health, readiness, metrics, the model list, usage for
//! settlement) and the answers to unknown routes and methods.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::auth::{bearer, missing_key, peer, wrong_key};
use super::generate::unix_now;
use crate::serve::Shared;
use crate::serve::api::ApiError;
use crate::serve::keys::hash_key;

/// `GET /healthz`: the process serves HTTP.
pub async fn healthz() -> &'static str {
    "ok\n"
}

/// `GET /readyz`: 200 once the model is loaded, 503 before.
pub async fn readyz(State(s): State<Arc<Shared>>) -> Response {
    if s.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "loading the model\n").into_response()
    }
}

/// `GET /metrics`: OpenMetrics text.
pub async fn metrics(State(s): State<Arc<Shared>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.accounting.metrics.encode(),
    )
        .into_response()
}

/// `GET /v1/models`.
pub async fn models(State(s): State<Arc<Shared>>) -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "object": "list",
        "data": [{
            "id": &*s.model,
            "object": "model",
            "created": s.started_unix,
            "owned_by": "modelcommons",
        }],
    }))
}

/// `GET /v1/usage`: every consumer's usage since the server started, for settlement. With
/// `--admin-key-file` it takes that key as a bearer token; without, it answers loopback
/// clients only (a sidecar, `kubectl port-forward`).
pub async fn usage(State(s): State<Arc<Shared>>, req: Request) -> Result<Response, ApiError> {
    match &s.admin_key {
        Some(admin) => {
            let presented = bearer(req.headers()).ok_or_else(missing_key)?;
            if !admin.matches(&hash_key(presented)) {
                return Err(wrong_key());
            }
        }
        None => {
            if !peer(&req).is_some_and(|p| p.ip().is_loopback()) {
                return Err(ApiError::invalid(
                    "GET /v1/usage answers loopback clients only; start the server with --admin-key-file to call it remotely with that key.",
                    None,
                )
                .with_status(StatusCode::FORBIDDEN)
                .with_code("admin_only"));
            }
        }
    }
    let consumers: Vec<serde_json::Value> = s
        .accounting
        .metrics
        .usage()
        .into_iter()
        .map(|(consumer, u)| {
            serde_json::json!({
                "consumer": consumer,
                "requests": u.requests,
                "prompt_tokens": u.prompt_tokens,
                "completion_tokens": u.completion_tokens,
                "total_tokens": u.total_tokens,
            })
        })
        .collect();
    Ok(Json(serde_json::json!({
        "object": "usage",
        "model": &*s.model,
        "started_at": s.started_unix,
        "generated_at": unix_now(),
        "consumers": consumers,
    }))
    .into_response())
}

/// Unknown routes.
pub async fn not_found(req: Request) -> ApiError {
    ApiError::invalid(
        format!(
            "Unknown request URL: {} {}.",
            req.method(),
            req.uri().path()
        ),
        None,
    )
    .with_status(StatusCode::NOT_FOUND)
    .with_code("unknown_url")
}

/// Known routes, wrong method.
pub async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::invalid(
        format!("{} is not supported on {}.", req.method(), req.uri().path()),
        None,
    )
    .with_status(StatusCode::METHOD_NOT_ALLOWED)
    .with_code("method_not_allowed")
}
