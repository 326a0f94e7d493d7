//! The Llama behind the engine: [`crate::model::generate::Generation`] driven one step at a time.

use std::path::Path;

use super::engine::{Backend, Finish, JobError, Prompt, Sampling};
use crate::model::Llama;
use crate::model::generate::{
    FinishReason, Generation, InvalidRequest, SamplingParams, StartError,
};
use crate::model::tokenizer::{ChatMessage, Tok};

/// A loaded model and its tokenizer; lives on the engine thread.
#[derive(Debug)]
pub struct LlamaBackend {
    model: Llama,
    tok: Tok,
}

/// Loads a model directory (a full model, or LoRA adapters on their base) onto `device`.
pub fn load(dir: &Path, device: tch::Device) -> anyhow::Result<LlamaBackend> {
    let (model, tok) = crate::train::eval::load_any(dir, device)?;
    Ok(LlamaBackend { model, tok })
}

/// A request the model refuses is the client's (400, with OpenAI's code for an overlong
/// context); a model that fails is the server's (500).
fn invalid(e: StartError) -> JobError {
    match e {
        StartError::Invalid(i @ InvalidRequest::ContextLength { .. }) => JobError::Invalid {
            message: i.to_string(),
            param: None,
            code: Some("context_length_exceeded"),
        },
        StartError::Invalid(InvalidRequest::Parameter(m)) => JobError::Invalid {
            message: m,
            param: None,
            code: None,
        },
        StartError::Model(e) => JobError::Internal(format!("{e:#}")),
    }
}

impl Backend for LlamaBackend {
    type Gen = Generation;

    fn context_length(&self) -> usize {
        usize::try_from(self.model.config.max_position_embeddings).unwrap_or(0)
    }

    fn encode(&self, prompt: &Prompt) -> Result<Vec<i64>, JobError> {
        let internal = |e: anyhow::Error| JobError::Internal(format!("tokenizing: {e:#}"));
        match prompt {
            Prompt::Text(text) => self.tok.encode(text, true).map_err(internal),
            Prompt::Tokens(ids) => {
                let vocab = self.model.config.vocab_size;
                match ids.iter().find(|&&i| i < 0 || i >= vocab) {
                    Some(bad) => Err(JobError::Invalid {
                        message: format!("token id {bad} is outside the vocabulary (0..{vocab})"),
                        param: Some("prompt"),
                        code: None,
                    }),
                    None => Ok(ids.clone()),
                }
            }
            Prompt::Chat(turns) => {
                if !self.tok.has_chat_template() {
                    return Err(JobError::Invalid {
                        message: "this model has no chat template (tokenizer_config.json chat_template); use /v1/completions".into(),
                        param: Some("messages"),
                        code: None,
                    });
                }
                let messages: Vec<ChatMessage> = turns
                    .iter()
                    .map(|t| ChatMessage {
                        role: t.role.clone(),
                        content: t.content.clone(),
                    })
                    .collect();
                self.tok
                    .encode_chat(&messages, true)
                    .map_err(|e| JobError::Invalid {
                        message: format!("{e:#}"),
                        param: Some("messages"),
                        code: None,
                    })
            }
        }
    }

    fn start(
        &self,
        prompt_ids: Vec<i64>,
        sampling: &Sampling,
        max_tokens: usize,
    ) -> Result<Generation, JobError> {
        let params = SamplingParams {
            max_tokens,
            temperature: sampling.temperature,
            top_p: sampling.top_p,
            seed: sampling.seed,
            stop: sampling.stop.clone(),
        };
        Generation::new(&self.model, prompt_ids, params).map_err(invalid)
    }

    fn step(&self, generation: &mut Generation) -> anyhow::Result<Option<String>> {
        generation.step(&self.model, &self.tok)
    }

    fn finish(&self, generation: &Generation) -> Finish {
        match generation.finish_reason() {
            Some(FinishReason::Stop) => Finish::Stop,
            Some(FinishReason::Length) | None => Finish::Length,
        }
    }
}
