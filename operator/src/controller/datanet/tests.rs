//! The Datanet controller's pure parts.
use super::*;
use serde_json::json;

fn lines(b: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(b)
        .lines()
        .map(str::to_string)
        .collect()
}

fn datanet(credentials: bool) -> Datanet {
    let mut spec = serde_json::json!({
        "proposalRef": {"name": "p"},
        "format": {"type": "Jsonl", "fields": ["prompt", "completion"]},
        "contributions": {"configMapRef": {"name": "m", "key": "manifest.yaml"}},
        "rewards": {"pool": "1000"},
    });
    if credentials {
        spec["contributions"]["credentialsSecretRef"] = json!({"name": "store-keys"});
    }
    let mut dn: Datanet = serde_json::from_value(json!({
        "apiVersion": "modelcommons.dev/v1alpha1", "kind": "Datanet",
        "metadata": {"name": "d", "namespace": "tenant", "uid": "0b5e2f7a-6d5c-4a4e-9c61-2f1d9b0c8e11",
            "annotations": {ANNOTATION_RETRY: "7"}},
        "spec": spec,
    }))
    .unwrap();
    dn.metadata.generation = Some(1);
    dn
}

#[test]
fn curation_runs_in_the_trusted_namespace_on_what_the_operator_hands_it() {
    let config = crate::controller::Config {
        trusted_namespace: "trusted".into(),
        ..Default::default()
    };
    let job = curation_job(&datanet(true), &config, 3, &"ab".repeat(32)).unwrap();
    let name = job.metadata.name.clone().unwrap();
    assert_eq!(
        name,
        "curate-0b5e2f7a-6d5c-4a4e-9c61-2f1d9b0c8e11-v3-abababab"
    );
    assert!(name.len() <= 63, "a Job name is a label value");
    assert_eq!(job.metadata.namespace.as_deref(), Some("trusted"));
    assert!(
        job.metadata.owner_references.is_none(),
        "no owner across namespaces"
    );
    let labels = job.metadata.labels.clone().unwrap();
    assert_eq!(labels[LABEL_DATANET_NAMESPACE], "tenant");
    assert_eq!(
        labels[LABEL_DATANET_UID],
        "0b5e2f7a-6d5c-4a4e-9c61-2f1d9b0c8e11"
    );
    assert_eq!(
        job.metadata.annotations.clone().unwrap()[ANNOTATION_RETRY],
        "7"
    );
    let pod = job.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap();
    assert!(
        args.contains(&format!("file://{MANIFEST_DIR}/{MANIFEST_KEY}")),
        "{args:?}"
    );
    let cm = pod
        .volumes
        .unwrap()
        .into_iter()
        .find_map(|v| v.config_map)
        .unwrap();
    assert_eq!(
        cm.name,
        format!("{name}-manifest"),
        "the operator's copy, not the tenant's"
    );
    let secret = c.env_from.clone().unwrap()[0].secret_ref.clone().unwrap();
    assert_eq!(secret.name, format!("{name}-credentials"));
    assert_eq!(
        c.termination_message_policy.as_deref(),
        Some("FallbackToLogsOnError")
    );
    let none = curation_job(&datanet(false), &config, 3, &"ab".repeat(32)).unwrap();
    let c = &none.spec.unwrap().template.spec.unwrap().containers[0];
    assert!(c.env_from.clone().unwrap_or_default().is_empty());
}

#[test]
fn the_credentials_role_names_one_secret() {
    let cmd = credentials_role("tenant", "store-keys", "ops:modelcommons");
    assert!(cmd.contains("--resource-name=store-keys"), "{cmd}");
    assert!(cmd.contains("--serviceaccount=ops:modelcommons"), "{cmd}");
    assert!(cmd.contains("--verb=get "), "{cmd}");
}

#[test]
fn every_fifth_record_is_held_out_and_every_tenth_of_the_rest_validates() {
    let data: Vec<u8> = (0..20)
        .flat_map(|i| format!("{i}\n").into_bytes())
        .collect();
    let s = split(&data);
    assert_eq!(lines(&s.holdout), ["4", "9", "14", "19"]);
    assert_eq!(lines(&s.eval), ["11"]);
    assert_eq!(
        s.train
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        15
    );
    assert!(
        !lines(&s.train)
            .iter()
            .any(|l| lines(&s.holdout).contains(l))
    );
}

#[test]
fn small_datasets_hold_out_their_last_record() {
    let s = split(b"a\nb\nc\n");
    assert_eq!(lines(&s.holdout), ["c"]);
    assert_eq!(
        (lines(&s.train), lines(&s.eval)),
        (vec!["a".to_string()], vec!["b".to_string()])
    );
    let s = split(b"only\n");
    assert_eq!(
        (lines(&s.train), s.holdout.len(), s.eval.len()),
        (vec!["only".to_string()], 0, 0)
    );
}

#[test]
fn the_operator_recomputes_the_split_files() {
    for n in [0, 1, 3, 5, 12, 57] {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let data: Vec<u8> = (0..n).flat_map(|i| format!("{i}\n").into_bytes()).collect();
        let s = split(&data);
        let w = |p: &str, b: &[u8]| {
            let p = dir.path().join(p);
            std::fs::create_dir_all(p.parent().unwrap_or(dir.path()))
                .unwrap_or_else(|e| panic!("{e}"));
            std::fs::write(p, b).unwrap_or_else(|e| panic!("{e}"));
        };
        w("dataset.jsonl", &data);
        w(HOLDOUT_FILE, &s.holdout);
        w("train/train.jsonl", &s.train);
        w("train/eval.jsonl", &s.eval);
        assert!(split_matches(dir.path()).is_ok(), "{n} records");
        if n >= 3 {
            // A held-out record moved into the training file is caught.
            let mut train = s.train.clone();
            train.extend_from_slice(&s.holdout);
            w("train/train.jsonl", &train);
            assert!(
                matches!(
                    split_matches(dir.path()),
                    Err(SplitError::Differs("train/train.jsonl"))
                ),
                "{n}"
            );
        }
    }
}

mod decide_step {
    //! One test per edge of the phase diagram: Collecting (waiting for the vote) → Curating →
    //! Ready; Curating → Failed (failed, no result, forged, mismatched) → Curating (retried);
    //! Ready stays Ready (the proposal changes, the manifest is unreachable, a new look).

    use std::collections::BTreeMap;
    use std::time::Duration;

    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;
    use modelcommons_crds::conditions::Progress;
    use modelcommons_crds::datanet::{Datanet, DatanetPhase as Phase, DatanetStatus, reason};
    use modelcommons_crds::proposal::{ModelProposal, ModelProposalPhase, ModelProposalStatus};

    use super::super::decide::{self, JobFacts};
    use super::super::{JobState, ManifestSource};
    use crate::controller::lineage::VersionRecord;

    const RECHECK: Duration = Duration::from_secs(30);

    fn dn() -> Datanet {
        super::datanet(false)
    }

    fn proposal(phase: Option<ModelProposalPhase>) -> ModelProposal {
        let mut p: ModelProposal = serde_yaml::from_str(include_str!(
            "../../../../examples/contract-review/01-proposal.yaml"
        ))
        .unwrap();
        p.status = Some(ModelProposalStatus {
            phase,
            ..Default::default()
        });
        p
    }

    fn ready(version: u32, digest: &str) -> DatanetStatus {
        DatanetStatus {
            phase: Some(Phase::Ready),
            version: Some(version),
            manifest_sha256: Some(digest.into()),
            ..Default::default()
        }
    }

    fn published(digests: &[&str]) -> BTreeMap<u32, VersionRecord> {
        digests
            .iter()
            .enumerate()
            .map(|(i, d)| {
                let v = u32::try_from(i).unwrap() + 1;
                (
                    v,
                    VersionRecord {
                        dataset_uri: format!("file:///store/v{v}"),
                        dataset_root: None,
                        manifest_sha256: d.to_string(),
                        reward_map_uri: String::new(),
                        accepted_quality_bps: vec![],
                    },
                )
            })
            .collect()
    }

    fn facts(state: JobState, completed: Option<&str>) -> JobFacts<'static> {
        JobFacts {
            trusted: "modelcommons-system",
            name: "curate-x-v1-abcdef12",
            version: 1,
            state,
            failure: Some("BackoffLimitExceeded".into()),
            said: Some("manifest entry 3: connection refused".into()),
            completed: completed.map(|t| Time(t.parse::<Timestamp>().unwrap())),
        }
    }

    fn now() -> Time {
        Time("2026-12-01T12:10:00Z".parse::<Timestamp>().unwrap())
    }

    #[test]
    fn collecting_until_the_proposal_is_approved() {
        let st = DatanetStatus::default();
        for p in [
            None,
            Some(proposal(None)),
            Some(proposal(Some(ModelProposalPhase::Voting))),
        ] {
            let s = decide::proposal_gate(&dn(), &st, p.as_ref(), RECHECK).unwrap();
            assert_eq!(
                (s.phase, s.reason, s.progress()),
                (
                    Phase::Collecting,
                    reason::PROPOSAL_NOT_APPROVED,
                    Progress::Reconciling
                )
            );
            assert_eq!(s.requeue, Some(RECHECK));
        }
        let missing = decide::proposal_gate(&dn(), &st, None, RECHECK).unwrap();
        assert!(
            missing.message.contains("is missing"),
            "{}",
            missing.message
        );
        for ok in [ModelProposalPhase::Approved, ModelProposalPhase::Active] {
            assert!(
                decide::proposal_gate(&dn(), &st, Some(&proposal(Some(ok))), RECHECK).is_none()
            );
        }
    }

    #[test]
    fn ready_stays_ready_when_the_proposal_or_the_manifest_goes() {
        let st = ready(1, "aa");
        let s = decide::proposal_gate(&dn(), &st, None, RECHECK).unwrap();
        assert_eq!(
            (s.phase, s.reason, s.progress()),
            (Phase::Ready, reason::PUBLISHED, Progress::Ready)
        );
        let source = ManifestSource::Uri("s3://bucket/manifest.yaml".into());
        let s = decide::manifest_unavailable(&st, &source, "timed out".into(), RECHECK);
        assert_eq!((s.phase, s.progress()), (Phase::Ready, Progress::Ready));
        assert!(s.message.contains("AWS_*"), "{}", s.message);
        let fresh = DatanetStatus::default();
        let s = decide::manifest_unavailable(&fresh, &source, "timed out".into(), RECHECK);
        assert_eq!(
            (s.phase, s.reason, s.progress()),
            (
                Phase::Collecting,
                reason::MANIFEST_UNAVAILABLE,
                Progress::Reconciling
            )
        );
    }

    #[test]
    fn versions_come_from_the_operators_record() {
        let none = published(&[]);
        assert_eq!(
            decide::version(&DatanetStatus::default(), &none, "aa").ok(),
            Some(1)
        );
        let two = published(&["aa", "bb"]);
        assert_eq!(
            decide::version(&DatanetStatus::default(), &two, "cc").ok(),
            Some(3),
            "a new manifest is the next version"
        );
        assert_eq!(
            decide::version(&DatanetStatus::default(), &two, "aa").ok(),
            Some(1),
            "a published one is its own (republished)"
        );
        let shown = decide::version(&ready(2, "bb"), &two, "bb").unwrap_err();
        assert_eq!(
            (shown.phase, shown.reason),
            (Phase::Ready, reason::PUBLISHED),
            "published and shown: nothing to do"
        );
        let tenant_wrote = ready(9, "bb");
        assert_eq!(
            decide::version(&tenant_wrote, &two, "bb").ok(),
            Some(2),
            "a status that says otherwise is not believed"
        );
    }

    #[test]
    fn curating_while_the_job_runs_then_awaiting_its_report() {
        let s = decide::job_outcome(
            &dn(),
            &facts(JobState::Running, None),
            &now(),
            Duration::from_secs(300),
            RECHECK,
        );
        assert_eq!(
            (s.phase, s.reason, s.progress()),
            (Phase::Curating, reason::CURATING, Progress::Reconciling)
        );
        let s = decide::job_outcome(
            &dn(),
            &facts(JobState::Complete, Some("2026-12-01T12:09:00Z")),
            &now(),
            Duration::from_secs(300),
            RECHECK,
        );
        assert_eq!(
            (s.phase, s.reason),
            (Phase::Curating, reason::AWAITING_RESULT)
        );
        assert_eq!(s.requeue, Some(Duration::from_secs(2)));
    }

    #[test]
    fn curating_to_failed_with_the_pods_last_words_and_how_to_retry() {
        let s = decide::job_outcome(
            &dn(),
            &facts(JobState::Failed, None),
            &now(),
            Duration::from_secs(300),
            RECHECK,
        );
        assert_eq!(
            (s.phase, s.reason, s.progress()),
            (Phase::Failed, reason::CURATION_FAILED, Progress::Stalled)
        );
        assert!(
            s.message
                .contains("its last words: manifest entry 3: connection refused"),
            "{}",
            s.message
        );
        assert!(
            s.message
                .contains("annotate datanet d modelcommons.dev/retry-curation="),
            "{}",
            s.message
        );
        let s = decide::job_outcome(
            &dn(),
            &facts(JobState::Complete, Some("2026-12-01T12:00:00Z")),
            &now(),
            Duration::from_secs(300),
            RECHECK,
        );
        assert_eq!(
            (s.phase, s.reason, s.progress()),
            (Phase::Failed, reason::NO_RESULT, Progress::Stalled)
        );
    }

    #[test]
    fn curating_to_failed_on_a_forged_or_mismatched_result_with_a_warning() {
        let s = decide::forged_job("t", "j", 1, "its containers differ");
        assert_eq!(
            (s.phase, s.reason, s.warn),
            (Phase::Failed, reason::FORGED_RESULT, true)
        );
        let r = modelcommons_crds::datanet::CurationResult {
            version: 2,
            manifest_sha256: "bb".into(),
            ..Default::default()
        };
        let s = decide::mismatch("t", "j", 1, "aa", &r);
        assert_eq!(
            (s.phase, s.reason, s.warn),
            (Phase::Failed, reason::CURATION_MISMATCH, true)
        );
        let s = decide::unverified(
            "t",
            "j",
            1,
            super::super::Unverified::Unreadable("not mounted".into()),
        );
        assert_eq!(
            (s.phase, s.reason, s.progress()),
            (
                Phase::Curating,
                reason::ARTIFACTS_UNREADABLE,
                Progress::Reconciling
            )
        );
    }

    #[test]
    fn failed_to_curating_when_asked_to_retry() {
        let s = decide::retried("t", "j");
        assert_eq!(
            (s.phase, s.reason, s.progress()),
            (
                Phase::Curating,
                reason::CURATION_RETRIED,
                Progress::Reconciling
            )
        );
        let s = decide::trusted_namespace_missing(
            "modelcommons-system",
            "namespaces not found",
            RECHECK,
        );
        assert_eq!(
            (s.reason, s.progress()),
            (reason::TRUSTED_NAMESPACE_MISSING, Progress::Stalled)
        );
    }
}
