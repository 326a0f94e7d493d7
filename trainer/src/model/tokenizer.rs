//! The tokenizer (`tokenizer.json`, Hugging Face `tokenizers`) and the chat template
//! (`tokenizer_config.json`'s `chat_template`, rendered with minijinja like `transformers`'
//! `apply_chat_template`).

use std::path::Path;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The text.
    pub content: String,
}

/// A loaded tokenizer.
#[derive(Debug)]
pub struct Tok {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos_token: String,
    eos_token: String,
    eos_ids: Vec<i64>,
    pad_id: i64,
}

fn token_string(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

impl Tok {
    /// Loads `tokenizer.json` and, when present, `tokenizer_config.json` from `dir`;
    /// `extra_eos` adds the config's `eos_token_id`s.
    pub fn load(dir: &Path, extra_eos: &[i64]) -> anyhow::Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            bail!("{} has no tokenizer.json", dir.display());
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", path.display()))?;
        let cfg_path = dir.join("tokenizer_config.json");
        let cfg: serde_json::Value = if cfg_path.exists() {
            let text = std::fs::read_to_string(&cfg_path)
                .with_context(|| format!("reading {}", cfg_path.display()))?;
            serde_json::from_str(&text)
                .with_context(|| format!("{} is not JSON", cfg_path.display()))?
        } else {
            serde_json::Value::Null
        };
        let bos_token = token_string(cfg.get("bos_token")).unwrap_or_default();
        let eos_token = token_string(cfg.get("eos_token")).unwrap_or_default();
        let chat_template = match cfg.get("chat_template") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            // A list of named templates: take `default`.
            Some(serde_json::Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(|n| n.as_str()) == Some("default"))
                .and_then(|t| t.get("template")?.as_str().map(str::to_string)),
            _ => None,
        };
        let chat_template =
            chat_template.or_else(|| std::fs::read_to_string(dir.join("chat_template.jinja")).ok());
        let mut eos_ids: Vec<i64> = extra_eos.to_vec();
        if let Some(id) = inner.token_to_id(&eos_token) {
            eos_ids.push(i64::from(id));
        }
        eos_ids.sort_unstable();
        eos_ids.dedup();
        let pad_id = token_string(cfg.get("pad_token"))
            .and_then(|p| inner.token_to_id(&p))
            .map(i64::from)
            .or(eos_ids.first().copied())
            .unwrap_or(0);
        Ok(Self {
            inner,
            chat_template,
            bos_token,
            eos_token,
            eos_ids,
            pad_id,
        })
    }

    /// Token ids of `text`; `add_special` applies the tokenizer's post-processor (e.g. BOS).
    pub fn encode(&self, text: &str, add_special: bool) -> anyhow::Result<Vec<i64>> {
        let enc = self
            .inner
            .encode(text, add_special)
            .map_err(|e| anyhow::anyhow!("tokenizing: {e}"))?;
        Ok(enc.get_ids().iter().map(|&i| i64::from(i)).collect())
    }

    /// Text of `ids` (special tokens skipped).
    pub fn decode(&self, ids: &[i64]) -> anyhow::Result<String> {
        let ids: Vec<u32> = ids.iter().filter_map(|&i| u32::try_from(i).ok()).collect();
        self.inner
            .decode(&ids, true)
            .map_err(|e| anyhow::anyhow!("detokenizing: {e}"))
    }

    /// Ids that end a generation.
    pub fn eos_ids(&self) -> &[i64] {
        &self.eos_ids
    }

    /// The id used to pad batches.
    pub fn pad_id(&self) -> i64 {
        self.pad_id
    }

    /// The vocabulary size, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    /// Whether a chat template is available.
    pub fn has_chat_template(&self) -> bool {
        self.chat_template.is_some()
    }

    /// Renders `messages` with the chat template (as `apply_chat_template(tokenize=False)`).
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> anyhow::Result<String> {
        let Some(template) = &self.chat_template else {
            bail!("this model has no chat template (tokenizer_config.json chat_template)");
        };
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function(
            "raise_exception",
            |msg: String| -> Result<String, minijinja::Error> {
                Err(minijinja::Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    msg,
                ))
            },
        );
        env.add_template("chat", template)
            .context("the chat template does not parse")?;
        let t = env.get_template("chat")?;
        t.render(minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        })
        .context("rendering the chat template")
    }

    /// Renders and tokenizes a chat (no extra special tokens: the template carries them).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> anyhow::Result<Vec<i64>> {
        self.encode(&self.render_chat(messages, add_generation_prompt)?, false)
    }
}

/// GPT-2's printable stand-ins for the 256 byte values (the ByteLevel pre-tokenizer alphabet).
pub fn byte_alphabet() -> Vec<char> {
    let mut printable: Vec<u32> = ('!' as u32..='~' as u32)
        .chain('¡' as u32..='¬' as u32)
        .chain('®' as u32..='ÿ' as u32)
        .collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut n = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + n);
            n += 1;
        }
    }
    let mut pairs: Vec<(u32, u32)> = printable.into_iter().zip(chars).collect();
    pairs.sort_unstable();
    pairs
        .into_iter()
        .map(|(_, c)| char::from_u32(c).unwrap_or('?'))
        .collect()
}

/// The special tokens of the byte-level tokenizer `init` writes.
pub const SPECIALS: [&str; 3] = ["<unk>", "<s>", "</s>"];

/// A Zephyr-style chat template for the tokenizer `init` writes.
pub const INIT_CHAT_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] | trim }}{{ eos_token }}\n{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}";

/// `tokenizer.json` of a byte-level tokenizer: ids 0–2 are `<unk>`, `<s>`, `</s>`, ids 3–258
/// the bytes; BOS is prepended by the post-processor (as Llama 3's).
pub fn byte_level_tokenizer_json() -> serde_json::Value {
    let mut vocab = serde_json::Map::new();
    for (i, s) in SPECIALS.iter().enumerate() {
        vocab.insert((*s).to_string(), serde_json::json!(i));
    }
    for (i, c) in byte_alphabet().into_iter().enumerate() {
        vocab.insert(c.to_string(), serde_json::json!(i + SPECIALS.len()));
    }
    let added: Vec<serde_json::Value> = SPECIALS
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({"id": i, "content": s, "single_word": false, "lstrip": false,
                "rstrip": false, "normalized": false, "special": true})
        })
        .collect();
    let byte_level = serde_json::json!({"type": "ByteLevel", "add_prefix_space": false,
        "trim_offsets": true, "use_regex": true});
    serde_json::json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": added,
        "normalizer": null,
        "pre_tokenizer": byte_level,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                     {"SpecialToken": {"id": "<s>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "decoder": byte_level,
        "model": {
            "type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
            "ignore_merges": false, "vocab": vocab, "merges": []
        }
    })
}

/// `tokenizer_config.json` to go with [`byte_level_tokenizer_json`].
pub fn byte_level_tokenizer_config() -> serde_json::Value {
    serde_json::json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "</s>",
        "add_bos_token": true,
        "model_max_length": 512,
        "chat_template": INIT_CHAT_TEMPLATE,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_tok(dir: &Path) {
        std::fs::write(
            dir.join("tokenizer.json"),
            byte_level_tokenizer_json().to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            byte_level_tokenizer_config().to_string(),
        )
        .unwrap();
    }

    #[test]
    fn byte_level_round_trips_any_utf8_one_token_per_byte() {
        assert_eq!(byte_alphabet().len(), 256);
        let d = tempfile::tempdir().unwrap();
        write_tok(d.path());
        let t = Tok::load(d.path(), &[]).unwrap();
        let text = "12+7=19 héllo, wörld ✓";
        let ids = t.encode(text, true).unwrap();
        assert_eq!(ids[0], 1, "BOS first");
        assert_eq!(ids.len(), 1 + text.len(), "one token per byte");
        assert_eq!(t.decode(&ids).unwrap(), text);
        assert_eq!(t.eos_ids(), &[2]);
        assert_eq!(t.vocab_size(), 259);
    }

    #[test]
    fn chat_template_renders_like_transformers() {
        let d = tempfile::tempdir().unwrap();
        write_tok(d.path());
        let t = Tok::load(d.path(), &[]).unwrap();
        let msgs = vec![
            ChatMessage {
                role: "system".into(),
                content: "Be brief. ".into(),
            },
            ChatMessage {
                role: "user".into(),
                content: "2+2?".into(),
            },
        ];
        assert_eq!(
            t.render_chat(&msgs, true).unwrap(),
            "<s><|system|>\nBe brief.</s>\n<|user|>\n2+2?</s>\n<|assistant|>\n"
        );
        let ids = t.encode_chat(&msgs, false).unwrap();
        assert_eq!(
            ids.iter().filter(|&&i| i == 2).count(),
            2,
            "</s> is one special token"
        );
        assert_eq!(ids[0], 1);
    }
}
