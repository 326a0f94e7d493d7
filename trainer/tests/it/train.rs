//! `train`, `eval` and `dpo` end to end, as the binary a pod runs: a tiny random Llama learns a
//! clause-risk labelling task (full and LoRA), survives a SIGKILL mid-run, and DPO widens the
//! chosen-over-rejected margin on held-out pairs.

use crate::common::{Workspace, json, run_ok};

/// Exact match the fine-tuned model must reach on held-out clauses (the base scores 0).
const EXACT_MATCH: f64 = 0.9;
/// Final-loss difference allowed between a killed-and-resumed run and an uninterrupted one.
const RESUME_TOLERANCE: f64 = 1e-4;

fn eval(ws: &Workspace, model: &str) -> serde_json::Value {
    eval_with(ws, model, &[])
}

/// `eval` of `model` on the held-out clauses, with `extra` flags.
fn eval_with(ws: &Workspace, model: &str, extra: &[&str]) -> serde_json::Value {
    let out = crate::common::trainer()
        .args([
            "eval",
            "--model",
            ws.path(model).to_str().unwrap(),
            "--data",
            ws.path("eval.jsonl").to_str().unwrap(),
            "--device",
            "cpu",
        ])
        .args(extra)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn full_fine_tuning_learns_the_task() {
    let ws = Workspace::new();
    let before = eval(&ws, "base");
    assert_eq!(before["metrics"]["exactMatch"], 0.0);
    let mut args = ws.train_args("full");
    args.extend(["--method", "full", "--lr", "3e-3", "--max-steps", "150"].map(String::from));
    run_ok(&args);
    let r = json(&ws.path("full/result.json"));
    let (loss0, loss1) = (
        before["metrics"]["loss"].as_f64().unwrap(),
        r["metrics"]["loss"].as_f64().unwrap(),
    );
    println!(
        "full: eval loss {loss0:.3} -> {loss1:.3}, exact match {}",
        r["metrics"]["exactMatch"]
    );
    assert!(loss1 < loss0 / 4.0, "eval loss {loss0} -> {loss1}");
    assert!(
        r["metrics"]["exactMatch"].as_f64().unwrap() >= EXACT_MATCH,
        "{r}"
    );
    assert_eq!(
        r["digest"],
        modelcommons_trainer::train::file_digest(&ws.path("full/model.safetensors")).unwrap()
    );
    assert_ne!(r["digest"], r["baseDigest"]);
    // `eval` of the output agrees, and judges targets with their direction (exit 3 on a miss).
    let again = eval(&ws, "full");
    assert_eq!(again["metrics"]["exactMatch"], r["metrics"]["exactMatch"]);
    let missed = crate::common::trainer()
        .args([
            "eval",
            "--model",
            ws.path("full").to_str().unwrap(),
            "--data",
            ws.path("eval.jsonl").to_str().unwrap(),
            "--device",
            "cpu",
            "--target",
            "exactMatch>=0.5",
            "--target",
            "loss<=0.000001",
        ])
        .output()
        .unwrap();
    assert_eq!(missed.status.code(), Some(3));
    let v: serde_json::Value = serde_json::from_slice(&missed.stdout).unwrap();
    assert_eq!(v["targets"][0]["met"], true);
    assert_eq!(v["targets"][1]["met"], false);
    assert_eq!(v["targetsMet"], false);
}

#[test]
fn lora_trains_adapters_only_and_leaves_the_base_untouched() {
    let ws = Workspace::new();
    let base_digest =
        modelcommons_trainer::train::file_digest(&ws.path("base/model.safetensors")).unwrap();
    let before = eval(&ws, "base");
    let mut args = ws.train_args("lora");
    args.extend(
        [
            "--method",
            "lora",
            "--lora-r",
            "16",
            "--lora-alpha",
            "32",
            "--lr",
            "1e-2",
            "--max-steps",
            "120",
            "--lora-targets",
            "q_proj,k_proj,v_proj,o_proj",
        ]
        .map(String::from),
    );
    run_ok(&args);
    let r = json(&ws.path("lora/result.json"));
    assert_eq!(
        modelcommons_trainer::train::file_digest(&ws.path("base/model.safetensors")).unwrap(),
        base_digest
    );
    assert_eq!(r["baseDigest"], base_digest);
    assert!(
        !ws.path("lora/model.safetensors").exists(),
        "LoRA writes adapters, not a model"
    );
    let adapters =
        tch::Tensor::read_safetensors(ws.path("lora/adapter_model.safetensors")).unwrap();
    assert_eq!(
        adapters.len(),
        2 * 4 * 2,
        "A and B for 4 projections in 2 layers"
    );
    assert!(
        adapters
            .iter()
            .all(|(n, _)| n.starts_with("base_model.model.model.layers.") && n.contains(".lora_"))
    );
    let cfg = json(&ws.path("lora/adapter_config.json"));
    assert_eq!(
        (cfg["peft_type"].as_str(), cfg["r"].as_i64()),
        (Some("LORA"), Some(16))
    );
    assert!(r["trainableParameters"].as_i64().unwrap() < 20_000);
    let (loss0, loss1) = (
        before["metrics"]["loss"].as_f64().unwrap(),
        r["metrics"]["loss"].as_f64().unwrap(),
    );
    println!(
        "lora: eval loss {loss0:.3} -> {loss1:.3}, exact match {}",
        r["metrics"]["exactMatch"]
    );
    assert!(loss1 < loss0, "eval loss {loss0} -> {loss1}");
    assert!(
        r["metrics"]["exactMatch"].as_f64().unwrap() >= EXACT_MATCH,
        "{r}"
    );
    // The adapter directory loads on its base for eval.
    let honest = eval(&ws, "lora");
    assert_eq!(honest["metrics"]["exactMatch"], r["metrics"]["exactMatch"]);
    // Whoever writes the output also writes adapter_config.json, which names the base: with
    // `--baseline` (the base the job names, as the operator's evaluation runs it) the adapters
    // are judged on that base, not on the one the config names.
    let other = ws.path("other");
    run_ok(&["init", "--out", other.to_str().unwrap(), "--seed", "8"].map(String::from));
    let mut cfg = json(&ws.path("lora/adapter_config.json"));
    cfg["base_model_name_or_path"] = serde_json::json!(other.to_str().unwrap());
    std::fs::write(ws.path("lora/adapter_config.json"), cfg.to_string()).unwrap();
    let misled = eval(&ws, "lora");
    let base = ws.path("base");
    let judged = eval_with(&ws, "lora", &["--baseline", base.to_str().unwrap()]);
    assert_eq!(
        judged["metrics"], honest["metrics"],
        "judged on the named base"
    );
    assert_ne!(misled["metrics"]["loss"], judged["metrics"]["loss"]);
    assert_eq!(judged["baseline"]["modelDigest"], base_digest);
}

#[test]
fn killed_mid_run_resumes_and_ends_where_an_uninterrupted_run_ends() {
    let ws = Workspace::new();
    let flags = [
        "--method",
        "full",
        "--lr",
        "3e-3",
        "--max-steps",
        "120",
        "--checkpoint-every",
        "10",
    ]
    .map(String::from);
    let mut straight = ws.train_args("straight");
    straight.extend(flags.clone());
    run_ok(&straight);
    let want = json(&ws.path("straight/result.json"));

    let mut args = ws.train_args("killed");
    args.extend(flags);
    let mut child = crate::common::trainer()
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let first = ws.path("killed/checkpoints/step-00000020/state.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !first.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "no checkpoint at step 20"
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the trainer exited before the kill"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    assert!(
        !ws.path("killed/result.json").exists(),
        "killed before the end"
    );
    let out = run_ok(&args);
    assert!(String::from_utf8_lossy(&out.stderr).contains("resuming from checkpoint"));
    let got = json(&ws.path("killed/result.json"));
    let resumed = got["resumedFrom"].as_u64().unwrap();
    assert!((20..120).contains(&resumed), "resumed from {resumed}");
    assert_eq!(got["steps"], 120);
    let (a, b) = (
        want["finalLoss"].as_f64().unwrap(),
        got["finalLoss"].as_f64().unwrap(),
    );
    println!("final loss uninterrupted {a:.6}, resumed from step {resumed} {b:.6}");
    assert!((a - b).abs() < RESUME_TOLERANCE, "{a} vs {b}");
    assert_eq!(want["metrics"]["exactMatch"], got["metrics"]["exactMatch"]);
    // At most --keep-checkpoints (2) are kept.
    assert!(
        std::fs::read_dir(ws.path("killed/checkpoints"))
            .unwrap()
            .count()
            <= 2
    );
    // A checkpoint of another run is refused, not silently mixed in.
    let mut other = args.clone();
    other.extend(["--seed", "7"].map(String::from));
    let refused = crate::common::trainer().args(&other).output().unwrap();
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("different run"));
}

#[test]
fn dpo_widens_the_margin_on_held_out_pairs() {
    let ws = Workspace::new();
    let pairs = |seed, n| -> Vec<serde_json::Value> {
        crate::common::risk_task(seed, n)
            .into_iter()
            .map(|e| {
                let right = e["completion"].as_str().unwrap().to_string();
                let wrong = if right == " high" { " low" } else { " high" };
                serde_json::json!({"prompt": e["prompt"], "chosen": right, "rejected": wrong})
            })
            .collect()
    };
    crate::common::write_jsonl(&ws.path("pairs.jsonl"), &pairs(3, 200));
    crate::common::write_jsonl(&ws.path("held.jsonl"), &pairs(4, 40));
    run_ok(
        &[
            "dpo",
            "--model",
            ws.path("base").to_str().unwrap(),
            "--data",
            ws.path("pairs.jsonl").to_str().unwrap(),
            "--eval-data",
            ws.path("held.jsonl").to_str().unwrap(),
            "--out",
            ws.path("dpo").to_str().unwrap(),
            "--method",
            "full",
            "--lr",
            "1e-3",
            "--max-steps",
            "75",
            "--batch-size",
            "8",
            "--beta",
            "0.1",
            "--device",
            "cpu",
        ]
        .map(String::from),
    );
    let r = json(&ws.path("dpo/result.json"));
    let (m0, m1) = (
        r["before"]["rewardMargin"].as_f64().unwrap(),
        r["after"]["rewardMargin"].as_f64().unwrap(),
    );
    let (a0, a1) = (
        r["before"]["preferenceAccuracy"].as_f64().unwrap(),
        r["after"]["preferenceAccuracy"].as_f64().unwrap(),
    );
    println!("dpo held-out: margin {m0:.4} -> {m1:.4}, preference accuracy {a0:.2} -> {a1:.2}");
    assert!(
        m0.abs() < 1e-6,
        "before training the policy is the reference"
    );
    assert!(m1 > 0.1, "margin {m1}");
    assert!(a1 >= 0.75, "preference accuracy {a1}");
    assert!(r["after"]["loss"].as_f64().unwrap() < r["before"]["loss"].as_f64().unwrap());
    assert_eq!(
        r["metrics"]["preferenceAccuracy"],
        r["after"]["preferenceAccuracy"]
    );
}
