//! The validation of an OpenAI request into a generation plan: every refusal a 4xx that
//! names the parameter, as OpenAI's do.

use axum::http::StatusCode;

use crate::serve::api::{ApiError, ChatRequest, CompletionRequest, MessageContent, PromptInput};
use crate::serve::engine::{ChatTurn, Prompt, Sampling};

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
    stop: Option<crate::serve::api::Stop>,
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
    let stop = c
        .stop
        .map(crate::serve::api::Stop::into_vec)
        .unwrap_or_default();
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
}
