//! Training and evaluation data: JSONL in the shapes `transformers`/TRL users already have.
//!
//! - `{"text": …}`: plain language modelling, loss on every token;
//! - `{"prompt": …, "completion": …}`: loss on the completion only (the prompt is masked);
//! - `{"messages": [{"role", "content"}, …]}`: rendered with the chat template, loss on the
//!   last assistant message only;
//! - `{"prompt", "chosen", "rejected"}`: preference pairs for DPO.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;
use tch::{Device, Kind, Tensor};

use crate::model::tokenizer::{ChatMessage, Tok};

/// Label value the loss ignores.
pub const IGNORE: i64 = -100;

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Line {
    Pair {
        prompt: String,
        chosen: String,
        rejected: String,
    },
    PromptCompletion {
        prompt: String,
        completion: String,
    },
    Chat {
        messages: Vec<ChatMessage>,
    },
    Text {
        text: String,
    },
}

/// One supervised example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// Input ids.
    pub ids: Vec<i64>,
    /// Per-position labels (`IGNORE` where no loss is taken), aligned with `ids`.
    pub labels: Vec<i64>,
    /// The prompt's ids and the expected answer, when the example has them (for exact match).
    pub prompt_answer: Option<(Vec<i64>, String)>,
}

/// One preference pair.
#[derive(Debug, Clone, PartialEq)]
pub struct Pair {
    /// Prompt ids (with BOS).
    pub prompt: Vec<i64>,
    /// Chosen response ids (with EOS).
    pub chosen: Vec<i64>,
    /// Rejected response ids (with EOS).
    pub rejected: Vec<i64>,
}

fn lines(path: &Path) -> anyhow::Result<Vec<(usize, Line)>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let parsed: Line = serde_json::from_str(line).with_context(|| {
            format!(
                "{}:{}: expected a JSON object with `text`, `prompt`+`completion`, `messages`, or `prompt`+`chosen`+`rejected`",
                path.display(),
                n + 1
            )
        })?;
        out.push((n + 1, parsed));
    }
    if out.is_empty() {
        bail!("{} has no examples", path.display());
    }
    Ok(out)
}

fn eos(tok: &Tok) -> Vec<i64> {
    tok.eos_ids().first().map(|&e| vec![e]).unwrap_or_default()
}

fn supervised(prompt: Vec<i64>, answer: Vec<i64>, max_len: usize) -> (Vec<i64>, Vec<i64>) {
    let labels: Vec<i64> = std::iter::repeat_n(IGNORE, prompt.len())
        .chain(answer.iter().copied())
        .collect();
    let mut ids = prompt;
    ids.extend(answer);
    ids.truncate(max_len);
    let mut labels = labels;
    labels.truncate(max_len);
    (ids, labels)
}

/// Reads supervised examples, truncated to `max_len` tokens.
pub fn load_sft(path: &Path, tok: &Tok, max_len: usize) -> anyhow::Result<Vec<Example>> {
    let mut out = Vec::new();
    for (n, line) in lines(path)? {
        let ex = match line {
            Line::Text { text } => {
                let mut ids = tok.encode(&text, true)?;
                ids.extend(eos(tok));
                ids.truncate(max_len);
                Example {
                    labels: ids.clone(),
                    ids,
                    prompt_answer: None,
                }
            }
            Line::PromptCompletion { prompt, completion } => {
                let p = tok.encode(&prompt, true)?;
                let mut c = tok.encode(&completion, false)?;
                c.extend(eos(tok));
                let (ids, labels) = supervised(p.clone(), c, max_len);
                Example {
                    ids,
                    labels,
                    prompt_answer: Some((p, completion)),
                }
            }
            Line::Chat { messages } => {
                let Some((last, history)) = messages.split_last() else {
                    bail!("{}:{n}: `messages` is empty", path.display());
                };
                if last.role != "assistant" {
                    bail!(
                        "{}:{n}: the last message must be the assistant's (the loss is taken on it)",
                        path.display()
                    );
                }
                let prompt = tok.render_chat(history, true)?;
                let p = tok.encode(&prompt, false)?;
                let mut c = tok.encode(last.content.trim(), false)?;
                c.extend(eos(tok));
                let (ids, labels) = supervised(p.clone(), c, max_len);
                Example {
                    ids,
                    labels,
                    prompt_answer: Some((p, last.content.trim().to_string())),
                }
            }
            Line::Pair { .. } => bail!(
                "{}:{n}: a preference pair (prompt/chosen/rejected) in SFT data; use `dpo`",
                path.display()
            ),
        };
        if ex.labels.iter().all(|&l| l == IGNORE) {
            bail!(
                "{}:{n}: nothing left to learn after truncation to {max_len} tokens (raise --max-seq-len)",
                path.display()
            );
        }
        out.push(ex);
    }
    Ok(out)
}

/// Reads preference pairs.
pub fn load_pairs(path: &Path, tok: &Tok, max_len: usize) -> anyhow::Result<Vec<Pair>> {
    let mut out = Vec::new();
    for (n, line) in lines(path)? {
        let Line::Pair {
            prompt,
            chosen,
            rejected,
        } = line
        else {
            bail!(
                "{}:{n}: DPO needs `prompt`, `chosen` and `rejected`",
                path.display()
            );
        };
        let p = tok.encode(&prompt, true)?;
        let mut c = tok.encode(&chosen, false)?;
        c.extend(eos(tok));
        let mut r = tok.encode(&rejected, false)?;
        r.extend(eos(tok));
        if p.len() + c.len().max(r.len()) > max_len {
            bail!(
                "{}:{n}: the pair is longer than --max-seq-len {max_len}",
                path.display()
            );
        }
        out.push(Pair {
            prompt: p,
            chosen: c,
            rejected: r,
        });
    }
    Ok(out)
}

/// A padded batch on a device.
#[derive(Debug)]
pub struct Batch {
    /// [batch, len] ids (right-padded).
    pub ids: Tensor,
    /// [batch, len] labels, `IGNORE` on padding.
    pub labels: Tensor,
    /// Tokens that carry loss.
    pub label_tokens: i64,
    /// All non-padding tokens.
    pub tokens: i64,
}

/// Pads `rows` (ids, labels) to one length.
pub fn collate(rows: &[(&[i64], &[i64])], pad: i64, device: Device) -> Batch {
    let len = rows.iter().map(|r| r.0.len()).max().unwrap_or(1).max(1);
    let mut ids = Vec::with_capacity(rows.len() * len);
    let mut labels = Vec::with_capacity(rows.len() * len);
    let mut tokens = 0;
    for (i, l) in rows {
        tokens += i.len() as i64;
        ids.extend_from_slice(i);
        ids.extend(std::iter::repeat_n(pad, len - i.len()));
        labels.extend_from_slice(l);
        labels.extend(std::iter::repeat_n(IGNORE, len - l.len()));
    }
    let label_tokens = labels.iter().filter(|&&l| l != IGNORE).count() as i64;
    let shape = [rows.len() as i64, len as i64];
    Batch {
        ids: Tensor::from_slice(&ids).view(shape).to_device(device),
        labels: Tensor::from_slice(&labels).view(shape).to_device(device),
        label_tokens,
        tokens,
    }
}

/// Mean next-token cross-entropy over labelled positions (logits [b, t, v], labels [b, t]).
pub fn lm_loss(logits: &Tensor, labels: &Tensor) -> Tensor {
    let v = logits.size()[2];
    let t = logits.size()[1];
    let shifted = logits
        .narrow(1, 0, t - 1)
        .to_kind(Kind::Float)
        .reshape([-1, v]);
    let targets = labels.narrow(1, 1, t - 1).reshape([-1]);
    shifted.cross_entropy_loss::<Tensor>(&targets, None, tch::Reduction::Mean, IGNORE, 0.0)
}

/// Per-row sum of log-probabilities of the labelled tokens (for DPO).
pub fn sequence_logprobs(logits: &Tensor, labels: &Tensor) -> Tensor {
    let t = logits.size()[1];
    let lp = logits
        .narrow(1, 0, t - 1)
        .to_kind(Kind::Float)
        .log_softmax(-1, Kind::Float);
    let targets = labels.narrow(1, 1, t - 1);
    let mask = targets.ne(IGNORE);
    let safe = targets.where_self(&mask, &targets.zeros_like());
    let picked = lp.gather(2, &safe.unsqueeze(-1), false).squeeze_dim(-1);
    (picked * mask.to_kind(Kind::Float)).sum_dim_intlist(1, false, Kind::Float)
}
