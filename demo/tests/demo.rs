//! `make demo` runs to its final chat completion unattended (`--exit`: non-interactive): its
//! own control plane and chain, the operator, the examples, votes, curation, training and
//! serving.
#![allow(clippy::unwrap_used)]

#[test]
fn the_demo_runs_to_a_chat_completion() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_modelcommons-demo"))
        .arg("--exit")
        .env("MODELCOMMONS_DEMO_DIR", dir.path())
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in [
        "ModelProposal    clause-review          Approved",
        "Datanet          clause-review-data     Ready          Published",
        "FineTuneJob      clause-review-lora     Succeeded      TargetsMet",
        // The operator's own evaluation on held-out records, the base model beside it.
        "held-out records: 40; base model loss",
        "ModelDeployment  clause-review          Ready          Serving",
        "HTTP 200",
        "cleaning up",
    ] {
        assert!(stdout.contains(want), "missing {want:?} in:\n{stdout}");
    }
}
