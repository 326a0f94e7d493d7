//! The engine thread: the only owner of the model, interleaving every active generation.
//!
//! tch tensors are `Send` but not `Sync`, so the model cannot be shared between the async
//! request handlers. Instead one dedicated OS thread loads the model (it never leaves that
//! thread) and runs this loop:
//!
//! 1. take every job that has arrived (block only when there is nothing to do);
//! 2. start queued jobs while fewer than `max_active` generations run: tokenize, check the
//!    context length, prefill, answer [`Event::Started`];
//! 3. give every active generation one decode step, round-robin, sending each token on its
//!    channel as [`Event::Token`]; a finished one answers [`Event::Finished`].
//!
//! A generation whose receiver is gone (the client disconnected, so its response body or
//! handler future was dropped) is cancelled before its next step. Usage is metered by the
//! job's [`Meter`] before the matching event is sent, so a client that has read an event
//! also sees it counted. A panic in the backend (tch panics on some internal errors) fails
//! only the job it happened in.

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc::{Receiver, Sender, TryRecvError};

use tokio::sync::mpsc::UnboundedSender;

/// One turn of a conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatTurn {
    /// `system`, `user`, `assistant`, ….
    pub role: String,
    /// The text.
    pub content: String,
}

/// What to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    /// Text, tokenized with the tokenizer's special tokens (e.g. BOS).
    Text(String),
    /// Token ids, as given.
    Tokens(Vec<i64>),
    /// A conversation, rendered with the chat template (with the generation prompt).
    Chat(Vec<ChatTurn>),
}

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// Most tokens to generate; `None`: the rest of the context.
    pub max_tokens: Option<usize>,
    /// 0 is greedy.
    pub temperature: f64,
    /// Nucleus mass.
    pub top_p: f64,
    /// Seed of the sampler.
    pub seed: Option<u64>,
    /// Stop sequences.
    pub stop: Vec<String>,
}

/// Why a generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finish {
    /// End of sequence or a stop sequence.
    Stop,
    /// `max_tokens`.
    Length,
}

impl Finish {
    /// `stop` or `length`.
    pub fn as_str(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
        }
    }
}

/// A job's failure.
#[derive(Debug, Clone, PartialEq)]
pub enum JobError {
    /// The request cannot be served as asked (a 400).
    Invalid {
        /// What is wrong and what to do.
        message: String,
        /// The field at fault.
        param: Option<&'static str>,
        /// A machine-readable code.
        code: Option<&'static str>,
    },
    /// The server failed (a 500).
    Internal(String),
}

/// What the engine tells a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Prefilled; generation begins.
    Started {
        /// Tokens of the prompt.
        prompt_tokens: usize,
    },
    /// One generated token's text (may be empty: an incomplete character, or text held back
    /// while it could still become a stop sequence).
    Token(String),
    /// Done.
    Finished {
        /// Why.
        finish: Finish,
        /// Tokens of the prompt.
        prompt_tokens: usize,
        /// Tokens generated (the number of [`Event::Token`]s sent).
        completion_tokens: usize,
    },
    /// Failed; nothing follows.
    Failed(JobError),
}

/// Counts a job's usage, on the engine thread, before the matching event is sent.
pub trait Meter: Send {
    /// The prompt of `prompt_tokens` was prefilled.
    fn started(&mut self, prompt_tokens: usize);
    /// One token was generated.
    fn token(&mut self);
}

/// A meter that counts nothing.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoMeter;

impl Meter for NoMeter {
    fn started(&mut self, _: usize) {}
    fn token(&mut self) {}
}

/// A request for the engine.
pub struct Job {
    /// The prompt.
    pub prompt: Prompt,
    /// Sampling.
    pub sampling: Sampling,
    /// Where events go; dropping the receiver cancels the job.
    pub events: UnboundedSender<Event>,
    /// Usage accounting.
    pub meter: Box<dyn Meter>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Job")
            .field("prompt", &self.prompt)
            .field("sampling", &self.sampling)
            .finish_non_exhaustive()
    }
}

/// A model the engine can drive. Implemented for the Llama (`super::backend`) and by fakes in
/// tests.
pub trait Backend {
    /// One generation's state (its KV cache).
    type Gen;
    /// The context length (prompt + completion).
    fn context_length(&self) -> usize;
    /// The prompt's token ids.
    fn encode(&self, prompt: &Prompt) -> Result<Vec<i64>, JobError>;
    /// Prefills `prompt_ids`.
    fn start(
        &self,
        prompt_ids: Vec<i64>,
        sampling: &Sampling,
        max_tokens: usize,
    ) -> Result<Self::Gen, JobError>;
    /// One decode step: `Some(text)` per generated token, `None` once finished.
    fn step(&self, generation: &mut Self::Gen) -> anyhow::Result<Option<String>>;
    /// Why a finished generation ended.
    fn finish(&self, generation: &Self::Gen) -> Finish;
}

/// The request handlers' side of the engine.
#[derive(Debug, Clone)]
pub struct EngineHandle {
    jobs: Sender<Job>,
}

impl EngineHandle {
    /// Queues a job; gives it back when the engine has stopped.
    pub fn submit(&self, job: Job) -> Result<(), Box<Job>> {
        self.jobs.send(job).map_err(|e| Box::new(e.0))
    }
}

/// Queue sizes, reported after every round.
pub type Report<'a> = &'a dyn Fn(usize, usize);

/// Starts the engine thread: `load` runs on it (so the model never crosses threads), then
/// `on_ready`, then the loop until every [`EngineHandle`] is dropped and the work is done.
/// `exited` receives the thread's result (a load error, or `Ok` after the loop).
pub fn spawn<B, L>(
    load: L,
    max_active: usize,
    on_ready: impl FnOnce() + Send + 'static,
    report: impl Fn(usize, usize) + Send + 'static,
) -> std::io::Result<(
    EngineHandle,
    tokio::sync::oneshot::Receiver<anyhow::Result<()>>,
)>
where
    B: Backend,
    L: FnOnce() -> anyhow::Result<B> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let (exit_tx, exit_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("engine".into())
        .spawn(move || {
            let result = load().map(|backend| {
                on_ready();
                run(&backend, &rx, max_active, &report);
            });
            let _ = exit_tx.send(result);
        })?;
    Ok((EngineHandle { jobs: tx }, exit_rx))
}

struct Running<G> {
    generation: G,
    events: UnboundedSender<Event>,
    meter: Box<dyn Meter>,
    prompt_tokens: usize,
    completion_tokens: usize,
}

/// The loop (see the module docs). Returns when `jobs` is disconnected and all work is done.
pub fn run<B: Backend>(backend: &B, jobs: &Receiver<Job>, max_active: usize, report: Report) {
    let max_active = max_active.max(1);
    let mut active: Vec<Running<B::Gen>> = Vec::new();
    let mut queue: VecDeque<Job> = VecDeque::new();
    let mut open = true;
    loop {
        if active.is_empty() && queue.is_empty() {
            if !open {
                return;
            }
            match jobs.recv() {
                Ok(job) => queue.push_back(job),
                Err(_) => return,
            }
        }
        while open {
            match jobs.try_recv() {
                Ok(job) => queue.push_back(job),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        // Drop queued jobs whose client is gone, then fill the free slots.
        queue.retain(|j| !j.events.is_closed());
        while active.len() < max_active {
            let Some(job) = queue.pop_front() else { break };
            active.extend(start(backend, job));
        }
        report(active.len(), queue.len());
        // A generation's last event goes out only after the gauges stop counting it, so a
        // client that reads the metrics right after its answer never sees itself as active.
        let mut last = Vec::new();
        active.retain_mut(|r| match advance(backend, r) {
            Step::Continue => true,
            Step::Over(event) => {
                last.extend(event.map(|e| (r.events.clone(), e)));
                false
            }
        });
        report(active.len(), queue.len());
        for (events, event) in last {
            let _ = events.send(event);
        }
    }
}

/// What one decode step left to do.
enum Step {
    Continue,
    /// The generation is over; the event to send it, if its client still listens.
    Over(Option<Event>),
}

fn guarded<T>(what: &str, f: impl FnOnce() -> Result<T, JobError>) -> Result<T, JobError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(panic) => {
            let msg = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("(no message)");
            tracing::error!("{what} panicked: {msg}");
            Err(JobError::Internal(format!("{what} panicked: {msg}")))
        }
    }
}

fn start<B: Backend>(backend: &B, mut job: Job) -> Option<Running<B::Gen>> {
    let fail = |job: &Job, e: JobError| {
        let _ = job.events.send(Event::Failed(e));
        None
    };
    let ids = match guarded("tokenizing", || backend.encode(&job.prompt)) {
        Ok(ids) => ids,
        Err(e) => return fail(&job, e),
    };
    if ids.is_empty() {
        return fail(
            &job,
            JobError::Invalid {
                message: "the prompt is empty (no tokens); send some text".into(),
                param: Some("prompt"),
                code: None,
            },
        );
    }
    let context = backend.context_length();
    let prompt_tokens = ids.len();
    let max_tokens = job
        .sampling
        .max_tokens
        .unwrap_or(context.saturating_sub(prompt_tokens));
    if max_tokens == 0 || prompt_tokens + max_tokens > context {
        return fail(
            &job,
            JobError::Invalid {
                message: format!(
                    "This model's maximum context length is {context} tokens. However, you requested {} tokens ({prompt_tokens} in the prompt, {max_tokens} for the completion). Please reduce the length of the prompt or max_tokens.",
                    prompt_tokens + max_tokens
                ),
                param: None,
                code: Some("context_length_exceeded"),
            },
        );
    }
    let generation = match guarded("prefill", || backend.start(ids, &job.sampling, max_tokens)) {
        Ok(g) => g,
        Err(e) => return fail(&job, e),
    };
    job.meter.started(prompt_tokens);
    if job.events.send(Event::Started { prompt_tokens }).is_err() {
        return None;
    }
    Some(Running {
        generation,
        events: job.events,
        meter: job.meter,
        prompt_tokens,
        completion_tokens: 0,
    })
}

/// One step of one generation.
fn advance<B: Backend>(backend: &B, r: &mut Running<B::Gen>) -> Step {
    if r.events.is_closed() {
        return Step::Over(None);
    }
    let step = || {
        backend
            .step(&mut r.generation)
            .map_err(|e| JobError::Internal(format!("decoding: {e:#}")))
    };
    match guarded("decoding", step) {
        Ok(Some(text)) => {
            r.completion_tokens += 1;
            r.meter.token();
            if r.events.send(Event::Token(text)).is_ok() {
                Step::Continue
            } else {
                Step::Over(None)
            }
        }
        Ok(None) => Step::Over(Some(Event::Finished {
            finish: backend.finish(&r.generation),
            prompt_tokens: r.prompt_tokens,
            completion_tokens: r.completion_tokens,
        })),
        Err(e) => Step::Over(Some(Event::Failed(e))),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

    use super::*;

    /// Generates `max_tokens` tokens `"<label>"` where the label is the prompt's text; logs
    /// every step's label.
    struct Fake {
        log: Arc<Mutex<Vec<String>>>,
        context: usize,
        delay: std::time::Duration,
    }

    impl Default for Fake {
        fn default() -> Self {
            Self {
                log: Arc::default(),
                context: 32,
                delay: std::time::Duration::ZERO,
            }
        }
    }

    struct FakeGen {
        label: String,
        left: usize,
    }

    impl Backend for Fake {
        type Gen = FakeGen;
        fn context_length(&self) -> usize {
            self.context
        }
        fn encode(&self, prompt: &Prompt) -> Result<Vec<i64>, JobError> {
            match prompt {
                Prompt::Text(t) => Ok(t.bytes().map(i64::from).collect()),
                Prompt::Tokens(t) => Ok(t.clone()),
                Prompt::Chat(_) => Err(JobError::Invalid {
                    message: "no chat".into(),
                    param: Some("messages"),
                    code: None,
                }),
            }
        }
        fn start(
            &self,
            ids: Vec<i64>,
            _: &Sampling,
            max_tokens: usize,
        ) -> Result<FakeGen, JobError> {
            let label: String = ids.iter().map(|&b| char::from(b as u8)).collect();
            if label == "boom" {
                panic!("prefill exploded");
            }
            Ok(FakeGen {
                label,
                left: max_tokens,
            })
        }
        fn step(&self, g: &mut FakeGen) -> anyhow::Result<Option<String>> {
            if g.left == 0 {
                return Ok(None);
            }
            g.left -= 1;
            std::thread::sleep(self.delay);
            self.log
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .push(g.label.clone());
            Ok(Some(g.label.clone()))
        }
        fn finish(&self, _: &FakeGen) -> Finish {
            Finish::Length
        }
    }

    #[derive(Clone, Default)]
    struct Counts(Arc<Mutex<(usize, usize)>>);

    impl Meter for Counts {
        fn started(&mut self, n: usize) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .0 += n;
        }
        fn token(&mut self) {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .1 += 1;
        }
    }

    fn job(
        text: &str,
        max_tokens: Option<usize>,
        meter: Box<dyn Meter>,
    ) -> (Job, UnboundedReceiver<Event>) {
        let (tx, rx) = unbounded_channel();
        let job = Job {
            prompt: Prompt::Text(text.into()),
            sampling: Sampling {
                max_tokens,
                temperature: 1.0,
                top_p: 1.0,
                seed: None,
                stop: vec![],
            },
            events: tx,
            meter,
        };
        (job, rx)
    }

    fn drain(rx: &mut UnboundedReceiver<Event>) -> Vec<Event> {
        let mut v = Vec::new();
        while let Some(e) = rx.blocking_recv() {
            v.push(e);
        }
        v
    }

    fn run_all(fake: &Fake, jobs: Vec<Job>, max_active: usize) {
        let (tx, rx) = std::sync::mpsc::channel();
        for j in jobs {
            tx.send(j).unwrap_or_else(|e| panic!("{e}"));
        }
        drop(tx);
        run(fake, &rx, max_active, &|_, _| {});
    }

    #[test]
    fn generations_interleave_round_robin_and_are_metered() {
        let fake = Fake::default();
        let counts = Counts::default();
        let (a, mut ra) = job("a", Some(3), Box::new(counts.clone()));
        let (b, mut rb) = job("bb", Some(2), Box::new(counts.clone()));
        run_all(&fake, vec![a, b], 8);
        assert_eq!(
            *fake.log.lock().unwrap_or_else(|e| e.into_inner()),
            ["a", "bb", "a", "bb", "a"]
        );
        let ev = drain(&mut ra);
        assert_eq!(ev[0], Event::Started { prompt_tokens: 1 });
        assert_eq!(ev.len(), 5);
        assert_eq!(
            ev[4],
            Event::Finished {
                finish: Finish::Length,
                prompt_tokens: 1,
                completion_tokens: 3
            }
        );
        assert_eq!(drain(&mut rb).len(), 4);
        assert_eq!(*counts.0.lock().unwrap_or_else(|e| e.into_inner()), (3, 5));
    }

    /// A client that reads the gauges once it has its answer sees itself gone: the engine
    /// reports the smaller count before it sends the last event.
    #[test]
    fn the_gauge_drops_before_the_answer_ends() {
        let fake = Fake::default();
        let (a, ra) = job("a", Some(2), Box::new(NoMeter));
        let ra = Mutex::new(ra);
        let log = Mutex::new(Vec::new());
        let (tx, rx) = std::sync::mpsc::channel();
        tx.send(a).unwrap_or_else(|e| panic!("{e}"));
        drop(tx);
        run(&fake, &rx, 8, &|active, _| {
            let mut ra = ra.lock().unwrap_or_else(|e| e.into_inner());
            let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
            while let Ok(e) = ra.try_recv() {
                log.push(format!("{e:?}"));
            }
            log.push(format!("active={active}"));
        });
        let log = log.into_inner().unwrap_or_else(|e| e.into_inner());
        let finished = drain(&mut ra.into_inner().unwrap_or_else(|e| e.into_inner()));
        assert!(
            matches!(finished[..], [Event::Finished { .. }]),
            "{finished:?} {log:?}"
        );
        assert_eq!(log.last().map(String::as_str), Some("active=0"), "{log:?}");
    }

    #[test]
    fn max_active_queues_the_rest() {
        let fake = Fake::default();
        let (a, _ra) = job("a", Some(2), Box::new(NoMeter));
        let (b, _rb) = job("b", Some(2), Box::new(NoMeter));
        run_all(&fake, vec![a, b], 1);
        assert_eq!(
            *fake.log.lock().unwrap_or_else(|e| e.into_inner()),
            ["a", "a", "b", "b"]
        );
    }

    #[test]
    fn a_dropped_receiver_cancels() {
        let fake = Fake {
            context: 1000,
            delay: std::time::Duration::from_millis(1),
            ..Fake::default()
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let (a, ra) = job("a", Some(500), Box::new(NoMeter));
        let (b, mut rb) = job("b", Some(5), Box::new(NoMeter));
        tx.send(a).unwrap_or_else(|e| panic!("{e}"));
        tx.send(b).unwrap_or_else(|e| panic!("{e}"));
        drop(tx);
        let log = fake.log.clone();
        let engine = std::thread::spawn(move || run(&fake, &rx, 8, &|_, _| {}));
        // Wait for b's second token, then hang up on a.
        let mut seen = 0;
        while seen < 3 {
            if let Some(Event::Started { .. } | Event::Token(_)) = rb.blocking_recv() {
                seen += 1;
            }
        }
        drop(ra);
        drain(&mut rb);
        engine.join().unwrap_or_else(|_| panic!("engine panicked"));
        let a_steps = log
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| *l == "a")
            .count();
        assert!(a_steps < 500, "a ran {a_steps} steps after its client left");
    }

    #[test]
    fn invalid_prompts_and_panics_fail_only_their_job() {
        let fake = Fake::default();
        let (long, mut r_long) = job("0123456789", Some(30), Box::new(NoMeter));
        let (empty, mut r_empty) = job("", Some(1), Box::new(NoMeter));
        let (boom, mut r_boom) = job("boom", Some(1), Box::new(NoMeter));
        let (ok, mut r_ok) = job("ok", None, Box::new(NoMeter));
        run_all(&fake, vec![long, empty, boom, ok], 8);
        match &drain(&mut r_long)[..] {
            [Event::Failed(JobError::Invalid { code, message, .. })] => {
                assert_eq!(*code, Some("context_length_exceeded"));
                assert!(
                    message.contains("40 tokens (10 in the prompt, 30 for the completion)"),
                    "{message}"
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            &drain(&mut r_empty)[..],
            [Event::Failed(JobError::Invalid {
                param: Some("prompt"),
                ..
            })]
        ));
        assert!(
            matches!(&drain(&mut r_boom)[..], [Event::Failed(JobError::Internal(m))] if m.contains("prefill exploded"))
        );
        // No max_tokens: the rest of the context.
        let ev = drain(&mut r_ok);
        assert_eq!(
            ev.last(),
            Some(&Event::Finished {
                finish: Finish::Length,
                prompt_tokens: 2,
                completion_tokens: 30
            })
        );
    }
}
