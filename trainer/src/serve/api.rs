//! The OpenAI wire format: request bodies, responses, stream chunks and error objects.
//!
//! Only what the server implements is modelled; unknown request fields are ignored (as the
//! OpenAI API and vLLM do), but fields that would change the response's shape in a way this
//! server cannot honour (`n` > 1, `logprobs`, `echo`) are refused with a 400.

use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An error answered in the OpenAI shape: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// A sentence for humans: what was expected, what was found, what to do.
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `requests`, `tokens`, `server_error`, ….
    pub kind: &'static str,
    /// The request field at fault, if any.
    pub param: Option<String>,
    /// A machine-readable code (`invalid_api_key`, `rate_limit_exceeded`, …).
    pub code: Option<&'static str>,
    /// Seconds for a `Retry-After` header (429 and 503).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A 400 `invalid_request_error` about `param`.
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
            retry_after: None,
        }
    }

    /// A 500 `server_error`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            message: message.into(),
            kind: "server_error",
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// Replaces the status.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = status;
        self
    }

    /// Sets the code.
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, axum::Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// A JSON body whose rejections are OpenAI-shaped: malformed or mistyped JSON is a 400, a body
/// over `--max-body-bytes` a 413. The `Content-Type` is not checked (clients that forget
/// `application/json` are common and harmless).
#[derive(Debug, Clone)]
pub struct OpenAiJson<T>(pub T);

impl<T, S> FromRequest<S> for OpenAiJson<T>
where
    T: serde::de::DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| {
                if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::invalid(
                        "the request body is larger than this server accepts (--max-body-bytes); send a shorter prompt",
                        None,
                    )
                    .with_status(StatusCode::PAYLOAD_TOO_LARGE)
                    .with_code("request_too_large")
                } else {
                    ApiError::invalid(format!("reading the request body: {}", r.body_text()), None)
                        .with_status(r.status())
                }
            })?;
        let axum::Json(value) = axum::Json::<T>::from_bytes(&bytes).map_err(|r| {
            ApiError::invalid(
                format!(
                    "the request body is not valid JSON for this endpoint: {}",
                    r.body_text()
                ),
                None,
            )
            .with_code("invalid_json")
        })?;
        Ok(Self(value))
    }
}

/// `stop`: one string or up to four.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Stop {
    /// One stop sequence.
    One(String),
    /// Several.
    Many(Vec<String>),
}

impl Stop {
    /// The sequences.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Stop::One(s) => vec![s],
            Stop::Many(v) => v,
        }
    }
}

/// `stream_options`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and `"usage": null` on the others).
    #[serde(default)]
    pub include_usage: bool,
}

/// `prompt` of `/v1/completions`: a string, a one-string array, or token ids.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum PromptInput {
    /// Text.
    Text(String),
    /// Token ids.
    Tokens(Vec<i64>),
    /// Several texts (only one is accepted).
    Texts(Vec<String>),
    /// Several token-id prompts (only one is accepted).
    TokenBatches(Vec<Vec<i64>>),
}

/// The body of `POST /v1/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct CompletionRequest {
    /// The model; must be the served name when given.
    #[serde(default)]
    pub model: Option<String>,
    /// The prompt.
    pub prompt: PromptInput,
    /// Most tokens to generate (default 16, as OpenAI).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// 0–2 (default 1); 0 is greedy.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, (0, 1] (default 1).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Choices per prompt; only 1.
    #[serde(default)]
    pub n: Option<u64>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Stream options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Stop sequences (not included in the output).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Sampling seed: the same seed and request give the same text.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Not supported (refused when true).
    #[serde(default)]
    pub echo: Option<bool>,
    /// Not supported (refused when set).
    #[serde(default)]
    pub logprobs: Option<u64>,
}

/// A chat message as sent: `content` is a string or a list of `{"type":"text","text":…}`
/// parts.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatMessageIn {
    /// `system`, `developer`, `user`, `assistant`, ….
    pub role: String,
    /// The content (null is read as empty).
    #[serde(default)]
    pub content: Option<MessageContent>,
}

/// Message content.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Content parts; only `text` parts are supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Clone, Deserialize)]
pub struct ContentPart {
    /// `text` (others are refused).
    #[serde(rename = "type")]
    pub kind: String,
    /// The text of a `text` part.
    #[serde(default)]
    pub text: Option<String>,
}

/// The body of `POST /v1/chat/completions`.
#[derive(Debug, Clone, Deserialize)]
pub struct ChatRequest {
    /// The model; must be the served name when given.
    #[serde(default)]
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<ChatMessageIn>,
    /// Most tokens to generate (default: the rest of the context).
    #[serde(default)]
    pub max_tokens: Option<u64>,
    /// The newer name of `max_tokens` (wins when both are set).
    #[serde(default)]
    pub max_completion_tokens: Option<u64>,
    /// 0–2 (default 1); 0 is greedy.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Nucleus sampling mass, (0, 1] (default 1).
    #[serde(default)]
    pub top_p: Option<f64>,
    /// Choices; only 1.
    #[serde(default)]
    pub n: Option<u64>,
    /// Answer as server-sent events.
    #[serde(default)]
    pub stream: Option<bool>,
    /// Stream options.
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
    /// Stop sequences (not included in the output).
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Sampling seed.
    #[serde(default)]
    pub seed: Option<i64>,
    /// Not supported (refused when true).
    #[serde(default)]
    pub logprobs: Option<bool>,
}

/// Token counts of one request.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Usage {
    /// Tokens of the prompt (after the chat template).
    pub prompt_tokens: u64,
    /// Tokens generated.
    pub completion_tokens: u64,
    /// Their sum.
    pub total_tokens: u64,
}

impl Usage {
    /// Usage of `prompt` + `completion` tokens.
    pub fn new(prompt: usize, completion: usize) -> Self {
        let (p, c) = (prompt as u64, completion as u64);
        Self {
            prompt_tokens: p,
            completion_tokens: c,
            total_tokens: p + c,
        }
    }
}

/// Which endpoint a generation answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/completions` (`text_completion`).
    Completions,
    /// `/v1/chat/completions` (`chat.completion`).
    Chat,
}

/// What every response and chunk of one request shares.
#[derive(Debug, Clone)]
pub struct Header {
    /// `cmpl-…` or `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: u64,
    /// The served model name.
    pub model: std::sync::Arc<str>,
    /// The endpoint.
    pub endpoint: Endpoint,
}

impl Header {
    /// The whole (non-streamed) response.
    pub fn response(&self, text: &str, finish: &str, usage: Usage) -> serde_json::Value {
        let choice = match self.endpoint {
            Endpoint::Completions => serde_json::json!({
                "index": 0, "text": text, "logprobs": null, "finish_reason": finish,
            }),
            Endpoint::Chat => serde_json::json!({
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish,
            }),
        };
        serde_json::json!({
            "id": self.id,
            "object": match self.endpoint {
                Endpoint::Completions => "text_completion",
                Endpoint::Chat => "chat.completion",
            },
            "created": self.created,
            "model": &*self.model,
            "choices": [choice],
            "usage": usage,
        })
    }

    /// A stream chunk with one choice: `text` (a delta) and/or a finish reason. For chat,
    /// `role` adds `"role": "assistant"` to the delta (the first chunk), and a chunk with
    /// neither text nor role has an empty delta (the last one).
    pub fn chunk(
        &self,
        text: Option<&str>,
        role: bool,
        finish: Option<&str>,
        include_usage: bool,
    ) -> serde_json::Value {
        let choice = match self.endpoint {
            Endpoint::Completions => serde_json::json!({
                "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": finish,
            }),
            Endpoint::Chat => {
                let mut delta = serde_json::Map::new();
                if role {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(t) = text {
                    delta.insert("content".into(), t.into());
                }
                serde_json::json!({
                    "index": 0, "delta": delta, "logprobs": null, "finish_reason": finish,
                })
            }
        };
        self.chunk_with(vec![choice], include_usage.then_some(None))
    }

    /// The last chunk of `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, usage: Usage) -> serde_json::Value {
        self.chunk_with(vec![], Some(Some(usage)))
    }

    fn chunk_with(
        &self,
        choices: Vec<serde_json::Value>,
        usage: Option<Option<Usage>>,
    ) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id,
            "object": match self.endpoint {
                Endpoint::Completions => "text_completion",
                Endpoint::Chat => "chat.completion.chunk",
            },
            "created": self.created,
            "model": &*self.model,
            "choices": choices,
        });
        if let (Some(usage), Some(obj)) = (usage, v.as_object_mut()) {
            obj.insert("usage".into(), serde_json::json!(usage));
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(endpoint: Endpoint) -> Header {
        Header {
            id: "x-1".into(),
            created: 7,
            model: "m".into(),
            endpoint,
        }
    }

    #[test]
    fn error_shape() {
        let e = ApiError::invalid("bad", Some("stop")).with_code("c");
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "stop", "code": "c"}})
        );
    }

    #[test]
    fn chat_chunks() {
        let h = header(Endpoint::Chat);
        let first = h.chunk(Some(""), true, None, false);
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(
            first["choices"][0]["delta"],
            serde_json::json!({"role": "assistant", "content": ""})
        );
        assert!(first.get("usage").is_none());
        let last = h.chunk(None, false, Some("length"), true);
        assert_eq!(last["choices"][0]["delta"], serde_json::json!({}));
        assert_eq!(last["choices"][0]["finish_reason"], "length");
        assert!(last["usage"].is_null() && last.get("usage").is_some());
        let u = h.usage_chunk(Usage::new(3, 4));
        assert_eq!(u["choices"], serde_json::json!([]));
        assert_eq!(u["usage"]["total_tokens"], 7);
    }

    #[test]
    fn completion_response() {
        let v = header(Endpoint::Completions).response("hi", "stop", Usage::new(1, 2));
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["choices"][0]["text"], "hi");
        assert_eq!(v["choices"][0]["finish_reason"], "stop");
        assert_eq!(v["usage"]["completion_tokens"], 2);
    }

    #[test]
    fn prompts_and_stops_parse() {
        let r: CompletionRequest =
            serde_json::from_str(r#"{"prompt":"a","stop":["x","y"],"max_tokens":3}"#)
                .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.prompt, PromptInput::Text("a".into()));
        assert_eq!(
            r.stop.map(Stop::into_vec),
            Some(vec!["x".into(), "y".into()])
        );
        let r: CompletionRequest = serde_json::from_str(r#"{"prompt":[1,2,3],"stop":"z"}"#)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.prompt, PromptInput::Tokens(vec![1, 2, 3]));
        assert_eq!(r.stop.map(Stop::into_vec), Some(vec!["z".into()]));
    }
}
