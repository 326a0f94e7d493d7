//! The routes: handlers, authentication, request validation, server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::api::{
    ApiError, ChatRequest, CompletionRequest, Endpoint, Header, MessageContent, OpenAiJson,
    PromptInput, Usage,
};
use super::engine::{ChatTurn, Event, Job, JobError, Meter, Prompt, Sampling};
use super::keys::hash_key;
use super::limit::Exceeded;
use super::metrics::{HttpLabels, LimitLabels, RouteLabels};
use super::{Accounting, Shared};

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

fn peer(req: &Request) -> Option<SocketAddr> {
    req.extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0)
}

fn bearer(headers: &HeaderMap) -> Option<&[u8]> {
    let v = headers.get(header::AUTHORIZATION)?.as_bytes();
    let scheme = v.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| v[7..].trim_ascii())
}

fn missing_key() -> ApiError {
    ApiError::invalid(
        "You didn't provide an API key. Send it in the Authorization header: `Authorization: Bearer <key>`.",
        None,
    )
    .with_status(StatusCode::UNAUTHORIZED)
}

fn wrong_key() -> ApiError {
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

    fn not_ready(&self) -> Option<ApiError> {
        (!self.ready.load(Ordering::Acquire)).then(|| {
            let mut e = ApiError::internal("The model is still loading; retry shortly.")
                .with_status(StatusCode::SERVICE_UNAVAILABLE)
                .with_code("model_not_ready");
            e.retry_after = Some(5);
            e
        })
    }

    fn admit(&self, caller: &Caller) -> Result<(), ApiError> {
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

    fn new_id(&self, endpoint: Endpoint) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        let prefix = match endpoint {
            Endpoint::Completions => "cmpl",
            Endpoint::Chat => "chatcmpl",
        };
        format!("{prefix}-{:016x}{n:08x}", self.id_nonce)
    }
}

fn rate_limited(e: &Exceeded) -> ApiError {
    let secs = e.retry_after_secs();
    let what = match e.kind {
        super::limit::LimitKind::Requests => "requests per min (RPM)",
        super::limit::LimitKind::Tokens => "tokens per min (TPM)",
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

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling.
    pub sampling: Sampling,
    /// Answer as server-sent events.
    pub stream: bool,
    /// Send usage in a last chunk.
    pub include_usage: bool,
}

/// Fields both endpoints share.
struct Common {
    model: Option<String>,
    n: Option<u64>,
    max_tokens: Option<u64>,
    temperature: Option<f64>,
    top_p: Option<f64>,
    stop: Option<super::api::Stop>,
    seed: Option<i64>,
    stream: Option<bool>,
    include_usage: bool,
}

fn plan_common(
    served: &str,
    c: Common,
    prompt: Prompt,
    default_max: Option<usize>,
) -> Result<Plan, ApiError> {
    if let Some(m) = &c.model
        && m != served
    {
        return Err(ApiError::invalid(
            format!("The model `{m}` does not exist; this server serves `{served}`."),
            Some("model"),
        )
        .with_status(StatusCode::NOT_FOUND)
        .with_code("model_not_found"));
    }
    if c.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("Only n = 1 is supported.", Some("n")));
    }
    let temperature = c.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(ApiError::invalid(
            format!("temperature must be between 0 and 2; got {temperature}."),
            Some("temperature"),
        ));
    }
    let top_p = c.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::invalid(
            format!("top_p must be in (0, 1]; got {top_p}."),
            Some("top_p"),
        ));
    }
    let max_tokens = match c.max_tokens {
        Some(0) => {
            return Err(ApiError::invalid(
                "max_tokens must be at least 1.",
                Some("max_tokens"),
            ));
        }
        Some(n) => Some(usize::try_from(n).unwrap_or(usize::MAX)),
        None => default_max,
    };
    let stop = c.stop.map(super::api::Stop::into_vec).unwrap_or_default();
    if stop.len() > 4 {
        return Err(ApiError::invalid(
            format!(
                "At most 4 stop sequences are supported; got {}.",
                stop.len()
            ),
            Some("stop"),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid(
            "Stop sequences must not be empty.",
            Some("stop"),
        ));
    }
    Ok(Plan {
        prompt,
        sampling: Sampling {
            max_tokens,
            temperature,
            top_p,
            // OpenAI seeds are signed integers; the bits are the seed.
            seed: c.seed.map(|s| s as u64),
            stop,
        },
        stream: c.stream.unwrap_or(false),
        include_usage: c.include_usage,
    })
}

/// Validates a `/v1/completions` body. `max_tokens` defaults to 16, as OpenAI.
pub fn plan_completion(served: &str, r: CompletionRequest) -> Result<Plan, ApiError> {
    if r.echo == Some(true) {
        return Err(ApiError::invalid("echo is not supported.", Some("echo")));
    }
    if r.logprobs.is_some() {
        return Err(ApiError::invalid(
            "logprobs are not supported.",
            Some("logprobs"),
        ));
    }
    let one = "Only one prompt per request is supported; send the prompts as separate requests.";
    let prompt = match r.prompt {
        PromptInput::Text(t) => Prompt::Text(t),
        PromptInput::Tokens(t) => Prompt::Tokens(t),
        PromptInput::Texts(mut v) if v.len() == 1 => Prompt::Text(v.remove(0)),
        PromptInput::TokenBatches(mut v) if v.len() == 1 => Prompt::Tokens(v.remove(0)),
        PromptInput::Texts(_) | PromptInput::TokenBatches(_) => {
            return Err(ApiError::invalid(one, Some("prompt")));
        }
    };
    plan_common(
        served,
        Common {
            model: r.model,
            n: r.n,
            max_tokens: r.max_tokens,
            temperature: r.temperature,
            top_p: r.top_p,
            stop: r.stop,
            seed: r.seed,
            stream: r.stream,
            include_usage: r.stream_options.is_some_and(|o| o.include_usage),
        },
        prompt,
        Some(16),
    )
}

/// Validates a `/v1/chat/completions` body. `max_tokens` (or `max_completion_tokens`)
/// defaults to the rest of the context.
pub fn plan_chat(served: &str, r: ChatRequest) -> Result<Plan, ApiError> {
    if r.logprobs == Some(true) {
        return Err(ApiError::invalid(
            "logprobs are not supported.",
            Some("logprobs"),
        ));
    }
    if r.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages must hold at least one message.",
            Some("messages"),
        ));
    }
    let mut turns = Vec::with_capacity(r.messages.len());
    for (i, m) in r.messages.into_iter().enumerate() {
        let content = match m.content {
            None => String::new(),
            Some(MessageContent::Text(t)) => t,
            Some(MessageContent::Parts(parts)) => {
                let mut text = String::new();
                for p in parts {
                    match (p.kind.as_str(), p.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(ApiError::invalid(
                                format!(
                                    "messages[{i}]: only text content parts are supported; got `{kind}`."
                                ),
                                Some("messages"),
                            ));
                        }
                    }
                }
                text
            }
        };
        turns.push(ChatTurn {
            role: m.role,
            content,
        });
    }
    plan_common(
        served,
        Common {
            model: r.model,
            n: r.n,
            max_tokens: r.max_completion_tokens.or(r.max_tokens),
            temperature: r.temperature,
            top_p: r.top_p,
            stop: r.stop,
            seed: r.seed,
            stream: r.stream,
            include_usage: r.stream_options.is_some_and(|o| o.include_usage),
        },
        Prompt::Chat(turns),
        None,
    )
}

/// `POST /v1/completions`.
pub async fn completions(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Result<OpenAiJson<CompletionRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    if let Some(e) = s.not_ready() {
        return Err(e);
    }
    s.admit(&caller)?;
    let OpenAiJson(req) = body?;
    let plan = plan_completion(&s.model, req)?;
    generate(&s, caller, Endpoint::Completions, plan, arrived).await
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(s): State<Arc<Shared>>,
    Extension(caller): Extension<Caller>,
    body: Result<OpenAiJson<ChatRequest>, ApiError>,
) -> Result<Response, ApiError> {
    let arrived = Instant::now();
    if let Some(e) = s.not_ready() {
        return Err(e);
    }
    s.admit(&caller)?;
    let OpenAiJson(req) = body?;
    let plan = plan_chat(&s.model, req)?;
    generate(&s, caller, Endpoint::Chat, plan, arrived).await
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

fn engine_stopped() -> ApiError {
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

fn unix_now() -> u64 {
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

/// A stream of OpenAI chunks as server-sent events, fed by the engine. Dropping it (the
/// client hung up) drops the receiver, which cancels the generation.
struct SseBody {
    header: Header,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl SseBody {
    fn new(header: Header, rx: UnboundedReceiver<Event>, include_usage: bool) -> Self {
        let mut body = Self {
            header,
            rx,
            include_usage,
            pending: VecDeque::new(),
            done: false,
        };
        if body.header.endpoint == Endpoint::Chat {
            let first = body.header.chunk(Some(""), true, None, include_usage);
            body.push(&first);
        }
        body
    }

    fn push(&mut self, v: &serde_json::Value) {
        self.pending
            .push_back(Bytes::from(format!("data: {v}\n\n")));
    }

    fn end(&mut self) {
        self.pending
            .push_back(Bytes::from_static(b"data: [DONE]\n\n"));
        self.done = true;
    }

    fn on_event(&mut self, event: Option<Event>) {
        let iu = self.include_usage;
        match event {
            Some(Event::Token(t)) => {
                let c = self.header.chunk(Some(&t), false, None, iu);
                self.push(&c);
            }
            Some(Event::Finished {
                finish,
                prompt_tokens,
                completion_tokens,
            }) => {
                let text = (self.header.endpoint == Endpoint::Completions).then_some("");
                let c = self.header.chunk(text, false, Some(finish.as_str()), iu);
                self.push(&c);
                if iu {
                    let u = self
                        .header
                        .usage_chunk(Usage::new(prompt_tokens, completion_tokens));
                    self.push(&u);
                }
                self.end();
            }
            Some(Event::Failed(e)) => {
                let e = ApiError::from(e).body();
                self.push(&e);
                self.end();
            }
            Some(Event::Started { .. }) => {}
            None => {
                let e = engine_stopped().body();
                self.push(&e);
                self.end();
            }
        }
    }
}

impl HttpBody for SseBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, Infallible>>> {
        let this = &mut *self;
        loop {
            if let Some(b) = this.pending.pop_front() {
                return Poll::Ready(Some(Ok(http_body::Frame::data(b))));
            }
            if this.done {
                return Poll::Ready(None);
            }
            match this.rx.poll_recv(cx) {
                Poll::Ready(event) => this.on_event(event),
                Poll::Pending => return Poll::Pending,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.pending.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn completion(json: &str) -> Result<Plan, ApiError> {
        plan_completion(
            "tiny",
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    fn chat(json: &str) -> Result<Plan, ApiError> {
        plan_chat(
            "tiny",
            serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}")),
        )
    }

    #[test]
    fn completion_defaults_follow_openai() {
        let p = completion(r#"{"model":"tiny","prompt":"hi"}"#).unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.prompt, Prompt::Text("hi".into()));
        assert_eq!(p.sampling.max_tokens, Some(16));
        assert_eq!((p.sampling.temperature, p.sampling.top_p), (1.0, 1.0));
        assert!(!p.stream && !p.include_usage);
        let p = completion(
            r#"{"prompt":["x"],"max_tokens":5,"temperature":0,"top_p":0.5,"stop":"\n","seed":-1,"stream":true,"stream_options":{"include_usage":true}}"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.prompt, Prompt::Text("x".into()));
        assert_eq!(
            p.sampling,
            Sampling {
                max_tokens: Some(5),
                temperature: 0.0,
                top_p: 0.5,
                seed: Some(u64::MAX),
                stop: vec!["\n".into()]
            }
        );
        assert!(p.stream && p.include_usage);
    }

    #[test]
    fn chat_flattens_text_parts_and_defaults_to_the_context() {
        let p = chat(
            r#"{"messages":[{"role":"system","content":"be brief"},{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]},{"role":"assistant","content":null}],"max_completion_tokens":7,"max_tokens":3}"#,
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(
            p.prompt,
            Prompt::Chat(vec![
                ChatTurn {
                    role: "system".into(),
                    content: "be brief".into()
                },
                ChatTurn {
                    role: "user".into(),
                    content: "ab".into()
                },
                ChatTurn {
                    role: "assistant".into(),
                    content: String::new()
                },
            ])
        );
        assert_eq!(p.sampling.max_tokens, Some(7));
        let p = chat(r#"{"messages":[{"role":"user","content":"x"}]}"#)
            .unwrap_or_else(|e| panic!("{e:?}"));
        assert_eq!(p.sampling.max_tokens, None);
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases = [
            (
                completion(r#"{"prompt":"x","model":"gpt-4"}"#),
                StatusCode::NOT_FOUND,
                "model",
            ),
            (
                completion(r#"{"prompt":"x","n":2}"#),
                StatusCode::BAD_REQUEST,
                "n",
            ),
            (
                completion(r#"{"prompt":"x","temperature":2.5}"#),
                StatusCode::BAD_REQUEST,
                "temperature",
            ),
            (
                completion(r#"{"prompt":"x","top_p":0}"#),
                StatusCode::BAD_REQUEST,
                "top_p",
            ),
            (
                completion(r#"{"prompt":"x","max_tokens":0}"#),
                StatusCode::BAD_REQUEST,
                "max_tokens",
            ),
            (
                completion(r#"{"prompt":"x","stop":["a","b","c","d","e"]}"#),
                StatusCode::BAD_REQUEST,
                "stop",
            ),
            (
                completion(r#"{"prompt":"x","stop":""}"#),
                StatusCode::BAD_REQUEST,
                "stop",
            ),
            (
                completion(r#"{"prompt":["x","y"]}"#),
                StatusCode::BAD_REQUEST,
                "prompt",
            ),
            (
                completion(r#"{"prompt":"x","echo":true}"#),
                StatusCode::BAD_REQUEST,
                "echo",
            ),
            (
                completion(r#"{"prompt":"x","logprobs":1}"#),
                StatusCode::BAD_REQUEST,
                "logprobs",
            ),
            (
                chat(r#"{"messages":[]}"#),
                StatusCode::BAD_REQUEST,
                "messages",
            ),
            (
                chat(
                    r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{}}]}]}"#,
                ),
                StatusCode::BAD_REQUEST,
                "messages",
            ),
        ];
        for (i, (r, status, param)) in cases.into_iter().enumerate() {
            let e = r.expect_err(&format!("case {i} should be refused"));
            assert_eq!(e.status, status, "case {i}: {e:?}");
            assert_eq!(e.param.as_deref(), Some(param), "case {i}: {e:?}");
        }
    }

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
