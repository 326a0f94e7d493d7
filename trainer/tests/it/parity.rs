//! Logits parity with Hugging Face `transformers` on tiny random Llama configs this test
//! creates (no download): grouped-query attention, tied embeddings, Llama 3 and linear RoPE
//! scaling. Also: the KV-cache decode path gives the same logits as the full pass, and the
//! tokenizer and chat template match `AutoTokenizer`.

use modelcommons_trainer::model::init::TinyLlama;
use modelcommons_trainer::model::tokenizer::{ChatMessage, Tok};
use modelcommons_trainer::model::{Llama, Mode};
use tch::{Device, Kind, Tensor};

/// Largest |ours − transformers| allowed on logits of magnitude ~1–10 (f32, CPU).
const TOLERANCE: f64 = 2e-4;

fn configs() -> Vec<(&'static str, TinyLlama)> {
    let base = TinyLlama {
        init_std: 0.25,
        max_position_embeddings: 256,
        ..TinyLlama::default()
    };
    vec![
        (
            "gqa 4:1, untied, llama3 rope scaling",
            TinyLlama {
                hidden_size: 64,
                num_attention_heads: 8,
                num_key_value_heads: 2,
                num_hidden_layers: 3,
                rope_theta: 500000.0,
                rope_scaling: Some(serde_json::json!({"rope_type": "llama3", "factor": 8.0,
                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                    "original_max_position_embeddings": 16})),
                ..base.clone()
            },
        ),
        (
            "tied embeddings, gqa 2:1",
            TinyLlama {
                tie_word_embeddings: true,
                ..base.clone()
            },
        ),
        (
            "multi-head (1:1), linear rope scaling",
            TinyLlama {
                num_key_value_heads: 4,
                rope_scaling: Some(serde_json::json!({"rope_type": "linear", "factor": 4.0})),
                ..base
            },
        ),
    ]
}

#[test]
fn logits_match_transformers_on_three_configs() {
    let python = crate::common::python();
    let text = "Total: 12+30=42. Ünïcode ✓";
    let messages = vec![
        ChatMessage {
            role: "system".into(),
            content: "You review contracts.".into(),
        },
        ChatMessage {
            role: "user".into(),
            content: "Is clause 4 enforceable?".into(),
        },
    ];
    for (name, cfg) in configs() {
        let dir = tempfile::tempdir().unwrap();
        cfg.write(dir.path(), 11).unwrap();
        let model = Llama::load(dir.path(), Device::Cpu, Kind::Float).unwrap();
        let tok = Tok::load(dir.path(), &model.config.eos_token_ids).unwrap();
        // Two rows of 48 ids drawn over the whole vocabulary.
        let ids: Vec<Vec<i64>> = (0..2)
            .map(|r| {
                (0..48)
                    .map(|i| (i * 37 + r * 101 + 5) % cfg.vocab_size)
                    .collect()
            })
            .collect();
        let input = dir.path().join("in.json");
        let output = dir.path().join("out.json");
        std::fs::write(
            &input,
            serde_json::json!({"ids": ids, "text": text, "messages": messages}).to_string(),
        )
        .unwrap();
        let run = std::process::Command::new(&python)
            .arg(crate::common::reference_py())
            .args([
                "logits",
                dir.path().to_str().unwrap(),
                input.to_str().unwrap(),
                output.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{name}: transformers failed:\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let hf: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&output).unwrap()).unwrap();
        let theirs: Vec<f32> = serde_json::from_value(hf["logits"].clone()).unwrap();

        let flat: Vec<i64> = ids.iter().flatten().copied().collect();
        let input_ids = Tensor::from_slice(&flat).view([2, 48]);
        let ours_t = tch::no_grad(|| model.forward(&input_ids, None, Mode::EVAL));
        assert_eq!(ours_t.size(), vec![2, 48, cfg.vocab_size]);
        let ours: Vec<f32> = Vec::try_from(ours_t.flatten(0, -1)).unwrap();
        assert_eq!(ours.len(), theirs.len());
        let max_diff = ours
            .iter()
            .zip(&theirs)
            .map(|(a, b)| (a - b).abs() as f64)
            .fold(0.0, f64::max);
        let scale = theirs.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        println!("{name}: max |Δlogit| = {max_diff:.2e} (max |logit| {scale:.2})");
        assert!(
            scale > 0.5,
            "{name}: logits too small for the comparison to mean anything"
        );
        assert!(
            max_diff < TOLERANCE,
            "{name}: logits differ from transformers by {max_diff}"
        );

        // The KV-cache path: prefill 20 tokens, then decode one at a time.
        let row: Vec<i64> = ids[0].clone();
        let mut cache = model.new_cache(1, 8);
        let mut decoded = Vec::new();
        tch::no_grad(|| {
            let prefix = Tensor::from_slice(&row[..20]).view([1, 20]);
            decoded.push(model.forward(&prefix, Some(&mut cache), Mode::EVAL));
            for t in 20..48 {
                let one = Tensor::from_slice(&row[t..t + 1]).view([1, 1]);
                decoded.push(model.forward(&one, Some(&mut cache), Mode::EVAL));
            }
        });
        let cached = Tensor::cat(&decoded, 1);
        let full = ours_t.narrow(0, 0, 1);
        let cache_diff = (cached - full).abs().max().double_value(&[]);
        assert!(
            cache_diff < 1e-4,
            "{name}: cached decode differs by {cache_diff}"
        );

        let hf_ids: Vec<i64> = serde_json::from_value(hf["encoded"].clone()).unwrap();
        assert_eq!(
            tok.encode(text, true).unwrap(),
            hf_ids,
            "{name}: tokenizer differs"
        );
        assert_eq!(
            tok.render_chat(&messages, true).unwrap(),
            hf["chat"].as_str().unwrap(),
            "{name}: chat template differs"
        );
    }
}
