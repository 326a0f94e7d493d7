//! `modelcommons-trainer serve` end to end: the real binary on a tiny random Llama, driven
//! over HTTP like an OpenAI client would.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

const ALICE: &str = "sk-alice-0123456789abcdef";
const BOB: &str = "sk-bob-0123456789abcdef01";
const CAROL: &str = "sk-carol-0123456789abcdef";
const ADMIN: &str = "sk-admin-0123456789abcdef";
/// A consumer for probing the model (keeps the others' usage exact).
const PROBE: &str = "sk-probe-0123456789abcdef";
/// The tiny model's context: long enough for generations that take a while.
const CONTEXT: i64 = 2048;
/// Tokens of a "long" generation (a few seconds on a CPU): long enough that what a test does
/// meanwhile happens while it runs, even on a busy machine.
const LONG: u64 = 1500;

/// A prompt whose greedy completion runs to [`LONG`] tokens (found once per test binary).
static LONG_PROMPT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
/// Tests with long generations take turns, so they do not slow each other down.
static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running server on a fresh tiny model, with consumers alice, bob and carol.
struct Server {
    child: Child,
    _stdout: BufReader<ChildStdout>,
    base: String,
    dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Server {
    fn keys_dir(&self) -> PathBuf {
        self.dir.path().join("keys")
    }

    fn model_dir(&self) -> PathBuf {
        self.dir.path().join("tiny")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    /// Starts `serve` with `--admin-key-file` and `extra` flags; waits until it is ready.
    async fn start(extra: &[&str]) -> Server {
        Self::start_with(true, extra).await
    }

    /// Starts `serve` (with `--admin-key-file` when `admin`) and waits until it is ready.
    async fn start_with(admin: bool, extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("tiny");
        modelcommons_trainer::model::init::TinyLlama {
            max_position_embeddings: CONTEXT,
            ..Default::default()
        }
        .write(&model, 7)
        .unwrap();
        let keys = dir.path().join("keys");
        std::fs::create_dir(&keys).unwrap();
        for (consumer, key) in [
            ("alice", ALICE),
            ("bob", BOB),
            ("carol", CAROL),
            ("probe", PROBE),
        ] {
            std::fs::write(keys.join(consumer), format!("{key}\n")).unwrap();
        }
        std::fs::write(dir.path().join("admin-key"), ADMIN).unwrap();
        let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_modelcommons-trainer"))
            .arg("serve")
            .arg("--model")
            .arg(&model)
            .args(["--listen", "127.0.0.1:0", "--device", "cpu"])
            .arg("--api-keys")
            .arg(&keys)
            .args(if admin {
                vec!["--admin-key-file".into(), dir.path().join("admin-key")]
            } else {
                vec![]
            })
            .args(extra)
            .env("OMP_NUM_THREADS", "1")
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {line:?}"))
            .to_string();
        let server = Server {
            child,
            _stdout: stdout,
            base: format!("http://{addr}"),
            dir,
            http: reqwest::Client::new(),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let r = self.get("/readyz", None).await;
            match r.status() {
                StatusCode::OK => return,
                StatusCode::SERVICE_UNAVAILABLE => {}
                s => panic!("/readyz answered {s}"),
            }
            assert!(
                Instant::now() < deadline,
                "not ready in 60 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, path: &str, key: Option<&str>) -> reqwest::Response {
        let mut r = self.http.get(self.url(path));
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.unwrap()
    }

    async fn post(&self, path: &str, key: Option<&str>, body: &Value) -> reqwest::Response {
        let mut r = self.http.post(self.url(path)).json(body);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        r.send().await.unwrap()
    }

    async fn post_ok(&self, path: &str, key: &str, body: &Value) -> Value {
        let r = self.post(path, Some(key), body).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{path}: {v}");
        v
    }

    /// A streamed request: every `data:` payload with its arrival time.
    async fn stream(&self, path: &str, key: &str, body: &Value) -> Vec<(Instant, String)> {
        let r = self.post(path, Some(key), body).await;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["content-type"], "text/event-stream");
        read_events(r).await
    }

    async fn metrics(&self) -> String {
        let r = self.get("/metrics", None).await;
        assert_eq!(r.status(), StatusCode::OK);
        r.text().await.unwrap()
    }

    async fn usage(&self) -> Value {
        let r = self.get("/v1/usage", Some(ADMIN)).await;
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, StatusCode::OK, "{v}");
        v
    }

    /// A prompt whose greedy completion runs to [`LONG`] tokens without meeting the end of
    /// sequence (a random model emits EOS now and then; greedy decoding is deterministic and
    /// every server loads the same weights, so the prompt found here runs as long again, and
    /// at least as long with any smaller `max_tokens`).
    async fn long_prompt(&self) -> String {
        if let Some(p) = LONG_PROMPT.get() {
            return p.clone();
        }
        let candidates = [
            "A long one",
            "Tell me a story",
            "Go on",
            "Interleave",
            "Keep going",
            "Once upon a time",
            "The quick brown fox",
            "Lorem ipsum",
            "Count to a thousand",
            "abc",
            "Hello world",
            "x",
        ];
        for prompt in candidates {
            let v = self
                .post_ok(
                    "/v1/completions",
                    PROBE,
                    &json!({"prompt": prompt, "max_tokens": LONG, "temperature": 0}),
                )
                .await;
            if v["choices"][0]["finish_reason"] == "length" {
                return LONG_PROMPT.get_or_init(|| prompt.to_string()).clone();
            }
        }
        panic!("no candidate prompt runs to {LONG} tokens on this model");
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- server log ---\n{}", self.log());
        }
    }
}

async fn read_events(mut r: reqwest::Response) -> Vec<(Instant, String)> {
    let mut buf = String::new();
    let mut events = Vec::new();
    while let Some(chunk) = r.chunk().await.unwrap() {
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let event: String = buf.drain(..end + 2).collect();
            for line in event.lines() {
                if let Some(data) = line.strip_prefix("data: ") {
                    events.push((Instant::now(), data.to_string()));
                }
            }
        }
    }
    assert!(buf.trim().is_empty(), "trailing bytes: {buf:?}");
    events
}

/// The JSON chunks of a finished stream (asserting it ended with `[DONE]`).
fn chunks(events: &[(Instant, String)]) -> Vec<Value> {
    let (last, rest) = events.split_last().expect("no events");
    assert_eq!(last.1, "[DONE]");
    rest.iter()
        .map(|(_, d)| serde_json::from_str(d).unwrap())
        .collect()
}

/// Token chunks: one choice, no finish reason, and (chat) no role.
fn is_token_chunk(c: &Value) -> bool {
    let choice = &c["choices"][0];
    !choice.is_null() && choice["finish_reason"].is_null() && choice["delta"].get("role").is_none()
}

fn text_of(c: &Value) -> &str {
    let choice = &c["choices"][0];
    choice["text"]
        .as_str()
        .or_else(|| choice["delta"]["content"].as_str())
        .unwrap_or("")
}

/// The value of a metric line `name{labels} value`.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

fn assert_error(v: &Value, kind: &str, code: Option<&str>) {
    let e = &v["error"];
    assert!(e["message"].as_str().is_some_and(|m| !m.is_empty()), "{v}");
    assert_eq!(e["type"], kind, "{v}");
    assert!(e.get("param").is_some(), "{v}");
    assert_eq!(e["code"], json!(code), "{v}");
}

/// Reads a stream until its first token chunk; returns the response to read on.
async fn until_first_token(r: &mut reqwest::Response) -> Instant {
    let mut buf = String::new();
    loop {
        let chunk = r.chunk().await.unwrap().expect("the stream ended early");
        buf.push_str(std::str::from_utf8(&chunk).unwrap());
        for event in buf.split("\n\n") {
            if let Some(data) = event.strip_prefix("data: ")
                && let Ok(v) = serde_json::from_str::<Value>(data)
                && is_token_chunk(&v)
            {
                return Instant::now();
            }
        }
    }
}

async fn wait_for(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn usage_of<'a>(usage: &'a Value, consumer: &str) -> &'a Value {
    usage["consumers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["consumer"] == consumer)
        .unwrap_or_else(|| panic!("{consumer} missing from {usage}"))
}

fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// Every OpenAI shape (completions and chat, whole and streamed), and usage counters that
/// equal the tokens actually produced, on `/v1/usage` and `/metrics`.
#[tokio::test]
async fn openai_shapes_and_usage_counters() {
    let s = Server::start(&[]).await;

    let models: Value = s.get("/v1/models", Some(ALICE)).await.json().await.unwrap();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "tiny");
    assert_eq!(models["data"][0]["object"], "model");

    let (mut prompt_total, mut completion_total) = (0, 0);
    let mut count = |u: &Value| {
        let (p, c) = (
            u["prompt_tokens"].as_u64().unwrap(),
            u["completion_tokens"].as_u64().unwrap(),
        );
        assert_eq!(u["total_tokens"].as_u64().unwrap(), p + c, "{u}");
        assert!(p > 0 && c > 0, "{u}");
        prompt_total += p;
        completion_total += c;
        (p, c)
    };

    // A whole completion.
    let v = s
        .post_ok(
            "/v1/completions",
            ALICE,
            &json!({"model": "tiny", "prompt": "Hello", "max_tokens": 8, "temperature": 0}),
        )
        .await;
    assert!(v["id"].as_str().unwrap().starts_with("cmpl-"), "{v}");
    assert_eq!(v["object"], "text_completion");
    assert!(
        v["created"].as_u64().unwrap().abs_diff(now_unix()) < 120,
        "{v}"
    );
    assert_eq!(v["model"], "tiny");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert!(choice["text"].is_string());
    assert!(
        ["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()),
        "{v}"
    );
    let (p, c) = count(&v["usage"]);
    assert!(c <= 8);
    let tok = modelcommons_trainer::model::tokenizer::Tok::load(&s.model_dir(), &[]).unwrap();
    assert_eq!(
        p as usize,
        tok.encode("Hello", true).unwrap().len(),
        "prompt_tokens = the prompt re-tokenized"
    );

    // A whole chat completion.
    let messages =
        json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]);
    let v = s
        .post_ok(
            "/v1/chat/completions",
            ALICE,
            &json!({"messages": messages, "max_tokens": 6, "seed": 3, "stop": ["\n\n", "END"]}),
        )
        .await;
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"), "{v}");
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "tiny");
    let choice = &v["choices"][0];
    assert_eq!(choice["index"], 0);
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(choice["message"]["content"].is_string());
    assert!(choice["finish_reason"].is_string());
    let (chat_prompt, _) = count(&v["usage"]);
    let chat: Vec<modelcommons_trainer::model::tokenizer::ChatMessage> =
        serde_json::from_value(messages.clone()).unwrap();
    assert_eq!(
        chat_prompt as usize,
        tok.encode_chat(&chat, true).unwrap().len(),
        "prompt_tokens = the rendered chat re-tokenized"
    );

    // A streamed completion with usage: one chunk per generated token; the text and usage
    // are those of the same request answered whole (greedy, so deterministic).
    let request =
        json!({"prompt": "Once", "max_tokens": 40, "temperature": 0, "stop": [" the", "\n\n"]});
    let whole = s.post_ok("/v1/completions", ALICE, &request).await;
    count(&whole["usage"]);
    let mut streamed_request = request.clone();
    streamed_request["stream"] = json!(true);
    streamed_request["stream_options"] = json!({"include_usage": true});
    let events = s.stream("/v1/completions", ALICE, &streamed_request).await;
    let cs = chunks(&events);
    let id = cs[0]["id"].as_str().unwrap();
    assert!(id.starts_with("cmpl-"));
    for c in &cs {
        assert_eq!(c["id"], id);
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["model"], "tiny");
        assert!(
            c.get("usage").is_some(),
            "include_usage puts usage (null) on every chunk: {c}"
        );
    }
    let (usage_chunk, rest) = cs.split_last().unwrap();
    assert_eq!(usage_chunk["choices"], json!([]));
    let (finish_chunk, tokens) = rest.split_last().unwrap();
    assert!(finish_chunk["choices"][0]["finish_reason"].is_string());
    assert!(
        tokens
            .iter()
            .all(|c| is_token_chunk(c) && c["usage"].is_null())
    );
    let (_, c) = count(&usage_chunk["usage"]);
    assert_eq!(
        c,
        tokens.len() as u64,
        "completion_tokens = streamed token chunks"
    );
    assert_eq!(usage_chunk["usage"], whole["usage"]);
    assert_eq!(
        tokens.iter().map(text_of).collect::<String>(),
        whole["choices"][0]["text"].as_str().unwrap()
    );
    assert_eq!(
        finish_chunk["choices"][0]["finish_reason"],
        whole["choices"][0]["finish_reason"]
    );

    // A streamed chat completion without usage: role first, then tokens, then the finish.
    let events = s
        .stream(
            "/v1/chat/completions",
            ALICE,
            &json!({"messages": messages, "max_tokens": 10, "stream": true}),
        )
        .await;
    let cs = chunks(&events);
    assert_eq!(cs[0]["choices"][0]["delta"]["role"], "assistant");
    for c in &cs {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert!(c["id"].as_str().unwrap().starts_with("chatcmpl-"));
        assert!(c.get("usage").is_none(), "{c}");
    }
    let last = cs.last().unwrap();
    assert_eq!(last["choices"][0]["delta"], json!({}));
    assert!(last["choices"][0]["finish_reason"].is_string());
    let streamed = cs.iter().filter(|c| is_token_chunk(c)).count() as u64;
    assert_eq!(streamed as usize, cs.len() - 2);
    assert!((1..=10).contains(&streamed));
    prompt_total += chat_prompt; // same messages, same prompt
    completion_total += streamed;

    // The ledger and the metrics agree with what was produced.
    let usage = s.usage().await;
    assert_eq!(usage["object"], "usage");
    assert_eq!(usage["model"], "tiny");
    let a = usage_of(&usage, "alice");
    assert_eq!(a["requests"], 5);
    assert_eq!(a["prompt_tokens"], prompt_total);
    assert_eq!(a["completion_tokens"], completion_total);
    assert_eq!(a["total_tokens"], prompt_total + completion_total);
    let m = s.metrics().await;
    let series = |name: &str| metric(&m, &format!("modelcommons_serve_{name}"));
    assert_eq!(
        series(r#"prompt_tokens_total{consumer="alice"}"#),
        Some(prompt_total as f64),
        "{m}"
    );
    assert_eq!(
        series(r#"completion_tokens_total{consumer="alice"}"#),
        Some(completion_total as f64)
    );
    assert_eq!(series(r#"generations_total{consumer="alice"}"#), Some(5.0));
    assert_eq!(
        series(r#"http_requests_total{consumer="alice",route="/v1/completions",code="200"}"#),
        Some(3.0)
    );
    assert_eq!(series("model_ready"), Some(1.0));
    assert!(
        series(r#"http_request_duration_seconds_count{route="/v1/chat/completions"}"#).unwrap()
            >= 2.0
    );
    assert!(series("time_to_first_token_seconds_count").unwrap() >= 4.0);
    assert_eq!(series("active_generations"), Some(0.0));
}

/// Credentials, refusals and malformed requests answer OpenAI error objects.
#[tokio::test]
async fn auth_and_error_objects() {
    let s = Server::start(&[]).await;

    let r = s.get("/v1/models", None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");
    assert_error(&r.json().await.unwrap(), "invalid_request_error", None);
    for key in ["sk-wrong", &ALICE[..ALICE.len() - 1]] {
        let r = s.get("/v1/models", Some(key)).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{key:?}");
        assert_error(
            &r.json().await.unwrap(),
            "invalid_request_error",
            Some("invalid_api_key"),
        );
    }
    let r = s
        .post("/v1/completions", Some("nope"), &json!({"prompt": "x"}))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);

    // The usage ledger takes the admin key only.
    assert_eq!(
        s.get("/v1/usage", None).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/v1/usage", Some(ALICE)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/v1/usage", Some(ADMIN)).await.status(),
        StatusCode::OK
    );

    // Malformed and mistyped JSON: 400.
    let r = s
        .http
        .post(s.url("/v1/completions"))
        .bearer_auth(BOB)
        .header("content-type", "application/json")
        .body("{\"prompt\": \"x\",")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("invalid_json"),
    );
    let r = s
        .post(
            "/v1/chat/completions",
            Some(BOB),
            &json!({"messages": "hi"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("invalid_json"),
    );

    // Invalid parameters name the parameter.
    let r = s
        .post(
            "/v1/completions",
            Some(BOB),
            &json!({"prompt": "x", "temperature": 3}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "temperature");
    let r = s
        .post(
            "/v1/completions",
            Some(BOB),
            &json!({"model": "gpt-4o", "prompt": "x"}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("model_not_found"),
    );
    let r = s
        .post(
            "/v1/completions",
            Some(BOB),
            &json!({"prompt": "x", "max_tokens": 100000}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("context_length_exceeded"),
    );

    // Unknown routes and methods.
    let r = s.get("/v1/engines", Some(BOB)).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("unknown_url"),
    );
    let r = s.get("/v1/completions", Some(BOB)).await;
    assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("method_not_allowed"),
    );

    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"modelcommons_serve_http_requests_total{consumer="unauthenticated",route="/v1/models",code="401"}"#
        ),
        Some(3.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"modelcommons_serve_http_requests_total{consumer="bob",route="/v1/completions",code="400"}"#
        ),
        Some(3.0),
    );
    // Nothing of bob's reached the model.
    let usage = s.usage().await;
    assert!(
        usage["consumers"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["consumer"] != "bob"),
        "{usage}"
    );
}

/// Without `--admin-key-file` the usage ledger answers loopback callers; `--allowed-consumers`
/// refuses the others with 403.
#[tokio::test]
async fn usage_on_loopback_and_allowed_consumers() {
    let s = Server::start_with(false, &["--allowed-consumers", "alice,bob"]).await;
    let r = s.get("/v1/usage", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["consumers"], json!([]));
    assert_eq!(
        s.get("/v1/models", Some(BOB)).await.status(),
        StatusCode::OK
    );
    let r = s.get("/v1/models", Some(CAROL)).await;
    assert_eq!(r.status(), StatusCode::FORBIDDEN);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("consumer_not_allowed"),
    );
}

/// Over `--requests-per-minute` or `--tokens-per-minute` (prompt + completion): 429 with
/// `Retry-After`, per consumer.
#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let s = Server::start(&["--requests-per-minute", "4", "--tokens-per-minute", "150"]).await;
    let small = json!({"prompt": "a", "max_tokens": 1});
    for _ in 0..4 {
        s.post_ok("/v1/completions", ALICE, &small).await;
    }
    let r = s.post("/v1/completions", Some(ALICE), &small).await;
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After {retry}");
    let v: Value = r.json().await.unwrap();
    assert_error(&v, "requests", Some("rate_limit_exceeded"));
    // Other consumers have their own budget.
    s.post_ok("/v1/completions", BOB, &small).await;

    // Tokens: carol spends until refused; the refusal comes once 150 tokens are used.
    let story = s.long_prompt().await;
    let mut used = 0;
    let mut refused = None;
    for _ in 0..4 {
        let r = s
            .post(
                "/v1/completions",
                Some(CAROL),
                &json!({"prompt": story, "max_tokens": 100, "temperature": 0}),
            )
            .await;
        if r.status() == StatusCode::TOO_MANY_REQUESTS {
            refused = Some((
                r.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap(),
                r.json::<Value>().await.unwrap(),
            ));
            break;
        }
        let v: Value = r.json().await.unwrap();
        used += v["usage"]["total_tokens"].as_u64().unwrap();
    }
    let (retry, v) = refused.unwrap_or_else(|| panic!("never refused after {used} tokens"));
    assert!(used >= 150, "refused after only {used} tokens");
    assert!((1..=60).contains(&retry));
    assert_error(&v, "tokens", Some("rate_limit_exceeded"));
    let m = s.metrics().await;
    assert_eq!(
        metric(
            &m,
            r#"modelcommons_serve_rate_limited_total{consumer="alice",limit="requests"}"#
        ),
        Some(1.0),
        "{m}"
    );
    assert_eq!(
        metric(
            &m,
            r#"modelcommons_serve_rate_limited_total{consumer="carol",limit="tokens"}"#
        ),
        Some(1.0)
    );
}

/// A malformed body (400) and an oversize one (413) are answered at once while a long
/// generation streams on and completes.
#[tokio::test]
async fn bad_requests_do_not_disturb_a_running_generation() {
    let s = std::sync::Arc::new(Server::start(&["--max-body-bytes", "2048"]).await);
    let _turn = HEAVY.lock().await;
    let prompt = s.long_prompt().await;
    let mut long = s
        .post(
            "/v1/completions",
            Some(ALICE),
            &json!({"prompt": prompt, "max_tokens": LONG, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(long.status(), StatusCode::OK);
    until_first_token(&mut long).await;
    let long = tokio::spawn(read_events(long));
    let r = s
        .http
        .post(s.url("/v1/completions"))
        .bearer_auth(BOB)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("invalid_json"),
    );
    let r = s
        .post(
            "/v1/completions",
            Some(BOB),
            &json!({"prompt": "x".repeat(4000)}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_error(
        &r.json().await.unwrap(),
        "invalid_request_error",
        Some("request_too_large"),
    );
    assert_eq!(
        metric(&s.metrics().await, "modelcommons_serve_active_generations"),
        Some(1.0),
        "the long generation was still running after both refusals"
    );

    // It runs to its end undisturbed.
    let cs = chunks(&long.await.unwrap());
    assert_eq!(cs[cs.len() - 2]["choices"][0]["finish_reason"], "length");
    assert_eq!(cs[cs.len() - 1]["usage"]["completion_tokens"], LONG);
}

/// Two streams interleave: the second's first token arrives before the first stream ends. A
/// client that hangs up cancels its generation.
#[tokio::test]
async fn concurrent_streams_interleave_and_hangups_cancel() {
    let s = std::sync::Arc::new(Server::start(&[]).await);
    let _turn = HEAVY.lock().await;
    let prompt = s.long_prompt().await;
    let body = json!({"prompt": prompt, "max_tokens": LONG, "temperature": 0, "stream": true});
    let mut a = s.post("/v1/completions", Some(ALICE), &body).await;
    assert_eq!(a.status(), StatusCode::OK);
    until_first_token(&mut a).await;
    let a_rest = tokio::spawn(read_events(a));
    let mut shorter = body.clone();
    shorter["max_tokens"] = json!(LONG / 3);
    let b_events = s.stream("/v1/completions", BOB, &shorter).await;
    let a_events = a_rest.await.unwrap();
    // Both ran to their length (the first's earliest chunks were read above).
    let b_chunks = chunks(&b_events);
    let b_tokens = b_chunks.iter().filter(|c| is_token_chunk(c)).count() as u64;
    assert_eq!(b_tokens, LONG / 3);
    let a_chunks = chunks(&a_events);
    assert_eq!(
        a_chunks.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );
    let first_token = |events: &[(Instant, String)]| {
        events
            .iter()
            .find(|(_, d)| serde_json::from_str::<Value>(d).is_ok_and(|v| is_token_chunk(&v)))
            .map(|(t, _)| *t)
            .unwrap()
    };
    let b_first = first_token(&b_events);
    let a_last = a_events
        .iter()
        .rev()
        .find(|(_, d)| d != "[DONE]")
        .unwrap()
        .0;
    assert!(
        b_first < a_last,
        "the second stream waited for the first to finish"
    );
    let b_last = b_events[b_events.len() - 2].0;
    assert!(b_last < a_last, "the second stream ended after the first");
    let a_during_b = a_events
        .iter()
        .filter(|(t, _)| (b_first..=b_last).contains(t))
        .count();
    assert!(
        a_during_b > 10,
        "only {a_during_b} tokens of the first stream while the second streamed"
    );

    // Hang up on a long generation: it stops.
    let mut c = s.post("/v1/completions", Some(CAROL), &body).await;
    until_first_token(&mut c).await;
    drop(c);
    wait_for(
        "the cancelled generation to stop",
        Duration::from_secs(20),
        async || metric(&s.metrics().await, "modelcommons_serve_active_generations") == Some(0.0),
    )
    .await;
    let carol = usage_of(&s.usage().await, "carol").clone();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let later = usage_of(&s.usage().await, "carol").clone();
    assert_eq!(
        carol, later,
        "tokens still being generated after the hang-up"
    );
    assert!(
        carol["completion_tokens"].as_u64().unwrap() < LONG,
        "{carol}"
    );

    // A non-streamed request whose client gives up is cancelled too.
    let before = carol["completion_tokens"].as_u64().unwrap();
    let r = s
        .http
        .post(s.url("/v1/completions"))
        .bearer_auth(CAROL)
        .json(&json!({"prompt": prompt, "max_tokens": LONG, "temperature": 0}))
        .timeout(Duration::from_millis(200))
        .send()
        .await;
    assert!(r.is_err(), "expected the client to time out");
    wait_for(
        "the abandoned generation to stop",
        Duration::from_secs(20),
        async || metric(&s.metrics().await, "modelcommons_serve_active_generations") == Some(0.0),
    )
    .await;
    let usage = s.usage().await;
    let carol = usage_of(&usage, "carol");
    assert_eq!(carol["requests"], 2);
    let abandoned = carol["completion_tokens"].as_u64().unwrap() - before;
    assert!(
        abandoned < LONG,
        "{abandoned} tokens generated for a client that left"
    );
}

/// `/healthz` and `/readyz` answer without credentials.
#[tokio::test]
async fn health_and_readiness() {
    let s = Server::start(&[]).await;
    let r = s.get("/healthz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    let r = s.get("/readyz", None).await;
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(r.text().await.unwrap(), "ready\n");
}

/// SIGTERM: the listener closes, the in-flight stream finishes, the process exits 0.
#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish() {
    let mut s = Server::start(&[]).await;
    let _turn = HEAVY.lock().await;
    let prompt = s.long_prompt().await;
    let mut r = s
        .post(
            "/v1/completions",
            Some(ALICE),
            &json!({"prompt": prompt, "max_tokens": LONG, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(r.status(), StatusCode::OK);
    until_first_token(&mut r).await;
    let rest = tokio::spawn(read_events(r));
    let status = Command::new("kill")
        .args(["-TERM", &s.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    // New connections are refused at once (a fresh client: no pooled connection)…
    let fresh = reqwest::Client::new();
    wait_for(
        "the listener to close",
        Duration::from_secs(5),
        async || fresh.get(s.url("/healthz")).send().await.is_err(),
    )
    .await;
    assert!(
        !rest.is_finished(),
        "the stream ended before the listener closed"
    );
    // …while the stream in flight runs to its end.
    let rest = rest.await.unwrap();
    assert_eq!(rest.last().unwrap().1, "[DONE]", "the stream was cut short");
    let usage: Value = serde_json::from_str(&rest[rest.len() - 2].1).unwrap();
    assert_eq!(usage["usage"]["completion_tokens"], LONG, "{usage}");

    let deadline = Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(status) = s.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "still running 20 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit}\n{}", s.log());
    assert!(s.log().contains("shutting down"), "{}", s.log());
}

/// A model directory that does not load: the server says so and exits non-zero (so the pod
/// restarts and its events show why) instead of serving 503s forever.
#[tokio::test]
async fn a_model_that_fails_to_load_exits_nonzero() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_modelcommons-trainer"))
        .arg("serve")
        .arg("--model")
        .arg(&empty)
        .args(["--listen", "127.0.0.1:0", "--device", "cpu"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.starts_with("listening on "), "{stdout}");
    assert!(stderr.contains("OPEN TO ANYONE"), "{stderr}");
    assert!(stderr.contains("loading the model from"), "{stderr}");
}

/// A key written, rotated or removed in `--api-keys` applies without a restart.
#[tokio::test]
async fn rotated_keys_apply_without_restart() {
    let s = Server::start(&["--api-keys-refresh-seconds", "1"]).await;
    let keys = s.keys_dir();
    let dave = "sk-dave-0123456789abcdef0";
    assert_eq!(
        s.get("/v1/models", Some(dave)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    std::fs::write(keys.join("dave"), dave).unwrap();
    std::fs::remove_file(keys.join("alice")).unwrap();
    let bob2 = "sk-bob-rotated-0123456789";
    std::fs::write(keys.join("bob"), bob2).unwrap();
    wait_for("the new keys", Duration::from_secs(15), async || {
        s.get("/v1/models", Some(dave)).await.status() == StatusCode::OK
    })
    .await;
    assert_eq!(
        s.get("/v1/models", Some(ALICE)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/v1/models", Some(BOB)).await.status(),
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        s.get("/v1/models", Some(bob2)).await.status(),
        StatusCode::OK
    );
    assert!(s.log().contains("api keys reloaded"));
}
