//! The gates, the children and the decide step of the FineTuneJob controller.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use kube::ResourceExt;
use modelcommons_crds::common::{Direction, MetricTarget};
use modelcommons_crds::finetune::{FineTuneJob, FineTuneJobSpec};
use modelcommons_crds::proposal::ModelProposal;

use super::*;

#[test]
fn host_paths_only_under_the_dev_directory_and_only_allowed_trainer_images() {
    let dev = &[PathBuf::from("/srv/dev")][..];
    for uri in [
        "file:///var/lib/kubelet",
        "file:///srv/dev/../../etc",
        "file:///",
    ] {
        let g = workload_uri_allowed(uri, dev).err();
        assert_eq!(g.map(|g| g.reason), Some("HostPathRefused"), "{uri}");
    }
    assert!(workload_uri_allowed("file:///srv/dev/models/a", dev).is_ok());
    assert!(workload_uri_allowed("pvc://models/a", &[]).is_ok());
    let g = workload_uri_allowed("file:///srv/dev/models/a", &[]).err();
    assert!(g.is_some_and(|g| g.message.contains("pvc://")));

    let mut spec: FineTuneJobSpec = serde_yaml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/contract-review/04-finetune.yaml"),
        )
        .unwrap_or_default(),
    )
    .map(|f: FineTuneJob| f.spec)
    .unwrap_or_else(|e| panic!("{e}"));
    let mut config = super::super::Config::default();
    spec.trainer_image = Some("attacker.example/trainer:latest".into());
    let g = trainer_image_allowed(&spec, &config).err();
    assert_eq!(g.map(|g| g.reason), Some("TrainerImageNotAllowed"));
    config.allowed_trainer_images = vec!["attacker.example/trainer:latest".into()];
    assert!(trainer_image_allowed(&spec, &config).is_ok());
    spec.trainer_image = Some(config.trainer_image.clone());
    assert!(trainer_image_allowed(&spec, &super::super::Config::default()).is_ok());
}

#[test]
fn the_trainer_may_patch_its_own_jobs_status_and_nothing_else() {
    let mut f: FineTuneJob = serde_yaml::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/contract-review/04-finetune.yaml"),
        )
        .unwrap_or_default(),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    f.metadata.uid = Some("uid-1".into());
    let (account, role, binding) = trainer_identity(&f);
    let name = trainer_account(&f);
    assert_eq!(account.metadata.name.as_deref(), Some(name.as_str()));
    let rule = &role.rules.unwrap()[0];
    assert_eq!(
        rule.api_groups.as_deref(),
        Some(&["modelcommons.dev".to_string()][..])
    );
    assert_eq!(
        rule.resources.as_deref(),
        Some(&["finetunejobs/status".to_string()][..])
    );
    assert_eq!(rule.resource_names.as_deref(), Some(&[f.name_any()][..]));
    assert_eq!(rule.verbs, ["patch"]);
    assert_eq!(binding.role_ref.name, name);
    assert_eq!(binding.subjects.unwrap()[0].name, name);
    let job = trainer_job(
        &f,
        "trainer:1",
        &Admitted {
            dataset_version: 1,
            dataset_root: None,
            dataset_uri: "pvc://artifacts/d".into(),
            targets: vec![],
            rubric: true,
            active_deadline_seconds: None,
        },
        false,
    );
    let pod = job.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(name.as_str()));
    assert_eq!(
        pod.security_context.unwrap().seccomp_profile.unwrap().type_,
        "RuntimeDefault"
    );
}

fn example<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/contract-review")
        .join(file);
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap_or_default())
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

#[test]
fn job_targets_tighten_the_rubric_and_never_loosen_it() {
    let p: ModelProposal = example("01-proposal.yaml");
    let mut f: FineTuneJob = example("04-finetune.yaml");
    let t = |name: &str, direction, threshold: &str| MetricTarget {
        name: name.into(),
        direction,
        threshold: threshold.into(),
    };
    // The rubric: loss <= 2.5, exactMatch >= 0.6.
    f.spec.targets = vec![
        t("loss", Direction::Minimize, "100"),
        t("exactMatch", Direction::Maximize, "0.8"),
        t("perplexity", Direction::Minimize, "9"),
    ];
    let got = targets(&f.spec, Some(&p));
    assert_eq!(
        got,
        vec![
            t("loss", Direction::Minimize, "2.5"),
            t("exactMatch", Direction::Maximize, "0.8"),
            t("perplexity", Direction::Minimize, "9"),
        ],
        "a looser loss keeps the rubric's, a stricter exactMatch wins, a new metric adds"
    );
    f.spec.targets.clear();
    assert_eq!(
        targets(&f.spec, Some(&p)),
        p.spec.mandate.evaluation.metrics
    );
}

#[test]
fn targets_are_judged_with_their_direction() {
    let t = |name: &str, direction, threshold: &str| MetricTarget {
        name: name.into(),
        direction,
        threshold: threshold.into(),
    };
    let targets = vec![
        t("loss", Direction::Minimize, "2.0"),
        t("exactMatch", Direction::Maximize, "0.6"),
    ];
    let m = |l: &str, e: &str| {
        BTreeMap::from([
            ("loss".to_string(), l.to_string()),
            ("exactMatch".to_string(), e.to_string()),
        ])
    };
    assert!(targets_met(&targets, &m("1.5", "0.6")));
    assert!(!targets_met(&targets, &m("2.5", "0.9")));
    assert!(!targets_met(&targets, &m("1.0", "0.5")));
    assert!(!targets_met(&targets, &BTreeMap::new()), "unmeasured fails");
}

mod decide_step {
    //! One test per edge of the phase diagram: new → Pending (gated) → Queued | Running →
    //! Evaluating → Succeeded | TargetsMissed | Failed, and Running → Failed.

    use std::collections::BTreeMap;
    use std::time::Duration;

    use k8s_openapi::api::batch::v1::Job;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use modelcommons_crds::common::{Direction, MetricTarget};
    use modelcommons_crds::conditions::{READY, RECONCILING, STALLED};
    use modelcommons_crds::finetune::{
        FineTuneJob, FineTuneJobPhase as Phase, FineTuneJobStatus, TrainResult, reason,
    };

    use super::super::decide::{self, Env, Next, Shown};
    use super::super::{Admitted, EvalOutput, GATED, Gate, SUSPENDED, trainer_job};

    const FAILED: &str = include_str!("fixtures/trainer-job-failed.yaml");
    const COMPLETE: &str = include_str!("fixtures/trainer-job-complete.yaml");

    fn env(now: &str) -> Env<'static> {
        Env {
            now: Time(now.parse::<Timestamp>().unwrap()),
            recheck: Duration::from_secs(30),
            result_grace: Duration::from_secs(300),
            trusted_namespace: "modelcommons-system",
        }
    }

    fn ftj() -> FineTuneJob {
        let mut f: FineTuneJob = super::example("04-finetune.yaml");
        f.metadata.uid = Some("0f7c0000-0000-4000-8000-000000000004".into());
        f.metadata.generation = Some(1);
        f.spec.run_policy.queue_name = None;
        f
    }

    fn admitted() -> Admitted {
        Admitted {
            dataset_version: 1,
            dataset_root: Some("0xabc".into()),
            dataset_uri: "file:///srv/dev/datanets/v1".into(),
            targets: vec![
                MetricTarget {
                    name: "loss".into(),
                    direction: Direction::Minimize,
                    threshold: "2.5".into(),
                },
                MetricTarget {
                    name: "exactMatch".into(),
                    direction: Direction::Maximize,
                    threshold: "0.6".into(),
                },
            ],
            rubric: true,
            active_deadline_seconds: Some(3600),
        }
    }

    /// The Job as the operator creates it, with a status from a fixture.
    fn job(f: &FineTuneJob, suspend: bool, status: Option<&str>) -> Job {
        let mut j = trainer_job(f, "trainer:1", &admitted(), suspend);
        if let Some(text) = status {
            let s: Job = serde_yaml::from_str(text).unwrap();
            j.status = s.status;
        }
        j
    }

    fn shown(next: Next) -> Shown {
        match next {
            Next::Show(s) => s,
            Next::Evaluate(_) => panic!("expected a status, got an evaluation"),
        }
    }

    /// The status written for `s` on `f`, and it applied to `f`.
    fn apply(f: &mut FineTuneJob, s: &Shown) -> FineTuneJobStatus {
        let st = decide::status(f, s, &env("2026-12-01T12:00:00Z").now);
        f.status = Some(st.clone());
        st
    }

    fn cond<'a>(st: &'a FineTuneJobStatus, t: &str) -> Option<(&'a str, &'a str)> {
        st.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.as_str(), c.reason.as_str()))
    }

    #[test]
    fn new_to_pending_gated_stalled_or_reconciling_by_the_gate() {
        for (why, beside) in [
            (reason::PROPOSAL_NOT_FOUND, STALLED),
            (reason::DATANET_OF_ANOTHER_PROPOSAL, STALLED),
            (reason::BUDGET_EXHAUSTED, STALLED),
            (reason::PROPOSAL_NOT_APPROVED, RECONCILING),
            (reason::DATANET_NOT_READY, RECONCILING),
            (reason::GPU_LIMIT_REACHED, RECONCILING),
        ] {
            let mut f = ftj();
            let gate = Gate {
                reason: why,
                message: "what to do".into(),
            };
            let s = decide::gated(&gate, &env("2026-12-01T10:00:00Z"));
            assert_eq!(s.requeue, Some(Duration::from_secs(30)), "{why}");
            assert_eq!(s.warn, Some((why.to_string(), "what to do".to_string())));
            let st = apply(&mut f, &s);
            assert_eq!(st.phase, Some(Phase::Pending));
            assert_eq!(cond(&st, GATED), Some(("True", why)));
            assert_eq!(cond(&st, READY), Some(("False", why)));
            assert_eq!(cond(&st, beside), Some(("True", why)), "{why}");
            assert!(st.job_name.is_none(), "{why}: no Job yet");
        }
    }

    #[test]
    fn pending_to_queued_by_kueue_or_suspend_then_running() {
        let e = env("2026-12-01T10:00:00Z");
        let mut f = ftj();
        f.spec.run_policy.queue_name = Some("legal-team".into());
        let s = shown(decide::from_job(&f, &job(&f, true, None), &admitted(), &e));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Queued));
        assert_eq!(
            cond(&st, SUSPENDED),
            Some(("True", reason::AWAITING_ADMISSION))
        );
        assert_eq!(cond(&st, GATED), Some(("False", reason::ADMITTED)));
        assert_eq!(
            cond(&st, RECONCILING),
            Some(("True", reason::AWAITING_ADMISSION))
        );
        assert_eq!(st.job_name.as_deref(), Some("clause-review-lora-trainer"));
        assert_eq!(st.dataset_version, Some(1));
        assert_eq!(st.gpu_hours_used.as_deref(), Some("0.0000"));

        let mut g = ftj();
        g.spec.run_policy.suspend = true;
        let s = shown(decide::from_job(&g, &job(&g, true, None), &admitted(), &e));
        let st = apply(&mut g, &s);
        assert_eq!(cond(&st, SUSPENDED), Some(("True", reason::SUSPENDED)));

        // Kueue admits it: the Job runs.
        let s = shown(decide::from_job(&f, &job(&f, false, None), &admitted(), &e));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Running));
        assert_eq!(cond(&st, SUSPENDED), Some(("False", reason::RUNNING)));
        assert_eq!(cond(&st, RECONCILING), Some(("True", reason::TRAINING)));
    }

    #[test]
    fn pending_to_running_when_the_job_starts_unsuspended() {
        let mut f = ftj();
        let s = shown(decide::from_job(
            &f,
            &job(&f, false, None),
            &admitted(),
            &env("2026-12-01T10:00:00Z"),
        ));
        assert_eq!(s.requeue, Some(Duration::from_secs(30)));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Running));
        assert_eq!(cond(&st, READY), Some(("False", reason::TRAINING)));
    }

    #[test]
    fn running_to_failed_with_the_jobs_reason() {
        let mut f = ftj();
        let e = env("2026-12-01T11:00:00Z");
        let s = shown(decide::from_job(
            &f,
            &job(&f, false, Some(FAILED)),
            &admitted(),
            &e,
        ));
        assert_eq!(s.requeue, None, "nothing to do until it changes");
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Failed));
        assert_eq!(cond(&st, STALLED), Some(("True", "BackoffLimitExceeded")));
        let ready = st.conditions.iter().find(|c| c.type_ == READY).unwrap();
        assert!(
            ready
                .message
                .contains("kubectl logs job/clause-review-lora-trainer"),
            "{}",
            ready.message
        );
        assert_eq!(st.completion_time, Some(e.now.clone()));
        // Two workers with one GPU each for the hour since it started.
        assert_eq!(st.gpu_hours_used.as_deref(), Some("2.0000"));
        assert!(decide::finished(&f, false), "a failed job is done for good");
    }

    #[test]
    fn running_to_evaluating_awaiting_the_result_then_failed_without_one() {
        let mut f = ftj();
        let complete = job(&f, false, Some(COMPLETE));
        let s = shown(decide::from_job(
            &f,
            &complete,
            &admitted(),
            &env("2026-12-01T12:01:00Z"),
        ));
        assert_eq!(s.requeue, Some(Duration::from_secs(5)));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Evaluating));
        assert_eq!(
            cond(&st, RECONCILING),
            Some(("True", reason::AWAITING_RESULT))
        );
        assert_eq!(st.gpu_hours_used.as_deref(), Some("4.0000"));

        let s = shown(decide::from_job(
            &f,
            &complete,
            &admitted(),
            &env("2026-12-01T12:10:00Z"),
        ));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Failed));
        assert_eq!(cond(&st, STALLED), Some(("True", reason::NO_RESULT)));
    }

    fn with_result(f: &mut FineTuneJob) {
        let mut st = f.status.clone().unwrap_or_default();
        st.result = Some(TrainResult {
            model_digest: Some("ab".repeat(32)),
            ..Default::default()
        });
        f.status = Some(st);
    }

    fn out(loss: f64, exact: f64) -> EvalOutput {
        EvalOutput {
            examples: 40,
            metrics: BTreeMap::from([("loss".into(), loss), ("exactMatch".into(), exact)]),
            model_digest: "cd".repeat(32),
            baseline: None,
        }
    }

    /// A finished job with a result, up to the evaluation.
    fn evaluate() -> (FineTuneJob, FineTuneJobStatus) {
        let mut f = ftj();
        with_result(&mut f);
        let complete = job(&f, false, Some(COMPLETE));
        match decide::from_job(&f, &complete, &admitted(), &env("2026-12-01T12:01:00Z")) {
            Next::Evaluate(extra) => (f, extra),
            Next::Show(s) => panic!("a result goes to the evaluation, not {s:?}"),
        }
    }

    #[test]
    fn evaluating_while_the_operators_evaluation_runs_or_failed_when_it_cannot() {
        let (mut f, extra) = evaluate();
        assert_eq!(
            extra.completion_time.as_ref().map(|t| t.0.to_string()),
            Some("2026-12-01T12:00:00Z".to_string()),
            "the Job's completion time"
        );
        let s = decide::evaluating(extra.clone(), None, "evaluating on 40 records".into());
        assert_eq!(s.requeue, Some(Duration::from_secs(2)));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Evaluating));
        assert_eq!(cond(&st, RECONCILING), Some(("True", reason::EVALUATING)));

        let s = decide::evaluating(
            extra,
            Some(reason::BASE_MODEL_DIGEST_MISMATCH),
            "not the base it names".into(),
        );
        assert!(s.warn.is_some(), "a Warning event");
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Failed));
        assert_eq!(
            cond(&st, STALLED),
            Some(("True", reason::BASE_MODEL_DIGEST_MISMATCH))
        );
    }

    #[test]
    fn evaluating_to_succeeded_when_every_target_is_met_and_recorded() {
        let (mut f, extra) = evaluate();
        let e = env("2026-12-01T12:02:00Z");
        let j = decide::judge(&f, &admitted(), &out(0.038, 0.85), &e);
        assert!(j.met);
        let s = decide::judged(&f, &admitted(), extra, j, Ok(Some("0xfeed".into())));
        assert_eq!(s.requeue, None);
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Succeeded));
        assert_eq!(cond(&st, READY), Some(("True", reason::TARGETS_MET)));
        assert!(cond(&st, RECONCILING).is_none() && cond(&st, STALLED).is_none());
        assert_eq!(st.chain.unwrap().tx_hash.as_deref(), Some("0xfeed"));
        let ev = st.evaluation.unwrap();
        assert_eq!(ev.targets_met, Some(true));
        assert_eq!(ev.namespace.as_deref(), Some("modelcommons-system"));
        assert_eq!(ev.model_digest, Some(format!("sha256:{}", "cd".repeat(32))));
        assert!(decide::finished(&f, true));
        assert!(
            !decide::changed(&f, &decide::status(&f, &s, &e.now)),
            "the same status twice writes nothing"
        );
    }

    #[test]
    fn evaluating_to_targets_missed_says_what_was_missed() {
        let (mut f, extra) = evaluate();
        let j = decide::judge(
            &f,
            &admitted(),
            &out(3.1, 0.85),
            &env("2026-12-01T12:02:00Z"),
        );
        assert!(!j.met);
        let s = decide::judged(&f, &admitted(), extra, j, Ok(None));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::TargetsMissed));
        assert_eq!(cond(&st, STALLED), Some(("True", reason::TARGETS_MISSED)));
        let msg = &st
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .unwrap()
            .message;
        assert_eq!(msg, "missed: loss 3.1 (wanted Minimize 2.5)");
    }

    #[test]
    fn without_the_proposal_nothing_passes() {
        let (mut f, extra) = evaluate();
        let mut a = admitted();
        a.rubric = false;
        let j = decide::judge(&f, &a, &out(0.01, 1.0), &env("2026-12-01T12:02:00Z"));
        assert!(!j.met, "the rubric is unknown");
        let s = decide::judged(&f, &a, extra, j, Ok(None));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::TargetsMissed));
        let msg = &st
            .conditions
            .iter()
            .find(|c| c.type_ == READY)
            .unwrap()
            .message;
        assert!(
            msg.contains("the rubric of ModelProposal clause-review"),
            "{msg}"
        );
    }

    #[test]
    fn evaluating_stays_while_the_chain_does_not_answer() {
        let (mut f, extra) = evaluate();
        let j = decide::judge(
            &f,
            &admitted(),
            &out(0.038, 0.85),
            &env("2026-12-01T12:02:00Z"),
        );
        let s = decide::judged(&f, &admitted(), extra, j, Err("connection refused".into()));
        assert_eq!(s.requeue, Some(Duration::from_secs(5)));
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Evaluating));
        assert_eq!(cond(&st, READY), Some(("False", reason::RECORDING_RESULT)));
        assert_eq!(
            cond(&st, "LedgerSynced"),
            Some(("False", reason::LEDGER_UNAVAILABLE))
        );
        assert!(
            st.evaluation.is_some(),
            "the verdict shows while it is recorded"
        );
        assert!(!decide::finished(&f, false));
    }

    #[test]
    fn pending_stays_when_the_job_cannot_be_created() {
        let mut f = ftj();
        let s = decide::not_created("clause-review-lora-trainer", "exceeded quota");
        let st = apply(&mut f, &s);
        assert_eq!(st.phase, Some(Phase::Pending));
        assert_eq!(cond(&st, STALLED), Some(("True", reason::JOB_NOT_CREATED)));
    }

    #[test]
    fn a_tenants_edits_of_the_job_are_set_back() {
        let f = ftj();
        let mut j = job(&f, true, None);
        let spec = j.spec.as_mut().unwrap();
        spec.active_deadline_seconds = Some(999_999);
        let p = decide::job_patches(&f, &j, &admitted(), false);
        assert_eq!(p.suspend, Some(false), "runPolicy.suspend is false");
        assert_eq!(p.deadline, Some((Some(999_999), 3600)));
        assert!(decide::deadline_note(Some(999_999), 3600).contains("set back to 3600"));
        assert_eq!(
            decide::job_patches(&f, &job(&f, false, None), &admitted(), false),
            Default::default(),
            "a Job as created needs nothing"
        );
        let fresh = decide::job_patches(&f, &j, &admitted(), true);
        assert_eq!(
            fresh.deadline, None,
            "a Job about to be created is not patched"
        );
    }
}
