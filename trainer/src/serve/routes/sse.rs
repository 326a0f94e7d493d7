//! A generation streamed as OpenAI chunks in server-sent events.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::body::{Bytes, HttpBody};
use tokio::sync::mpsc::UnboundedReceiver;

use super::generate::engine_stopped;
use crate::serve::api::{ApiError, Endpoint, Header, Usage};
use crate::serve::engine::Event;

/// A stream of OpenAI chunks as server-sent events, fed by the engine. Dropping it (the
/// client hung up) drops the receiver, which cancels the generation.
pub(super) struct SseBody {
    header: Header,
    rx: UnboundedReceiver<Event>,
    include_usage: bool,
    pending: VecDeque<Bytes>,
    done: bool,
}

impl SseBody {
    pub(super) fn new(header: Header, rx: UnboundedReceiver<Event>, include_usage: bool) -> Self {
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
