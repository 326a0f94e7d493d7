//! Sampling with a KV cache: temperature, top-p, a seed, stop sequences, streamed text deltas.
//!
//! A [`Generation`] is one sequence in flight: it owns its cache and advances one token per
//! [`Generation::step`], so a server can interleave many of them on one model.

use anyhow::bail;
use tch::{Kind, Tensor};

use crate::model::tokenizer::Tok;
use crate::model::{KvCache, Llama, Mode};

/// How to sample.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// The most tokens to generate.
    pub max_tokens: usize,
    /// 0 is greedy.
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of tokens whose probability reaches `top_p`.
    pub top_p: f64,
    /// Same seed, same prompt, same text.
    pub seed: Option<u64>,
    /// Generation ends before any of these strings; they are not returned.
    pub stop: Vec<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            max_tokens: 128,
            temperature: 1.0,
            top_p: 1.0,
            seed: None,
            stop: vec![],
        }
    }
}

/// Why a generation ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// End of sequence or a stop string.
    Stop,
    /// `max_tokens` reached.
    Length,
}

impl FinishReason {
    /// `stop` or `length`.
    pub fn as_str(&self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// A request the model cannot serve.
#[derive(Debug, thiserror::Error)]
pub enum InvalidRequest {
    /// Prompt plus `max_tokens` exceed the context window.
    #[error(
        "this model's maximum context length is {limit} tokens; the prompt has {prompt} and max_tokens asks for {max_tokens} more"
    )]
    ContextLength {
        limit: i64,
        prompt: usize,
        max_tokens: usize,
    },
    /// An out-of-range sampling parameter.
    #[error("{0}")]
    Parameter(String),
}

/// Why a generation could not start: the request (a client's mistake: the server answers 400)
/// or the model (the server's: 500).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The request cannot be served as asked.
    #[error(transparent)]
    Invalid(#[from] InvalidRequest),
    /// The model failed on a valid request.
    #[error("{0:#}")]
    Model(anyhow::Error),
}

/// A small deterministic generator (SplitMix64) so sampling never touches libtorch's global one.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// Seeded.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// Seeded from the clock and a counter.
    pub fn from_entropy() -> Self {
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Self(t ^ COUNTER.fetch_add(0x9E37_79B9_7F4A_7C15, std::sync::atomic::Ordering::Relaxed))
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Picks a token from one row of logits.
pub fn sample(logits: &[f32], temperature: f64, top_p: f64, rng: &mut Rng) -> usize {
    let argmax = || {
        logits
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &l)| {
                if l > best.1 { (i, l) } else { best }
            })
            .0
    };
    if temperature <= 0.0 {
        return argmax();
    }
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let mut probs: Vec<(usize, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, &l)| (i, ((l as f64 - max) / temperature).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    if !(total.is_finite() && total > 0.0) {
        return argmax();
    }
    probs.iter_mut().for_each(|p| p.1 /= total);
    if top_p < 1.0 {
        probs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut acc = 0.0;
        let mut keep = probs.len();
        for (n, p) in probs.iter().enumerate() {
            acc += p.1;
            if acc >= top_p {
                keep = n + 1;
                break;
            }
        }
        probs.truncate(keep);
        let kept: f64 = probs.iter().map(|p| p.1).sum();
        probs.iter_mut().for_each(|p| p.1 /= kept);
    }
    let u = rng.uniform();
    let mut acc = 0.0;
    for &(i, p) in &probs {
        acc += p;
        if u < acc {
            return i;
        }
    }
    probs.last().map_or_else(argmax, |p| p.0)
}

/// The length of the longest suffix of `text` that is a proper prefix of a stop string.
fn held_back(text: &str, stops: &[String]) -> usize {
    let mut best = 0;
    for s in stops {
        for (i, _) in s.char_indices().skip(1) {
            if i > best && text.ends_with(&s[..i]) {
                best = i;
            }
        }
    }
    best
}

/// One sequence being generated.
#[derive(Debug)]
pub struct Generation {
    cache: KvCache,
    next_logits: Vec<f32>,
    generated: Vec<i64>,
    prompt_tokens: usize,
    params: SamplingParams,
    rng: Rng,
    text: String,
    emitted: usize,
    finished: Option<FinishReason>,
    /// Incremental detokenization (as vLLM): `text` holds the decode of `generated[..read]`;
    /// the newest tokens are decoded together with those from `prefix` on, so each step costs
    /// a few tokens, not the whole sequence.
    prefix: usize,
    read: usize,
}

impl Generation {
    /// Checks the request and runs the prompt through the model (prefill).
    pub fn new(
        model: &Llama,
        prompt_ids: Vec<i64>,
        params: SamplingParams,
    ) -> Result<Self, StartError> {
        let limit = model.config.max_position_embeddings;
        if prompt_ids.is_empty() {
            return Err(InvalidRequest::Parameter("the prompt is empty".into()).into());
        }
        if prompt_ids.len() as i64 + params.max_tokens as i64 > limit {
            return Err(InvalidRequest::ContextLength {
                limit,
                prompt: prompt_ids.len(),
                max_tokens: params.max_tokens,
            }
            .into());
        }
        if !(0.0..=2.0).contains(&params.temperature) {
            return Err(InvalidRequest::Parameter(format!(
                "temperature must be between 0 and 2, got {}",
                params.temperature
            ))
            .into());
        }
        if !(params.top_p > 0.0 && params.top_p <= 1.0) {
            return Err(InvalidRequest::Parameter(format!(
                "top_p must be in (0, 1], got {}",
                params.top_p
            ))
            .into());
        }
        let vocab = model.config.vocab_size;
        if let Some(bad) = prompt_ids.iter().find(|&&i| i < 0 || i >= vocab) {
            return Err(InvalidRequest::Parameter(format!(
                "token id {bad} is outside the vocabulary (0..{vocab})"
            ))
            .into());
        }
        let mut cache = model.new_cache(1, prompt_ids.len() as i64 + params.max_tokens as i64);
        let ids = Tensor::from_slice(&prompt_ids)
            .unsqueeze(0)
            .to_device(model.device());
        let next_logits =
            tch::no_grad(|| last_logits(model, &ids, &mut cache)).map_err(StartError::Model)?;
        let rng = params.seed.map_or_else(Rng::from_entropy, Rng::new);
        Ok(Self {
            cache,
            next_logits,
            generated: vec![],
            prompt_tokens: prompt_ids.len(),
            params,
            rng,
            text: String::new(),
            emitted: 0,
            finished: None,
            prefix: 0,
            read: 0,
        })
    }

    /// Generates one token. `Some(delta)` is the newly final text (may be empty while a
    /// multi-byte character or a possible stop string is incomplete); `None` once finished.
    pub fn step(&mut self, model: &Llama, tok: &Tok) -> anyhow::Result<Option<String>> {
        if self.finished.is_some() {
            return Ok(None);
        }
        let id = sample(
            &self.next_logits,
            self.params.temperature,
            self.params.top_p,
            &mut self.rng,
        ) as i64;
        self.generated.push(id);
        if tok.eos_ids().contains(&id) {
            self.finished = Some(FinishReason::Stop);
            return Ok(Some(self.flush(self.text.len())));
        }
        let complete = self.detokenize(tok)?;
        let earliest_stop = self
            .params
            .stop
            .iter()
            .filter(|s| !s.is_empty())
            .filter_map(|s| self.text.find(s.as_str()))
            .min();
        if let Some(at) = earliest_stop {
            self.finished = Some(FinishReason::Stop);
            return Ok(Some(self.flush(at)));
        }
        if self.generated.len() >= self.params.max_tokens {
            self.finished = Some(FinishReason::Length);
            return Ok(Some(self.flush(self.text.len())));
        }
        let ids = Tensor::from_slice(&[id])
            .unsqueeze(0)
            .to_device(model.device());
        self.next_logits = tch::no_grad(|| last_logits(model, &ids, &mut self.cache))?;
        let safe = if complete {
            self.text.len() - held_back(&self.text, &self.params.stop)
        } else {
            self.emitted
        };
        Ok(Some(self.flush_upto(safe)))
    }

    /// Appends the text of the newest tokens; false while they end inside a character.
    fn detokenize(&mut self, tok: &Tok) -> anyhow::Result<bool> {
        let before = tok.decode(&self.generated[self.prefix..self.read])?;
        let after = tok.decode(&self.generated[self.prefix..])?;
        if after.ends_with('\u{FFFD}') {
            return Ok(false);
        }
        match after.strip_prefix(before.as_str()) {
            Some(new) => self.text.push_str(new),
            // A tokenizer whose decode is not prefix-stable here: decode everything once.
            None => self.text = tok.decode(&self.generated)?,
        }
        // Keep a few decoded tokens as context: decoders that treat the first token of a
        // sequence specially (SentencePiece's leading space) then see a mid-sequence window.
        self.read = self.generated.len();
        self.prefix = self.read.saturating_sub(4);
        Ok(true)
    }

    fn flush(&mut self, end: usize) -> String {
        self.text.truncate(end);
        self.flush_upto(end)
    }

    fn flush_upto(&mut self, end: usize) -> String {
        if end <= self.emitted {
            return String::new();
        }
        let delta = self.text[self.emitted..end].to_string();
        self.emitted = end;
        delta
    }

    /// Runs to the end; returns the text.
    pub fn run(mut self, model: &Llama, tok: &Tok) -> anyhow::Result<Completion> {
        while self.step(model, tok)?.is_some() {}
        Ok(self.into_completion())
    }

    /// The final result (call once finished).
    pub fn into_completion(self) -> Completion {
        Completion {
            text: self.text,
            token_ids: self.generated,
            prompt_tokens: self.prompt_tokens,
            finish_reason: self.finished.unwrap_or(FinishReason::Length),
        }
    }

    /// Why it ended, once it has.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finished
    }

    /// Tokens in the prompt.
    pub fn prompt_tokens(&self) -> usize {
        self.prompt_tokens
    }

    /// Tokens generated so far (an end-of-sequence token counts: it was generated).
    pub fn completion_tokens(&self) -> usize {
        self.generated.len()
    }

    /// The text so far (stop strings excluded).
    pub fn text(&self) -> &str {
        &self.text
    }
}

/// A finished generation.
#[derive(Debug, Clone, PartialEq)]
pub struct Completion {
    /// The text, without the stop string.
    pub text: String,
    /// Every generated id.
    pub token_ids: Vec<i64>,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Why it ended.
    pub finish_reason: FinishReason,
}

fn last_logits(model: &Llama, ids: &Tensor, cache: &mut KvCache) -> anyhow::Result<Vec<f32>> {
    let hidden = model.hidden(ids, Some(cache), Mode::EVAL);
    let t = hidden.size()[1];
    let last = model.logits(&hidden.narrow(1, t - 1, 1));
    Ok(Vec::<f32>::try_from(
        last.to_kind(Kind::Float)
            .to_device(tch::Device::Cpu)
            .flatten(0, -1),
    )?)
}

/// Greedy or sampled decoding of `batch` equal-length prompts at once (one cache for the
/// batch); returns the generated ids per row. No stop strings: used for benchmarks and bulk
/// sampling where each row runs to `max_tokens` or EOS.
pub fn generate_batch(
    model: &Llama,
    prompts: &[Vec<i64>],
    params: &SamplingParams,
    eos: &[i64],
) -> anyhow::Result<Vec<Vec<i64>>> {
    let Some(first) = prompts.first() else {
        return Ok(vec![]);
    };
    if prompts
        .iter()
        .any(|p| p.len() != first.len() || p.is_empty())
    {
        bail!("batched generation needs non-empty prompts of equal length");
    }
    let b = prompts.len() as i64;
    let flat: Vec<i64> = prompts.iter().flatten().copied().collect();
    let ids = Tensor::from_slice(&flat)
        .view([b, first.len() as i64])
        .to_device(model.device());
    let mut cache = model.new_cache(b, first.len() as i64 + params.max_tokens as i64);
    let mut rng = params.seed.map_or_else(Rng::from_entropy, Rng::new);
    let mut out = vec![Vec::new(); prompts.len()];
    let mut done = vec![false; prompts.len()];
    tch::no_grad(|| -> anyhow::Result<()> {
        let mut input = ids;
        for _ in 0..params.max_tokens {
            let hidden = model.hidden(&input, Some(&mut cache), Mode::EVAL);
            let t = hidden.size()[1];
            let logits = model
                .logits(&hidden.narrow(1, t - 1, 1))
                .to_kind(Kind::Float)
                .to_device(tch::Device::Cpu)
                .squeeze_dim(1);
            let vocab = logits.size()[1] as usize;
            let flat = Vec::<f32>::try_from(logits.flatten(0, -1))?;
            let mut next = Vec::with_capacity(prompts.len());
            for (row, chunk) in flat.chunks(vocab).enumerate() {
                let id = sample(chunk, params.temperature, params.top_p, &mut rng) as i64;
                if !done[row] {
                    out[row].push(id);
                    done[row] = eos.contains(&id);
                }
                next.push(id);
            }
            if done.iter().all(|d| *d) {
                break;
            }
            input = Tensor::from_slice(&next)
                .view([b, 1])
                .to_device(model.device());
        }
        Ok(())
    })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_takes_the_argmax_and_top_p_cuts_the_tail() {
        let mut rng = Rng::new(1);
        assert_eq!(sample(&[0.1, 3.0, -1.0], 0.0, 1.0, &mut rng), 1);
        // With top_p small only the most likely token survives.
        for _ in 0..50 {
            assert_eq!(sample(&[0.0, 2.0, 1.9], 1.0, 0.01, &mut rng), 1);
        }
        // Full sampling reaches the others.
        let seen: std::collections::HashSet<usize> = (0..200)
            .map(|_| sample(&[0.0, 0.0, 0.0], 1.0, 1.0, &mut rng))
            .collect();
        assert_eq!(seen.len(), 3);
    }

    #[test]
    fn same_seed_same_draws() {
        let a: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(9);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..4)
            .map({
                let mut r = Rng::new(9);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
    }

    #[test]
    fn holds_back_possible_stop_prefixes() {
        let stops = vec!["\n\nUser:".to_string(), "END".to_string()];
        assert_eq!(held_back("hello\n\nUs", &stops), 4);
        assert_eq!(held_back("hello E", &stops), 1);
        assert_eq!(held_back("hello", &stops), 0);
    }
}
