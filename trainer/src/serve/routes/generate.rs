//! `POST /v1/completions` and `POST /v1/chat/completions`: admission, the engine job, its
//! metering, and the answer (whole, or streamed by [`super::sse`]).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::sync::mpsc::unbounded_channel;

use super::auth::Caller;
use super::plan::{Plan, plan_chat, plan_completion};
use super::sse::SseBody;
use crate::serve::api::{
    ApiError, ChatRequest, CompletionRequest, Endpoint, Header, OpenAiJson, Usage,
};
use crate::serve::engine::{Event, Job, JobError, Meter};
use crate::serve::{Accounting, Shared};

impl Shared {
    fn not_ready(&self) -> Option<ApiError> {
        (!self.ready.load(Ordering::Acquire)).then(|| {
            let mut e = ApiError::internal("The model is still loading; retry shortly.")
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_code("model_not_ready");
            e.retry_after = Some(5);
            e
        })
    }

    fn new_id(&self, endpoint: Endpoint) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        format!("{prefix}-{:016x}{n:08x}", self.id_nonce)
    }
}

/// `POST /v1/completions`.
pub async fn completions(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Result<OpenAiJson<CompletionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    answer(s, caller, body, Endpoint::Completions, plan_completion).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Result<OpenAiJson<ChatRequest>, ApiError>,
) -> Result<Response, ApiError> {
    answer(s, caller, body, Endpoint::Chat, plan_chat).await
}

/// Both endpoints: readiness, then the caller's rate limits, then the body, then the plan
/// (each refusal before any later step runs), then the generation.
async fn answer<R>(
    s: Arc<Shared>,
    caller: Caller,
    body: Result<OpenAiJson<R>, ApiError>,
    endpoint: Endpoint,
    plan: fn(&str, R) -> Result<Plan, ApiError>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    if let Some(e) = s.not_ready() {
        return Err(e);
    }
    s.admit(&caller)?;
    let OpenAiJson(req) = body?;
    let plan = plan(&s.model, req)?;
    generate(&s, caller, endpoint, plan, arrived).await
}

impl From<JobError> for ApiError {
    fn from(e: JobError) -> Self {
        match e {
            JobError::Invalid {
                message,
                param,
                code,
            } => {
                let mut a = ApiError::invalid(message, param);
                a.code = code;
                a
            }
            JobError::Internal(m) => ApiError::internal(m),
        }
    }
}

pub(super) fn engine_stopped() -> ApiError {
    ApiError::internal("The model engine stopped; the server is restarting.")
        .with_status(StatusCode::SERVICE_UNAVAILABLE)
}

/// Meters a request's usage into the metrics, the usage ledger and the rate limiter (on the
/// engine thread).
struct UsageMeter {
    accounting: Arc<Accounting>,
    caller: Caller,
    arrived: Instant,
    first_token: bool,
}

impl Meter for UsageMeter {
    fn started(&mut self, prompt_tokens: usize) {
        let n = prompt_tokens as u64;
        self.accounting
            .metrics
            .generation_started(&self.caller.consumer, n);
        self.accounting
            .limiter()
            .record_tokens(&self.caller.limit_key, n, Instant::now());
    }

    fn token(&mut self) {
        if self.first_token {
            self.first_token = false;
            self.accounting
                .metrics
                .ttft
                .observe(self.arrived.elapsed().as_secs_f64());
        }
        self.accounting
            .metrics
            .completion_token(&self.caller.consumer);
        self.accounting
            .limiter()
            .record_tokens(&self.caller.limit_key, 1, Instant::now());
    }
}

pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

async fn generate(
    s: &Arc<Shared>,
    caller: Caller,
    endpoint: Endpoint,
    plan: Plan,
    arrived: Instant,
) -> Result<Response, ApiError> {
    let (tx, mut rx) = unbounded_channel();
    let meter = UsageMeter {
        accounting: s.accounting.clone(),
        caller,
        arrived,
        first_token: true,
    };
    s.engine
        .submit(Job {
            prompt: plan.prompt,
            sampling: plan.sampling,
            events: tx,
            meter: Box::new(meter),
        })
        .map_err(|_| engine_stopped())?;
    let header = Header {
        id: s.new_id(endpoint),
        created: unix_now(),
        model: s.model.clone(),
        endpoint,
    };
    match rx.recv().await {
        Some(Event::Started { .. }) => {}
        Some(Event::Failed(e)) => return Err(e.into()),
        _ => return Err(engine_stopped()),
    }
    if plan.stream {
        let body = SseBody::new(header, rx, plan.include_usage);
        return Ok((
            [
                (
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("text/event-stream"),
                ),
                (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
                (
                    header::HeaderName::from_static("x-accel-buffering"),
                    HeaderValue::from_static("no"),
                ),
            ],
            Body::new(body),
        )
            .into_response());
    }
    // Dropping this future (the client hung up) drops `rx`, which cancels the generation.
    let mut text = String::new();
    loop {
        match rx.recv().await {
            Some(Event::Token(t)) => text.push_str(&t),
            Some(Event::Finished {
                finish,
                prompt_tokens,
                completion_tokens,
            }) => {
                let usage = Usage::new(prompt_tokens, completion_tokens);
                return Ok(Json(header.response(&text, finish.as_str(), usage)).into_response());
            }
            Some(Event::Failed(e)) => return Err(e.into()),
            Some(Event::Started { .. }) | None => return Err(engine_stopped()),
        }
    }
}
