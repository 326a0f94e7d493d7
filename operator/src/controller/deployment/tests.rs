//! The decide step, one test per edge of the phase diagram (Pending → Rolling → Ready ⇄
//! Degraded, Ready → Rolling for a new revision or a canary, canary → promoted, Ready →
//! Pending when the model goes) and per route and autoscaler state, from the YAML fixtures in
//! `fixtures/`. Each test walks a small world: decide, then apply the decision the way the API
//! server and the Deployment controller would, and decide again.

use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use modelcommons_crds::conditions::{READY, RECONCILING, STALLED};
use modelcommons_crds::deployment::{
    ModelDeployment, ModelDeploymentPhase as Phase, ROUTED, reason,
};

use super::decide::{Apply, Decision, Env, Kind, Observed, decide, split_replicas};
use crate::controller::training::{Judged, OnChain, Verified};
use crate::runtime::gateway::HTTPRoute;

const MD: &str = include_str!("fixtures/modeldeployment.yaml");
const FTJ: &str = include_str!("fixtures/finetunejob-succeeded.yaml");
const AVAILABLE: &str = include_str!("fixtures/deployment-available.yaml");
const REFUSED: &str = include_str!("fixtures/httproute-refused.yaml");
const OLD: &str = "aaaaaaaaaaaa1111111111111111111111111111111111111111111111111111";
const NEW: &str = "bbbbbbbbbbbb2222222222222222222222222222222222222222222222222222";

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    serde_yaml::from_str(text).expect("fixture parses")
}

fn env() -> Env<'static> {
    Env {
        image: "ghcr.io/modelcommons/trainer:0.1.0",
        dev_host_dirs: &[],
        recheck: Duration::from_secs(30),
        now: Time(Timestamp::from_second(1_800_000_000).unwrap()),
    }
}

/// A ModelDeployment, what exists around it, and the last decision.
struct World {
    md: ModelDeployment,
    seen: Observed,
    last: Option<Decision>,
}

impl World {
    fn new() -> Self {
        Self {
            md: yaml(MD),
            seen: Observed {
                ftj: Some(yaml(FTJ)),
                trained: Some(Verified {
                    judged: Judged {
                        generation: 1,
                        model_uri: "pvc://models/clause-review-v1".into(),
                        model_digest: OLD.into(),
                        passed: true,
                        dataset_root: None,
                    },
                    chain: OnChain::NoLedger,
                }),
                ..Default::default()
            },
            last: None,
        }
    }

    /// Decides, then applies the decision as the API server would: applied children replace
    /// the observed ones (a changed Deployment's generation moves on, its status stays until
    /// the Deployment controller reports), deleted ones go, the status is written.
    fn step(&mut self) -> &Decision {
        let d = decide(&self.md, &self.seen, &env());
        for a in &d.apply {
            match a.clone() {
                Apply::Deployment(dep) => {
                    let mut dep = *dep;
                    let slot = if dep.name_any().ends_with("-canary") {
                        &mut self.seen.canary
                    } else {
                        &mut self.seen.stable
                    };
                    let old = slot.take();
                    dep.metadata.generation = Some(
                        old.as_ref()
                            .and_then(|o| o.metadata.generation)
                            .unwrap_or(0)
                            + 1,
                    );
                    dep.status = old.and_then(|o| o.status);
                    *slot = Some(dep);
                }
                Apply::Service(s) => {
                    self.seen.services.insert(s.name_any(), s);
                }
                Apply::Autoscaler(h) => self.seen.hpa = Some(h),
                Apply::Route(r) => {
                    let status = self.seen.route.take().and_then(|o| o.status);
                    self.seen.route = Some(HTTPRoute { status, ..r });
                }
            }
        }
        for del in &d.delete {
            match del.kind {
                Kind::Deployment => self.seen.canary = None,
                Kind::Service => drop(self.seen.services.remove(&del.name)),
                Kind::Autoscaler => self.seen.hpa = None,
                Kind::Route => self.seen.route = None,
            }
        }
        self.md.status = Some(d.status.clone());
        self.last = Some(d);
        self.last.as_ref().unwrap()
    }

    /// The Deployment controller reports every server Deployment rolled out with `ready` of
    /// its replicas available.
    fn roll_out(&mut self, ready: Option<i32>) {
        for d in [&mut self.seen.stable, &mut self.seen.canary]
            .into_iter()
            .flatten()
        {
            let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
            let mut st: Deployment = yaml(AVAILABLE);
            let mut status = st.status.take().unwrap();
            status.observed_generation = d.metadata.generation;
            status.updated_replicas = Some(want);
            status.available_replicas = Some(ready.unwrap_or(want));
            d.status = Some(status);
        }
    }

    /// The operator's judgment of the FineTuneJob.
    fn judged(&mut self) -> &mut Judged {
        &mut self.seen.trained.as_mut().unwrap().judged
    }

    /// The operator judged a new model of the FineTuneJob, passed.
    fn model(&mut self, digest: &str) {
        self.judged().model_digest = digest.into();
    }

    fn spec(&mut self, edit: impl FnOnce(&mut ModelDeployment)) {
        edit(&mut self.md);
        *self.md.metadata.generation.as_mut().unwrap() += 1;
    }

    fn phase(&self) -> Phase {
        self.md.status.as_ref().unwrap().phase.unwrap()
    }

    fn cond(&self, t: &str) -> Option<(String, String, String)> {
        let s = self.md.status.as_ref()?;
        s.conditions
            .iter()
            .find(|c| c.type_ == t)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    }

    /// Ready's status and reason, and which kstatus condition stands beside it.
    fn kstatus(&self) -> (String, String, &'static str) {
        let (s, r, _) = self.cond(READY).expect("Ready is set");
        let beside = match (self.cond(RECONCILING), self.cond(STALLED)) {
            (Some(_), None) => RECONCILING,
            (None, Some(_)) => STALLED,
            (None, None) => "-",
            _ => panic!("Reconciling and Stalled both set"),
        };
        (s, r, beside)
    }

    fn applied(&self) -> Vec<String> {
        let d = self.last.as_ref().unwrap();
        d.apply
            .iter()
            .map(|a| match a {
                Apply::Deployment(o) => format!("Deployment/{}", o.name_any()),
                Apply::Service(o) => format!("Service/{}", o.name_any()),
                Apply::Autoscaler(o) => format!("HorizontalPodAutoscaler/{}", o.name_any()),
                Apply::Route(o) => format!("HTTPRoute/{}", o.name_any()),
            })
            .collect()
    }

    fn deleted(&self) -> Vec<String> {
        let d = self.last.as_ref().unwrap();
        d.delete
            .iter()
            .map(|x| format!("{:?}/{}", x.kind, x.name))
            .collect()
    }

    /// A world serving revision OLD on its two replicas.
    fn serving() -> Self {
        let mut w = Self::new();
        w.step();
        w.roll_out(None);
        w.step();
        assert_eq!(w.phase(), Phase::Ready);
        w
    }
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

fn kstatus(ready: &str, reason: &str, beside: &'static str) -> (String, String, &'static str) {
    (ready.into(), reason.into(), beside)
}

#[test]
fn new_to_pending_while_the_operator_has_not_judged_the_finetunejob() {
    let mut w = World::new();
    w.seen.trained = None;
    let d = w.step();
    assert!(
        d.apply.is_empty() && d.delete.is_empty(),
        "no server before a model"
    );
    assert_eq!(d.requeue, Duration::from_secs(30));
    assert_eq!(w.phase(), Phase::Pending);
    assert_eq!(
        w.kstatus(),
        kstatus("False", reason::MODEL_NOT_READY, RECONCILING)
    );
    assert!(
        w.cond(READY)
            .unwrap()
            .2
            .contains("FineTuneJob clause-review-lora (Succeeded) has no result of the operator's evaluation yet"),
        "{:?}",
        w.cond(READY)
    );
}

#[test]
fn new_to_pending_stalled_when_the_model_cannot_be_served() {
    type Setup = fn(&mut World);
    let cases: [(&str, Setup); 6] = [
        (reason::MODEL_NOT_FOUND, |w| w.seen.ftj = None),
        (reason::MODEL_TARGETS_MISSED, |w| w.judged().passed = false),
        (reason::LINEAGE_MISMATCH, |w| {
            w.seen.trained.as_mut().unwrap().chain = OnChain::Recorded {
                job_id: "0x01".into(),
                model_digest: NEW.into(),
                passed: true,
            }
        }),
        (reason::SOURCE_NOT_SUPPORTED, |w| {
            w.md.spec.model_ref.fine_tune_job = None;
            w.md.spec.model_ref.rlhf_round = Some("round-1".into());
        }),
        (reason::STORAGE_UNSUPPORTED, |w| {
            w.judged().model_uri = "s3://models/x".into();
        }),
        (reason::HOST_PATH_REFUSED, |w| {
            w.judged().model_uri = "file:///etc".into();
        }),
    ];
    for (why, setup) in cases {
        let mut w = World::new();
        setup(&mut w);
        let d = w.step();
        assert!(d.apply.is_empty(), "{why}: nothing is created");
        assert_eq!(w.phase(), Phase::Pending, "{why}");
        assert_eq!(w.kstatus(), kstatus("False", why, STALLED), "{why}");
    }
}

/// What the job's status says (Succeeded, with another digest) decides nothing: the server
/// loads the weights the operator's evaluation judged, and with a ledger only once the chain
/// has the same record.
#[test]
fn the_operators_judgment_not_the_jobs_status_names_the_model() {
    let mut w = World::new();
    let st = w.seen.ftj.as_mut().unwrap().status.as_mut().unwrap();
    st.result.as_mut().unwrap().model_digest = Some(NEW.into());
    w.seen.trained.as_mut().unwrap().chain = OnChain::Missing {
        job_id: "0x01".into(),
    };
    let d = w.step();
    assert!(
        d.apply.is_empty(),
        "nothing before the chain has the record"
    );
    assert_eq!(
        w.kstatus(),
        kstatus("False", reason::MODEL_NOT_READY, RECONCILING)
    );
    assert!(
        w.cond(READY)
            .unwrap()
            .2
            .contains("ModelRegistry.trainings(0x01)")
    );
    w.seen.trained.as_mut().unwrap().chain = OnChain::Recorded {
        job_id: "0x01".into(),
        model_digest: OLD.to_uppercase(),
        passed: true,
    };
    w.step();
    assert_eq!(w.phase(), Phase::Rolling);
    let st = w.md.status.clone().unwrap();
    assert_eq!(
        st.latest_revision.as_deref(),
        Some(OLD),
        "the judged digest"
    );
    let Some(Apply::Deployment(dep)) = w.last.as_ref().unwrap().apply.first() else {
        panic!("the server Deployment is applied")
    };
    let args = dep
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
        .args
        .clone()
        .unwrap();
    let at = args.iter().position(|a| a == "--expect-sha256").unwrap();
    assert_eq!(args[at + 1], OLD, "the server checks the judged weights");
}

#[test]
fn pending_to_rolling_creates_the_server_and_its_service() {
    let mut w = World::new();
    w.step();
    assert_eq!(
        w.applied(),
        s(&["Deployment/clause-review", "Service/clause-review"])
    );
    assert_eq!(w.phase(), Phase::Rolling);
    assert_eq!(w.kstatus(), kstatus("False", reason::STARTING, RECONCILING));
    let st = w.md.status.clone().unwrap();
    assert_eq!(st.ready_replicas.as_deref(), Some("0/2"));
    assert_eq!(st.url.as_deref(), Some("http://clause-review.legal.svc/v1"));
    assert_eq!(st.latest_revision.as_deref(), Some(OLD));
    assert_eq!(st.observed_generation, Some(1));
    assert_eq!(w.last.as_ref().unwrap().requeue, Duration::from_secs(5));
}

#[test]
fn rolling_to_ready_once_every_replica_serves_and_an_idle_resync_writes_nothing() {
    let mut w = World::new();
    w.step();
    w.roll_out(None);
    let d = w.step();
    assert!(d.apply.is_empty(), "nothing changed: {:?}", w.applied());
    assert_eq!(d.requeue, Duration::from_secs(300));
    assert_eq!(w.phase(), Phase::Ready);
    assert_eq!(w.kstatus(), kstatus("True", reason::SERVING, "-"));
    assert_eq!(
        w.cond(READY).unwrap().2,
        "2/2 replicas serve revision aaaaaaaaaaaa"
    );
    let before = w.md.status.clone();
    let d = w.step();
    assert!(d.apply.is_empty() && d.delete.is_empty());
    assert_eq!(w.md.status, before, "an idle resync changes no status");
}

#[test]
fn ready_to_degraded_and_back_with_the_available_replicas() {
    let mut w = World::serving();
    w.roll_out(Some(1));
    w.step();
    assert_eq!(w.phase(), Phase::Degraded);
    assert_eq!(
        w.kstatus(),
        kstatus("False", reason::REPLICAS_UNAVAILABLE, STALLED)
    );
    assert!(
        w.cond(READY)
            .unwrap()
            .2
            .contains("kubectl describe deployment clause-review")
    );
    w.roll_out(None);
    w.step();
    assert_eq!(w.phase(), Phase::Ready);
    assert_eq!(w.kstatus(), kstatus("True", reason::SERVING, "-"));
}

#[test]
fn ready_to_rolling_for_a_new_revision_without_canary() {
    let mut w = World::serving();
    w.model(NEW);
    w.step();
    assert_eq!(w.applied(), s(&["Deployment/clause-review"]));
    assert_eq!(
        w.phase(),
        Phase::Rolling,
        "the old status says nothing of the new spec"
    );
    assert_eq!(w.kstatus(), kstatus("False", reason::ROLLING, RECONCILING));
    let st = w.md.status.clone().unwrap();
    assert_eq!(st.latest_revision.as_deref(), Some(NEW));
    assert_eq!(st.previous_revision.as_deref(), Some(OLD));
    w.roll_out(None);
    w.step();
    assert_eq!(w.phase(), Phase::Ready);
    assert_eq!(
        w.md.status.as_ref().unwrap().previous_revision.as_deref(),
        Some(OLD),
        "the previous revision stays known"
    );
}

#[test]
fn ready_to_canary_to_promoted() {
    let mut w = World::serving();
    w.spec(|md| {
        md.spec.replicas = Some(4);
        md.spec.canary = Some(modelcommons_crds::deployment::Canary {
            traffic_percent: 25,
        });
    });
    w.model(NEW);
    w.step();
    assert_eq!(
        w.applied(),
        s(&[
            "Deployment/clause-review",
            "Deployment/clause-review-canary"
        ])
    );
    let replicas = |d: &Option<Deployment>| d.as_ref().unwrap().spec.as_ref().unwrap().replicas;
    assert_eq!(replicas(&w.seen.stable), Some(3));
    assert_eq!(replicas(&w.seen.canary), Some(1));
    let digest = |d: &Option<Deployment>| {
        d.as_ref().unwrap().annotations()[super::DIGEST_ANNOTATION].clone()
    };
    assert_eq!(
        digest(&w.seen.stable),
        OLD,
        "the stable revision keeps serving"
    );
    assert_eq!(digest(&w.seen.canary), NEW);
    assert_eq!(w.phase(), Phase::Rolling);
    assert_eq!(
        w.kstatus(),
        kstatus("False", reason::CANARY_STARTING, RECONCILING)
    );
    w.roll_out(None);
    w.step();
    assert_eq!(w.phase(), Phase::Ready);
    assert_eq!(w.kstatus(), kstatus("True", reason::CANARY_SERVING, "-"));
    let msg = w.cond(READY).unwrap().2;
    assert!(
        msg.contains(
            "1 of 4 replicas (~25% of traffic) serve revision bbbbbbbbbbbb beside 3 on aaaaaaaaaaaa"
        ),
        "{msg}"
    );
    assert_eq!(
        w.md.status.as_ref().unwrap().ready_replicas.as_deref(),
        Some("4/4")
    );

    w.spec(|md| {
        md.spec.canary = Some(modelcommons_crds::deployment::Canary {
            traffic_percent: 100,
        })
    });
    let d = w.step();
    let promoted = d.delete[0].event.clone().unwrap();
    assert_eq!(promoted.reason, reason::PROMOTED);
    assert_eq!(w.deleted(), s(&["Deployment/clause-review-canary"]));
    assert_eq!(w.applied(), s(&["Deployment/clause-review"]));
    assert_eq!(digest(&w.seen.stable), NEW);
    assert_eq!(replicas(&w.seen.stable), Some(4));
    assert_eq!(w.phase(), Phase::Rolling);
    assert_eq!(
        w.md.status.as_ref().unwrap().previous_revision.as_deref(),
        Some(OLD)
    );
    w.roll_out(None);
    w.step();
    assert_eq!(w.kstatus(), kstatus("True", reason::SERVING, "-"));
}

#[test]
fn ready_to_pending_when_the_model_goes_keeps_the_servers() {
    let mut w = World::serving();
    w.seen.ftj = None;
    let d = w.step();
    assert!(
        d.apply.is_empty() && d.delete.is_empty(),
        "the servers keep running"
    );
    assert_eq!(w.phase(), Phase::Pending);
    assert_eq!(
        w.kstatus(),
        kstatus("False", reason::MODEL_NOT_FOUND, STALLED)
    );
    assert!(
        w.md.status.as_ref().unwrap().url.is_some(),
        "their URL stays"
    );
}

fn route(w: &mut World) {
    w.spec(|md| {
        md.spec.route = Some(modelcommons_crds::deployment::Route {
            parent_refs: vec![modelcommons_crds::deployment::GatewayRef {
                name: "public".into(),
                namespace: Some("gateways".into()),
                section_name: None,
            }],
            hostnames: vec!["models.example.org".into()],
        })
    });
}

#[test]
fn a_route_without_the_gateway_api_says_so_and_looks_again() {
    let mut w = World::serving();
    route(&mut w);
    w.seen.gateway_api = Some(false);
    let d = w.step();
    assert_eq!(
        d.requeue,
        Duration::from_secs(30),
        "looks again for the Gateway API"
    );
    let (st, why, msg) = w.cond(ROUTED).unwrap();
    assert_eq!(
        (st.as_str(), why.as_str()),
        ("False", reason::GATEWAY_API_MISSING)
    );
    assert!(msg.contains("install them"), "{msg}");
    assert_eq!(w.phase(), Phase::Ready, "the Service serves meanwhile");
}

#[test]
fn a_route_applied_then_refused_then_removed() {
    let mut w = World::serving();
    route(&mut w);
    w.seen.gateway_api = Some(true);
    w.step();
    assert_eq!(w.applied(), s(&["HTTPRoute/clause-review"]));
    let r = w.seen.route.clone().unwrap();
    assert_eq!(r.spec.parent_refs[0].name, "public");
    assert_eq!(r.spec.hostnames, s(&["models.example.org"]));
    assert_eq!(r.spec.rules[0].backend_refs[0].name, "clause-review");
    assert_eq!(r.spec.rules[0].backend_refs[0].weight, Some(100));
    assert_eq!(r.owner_references()[0].kind, "ModelDeployment");
    assert_eq!(w.cond(ROUTED).unwrap().1, reason::ROUTE_APPLIED);

    let refused: HTTPRoute = yaml(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: x}}\nspec: {{}}\n{REFUSED}"
    ));
    w.seen.route.as_mut().unwrap().status = refused.status;
    let d = w.step().clone();
    assert!(
        d.apply.is_empty(),
        "a Gateway's status is not ours to rewrite"
    );
    let (st, why, msg) = w.cond(ROUTED).unwrap();
    assert_eq!(
        (st.as_str(), why.as_str()),
        ("False", reason::ROUTE_NOT_ACCEPTED)
    );
    assert!(
        msg.contains("Gateway public did not accept the route: no listener allows"),
        "{msg}"
    );
    assert_eq!(d.requeue, Duration::from_secs(30));

    w.spec(|md| md.spec.route = None);
    w.step();
    assert_eq!(w.deleted(), s(&["Route/clause-review"]));
    assert!(w.cond(ROUTED).is_none(), "Routed goes with the route");
}

#[test]
fn a_routed_canary_splits_by_weights_over_per_revision_services() {
    let mut w = World::serving();
    route(&mut w);
    w.seen.gateway_api = Some(true);
    w.step();
    w.spec(|md| {
        md.spec.canary = Some(modelcommons_crds::deployment::Canary {
            traffic_percent: 10,
        })
    });
    w.model(NEW);
    w.step();
    let applied = w.applied();
    for name in [
        "Service/clause-review-stable",
        "Service/clause-review-canary",
        "HTTPRoute/clause-review",
    ] {
        assert!(applied.contains(&name.to_string()), "{name} in {applied:?}");
    }
    let weights: Vec<_> = w.seen.route.as_ref().unwrap().spec.rules[0]
        .backend_refs
        .iter()
        .map(|b| (b.name.clone(), b.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("clause-review-stable".to_string(), Some(90)),
            ("clause-review-canary".to_string(), Some(10))
        ]
    );
    let selector = |n: &str| {
        w.seen.services[n].spec.clone().unwrap().selector.unwrap()[super::children::REVISION]
            .clone()
    };
    assert_eq!(selector("clause-review-stable"), "aaaaaaaaaaaa");
    assert_eq!(selector("clause-review-canary"), "bbbbbbbbbbbb");
    w.roll_out(None);
    w.step();
    assert!(
        w.cond(READY)
            .unwrap()
            .2
            .contains("10% of traffic (HTTPRoute weights)")
    );

    w.spec(|md| md.spec.canary = None);
    w.step();
    let deleted = w.deleted();
    for name in [
        "Deployment/clause-review-canary",
        "Service/clause-review-stable",
        "Service/clause-review-canary",
    ] {
        assert!(deleted.contains(&name.to_string()), "{name} in {deleted:?}");
    }
}

#[test]
fn autoscaling_owns_the_replicas_and_goes_with_the_spec() {
    let mut w = World::serving();
    w.spec(|md| {
        md.spec.replicas = None;
        md.spec.autoscaling = Some(modelcommons_crds::deployment::Autoscaling {
            min_replicas: 2,
            max_replicas: 6,
            target_concurrency: None,
        });
    });
    w.step();
    assert_eq!(
        w.applied(),
        s(&[
            "Deployment/clause-review",
            "HorizontalPodAutoscaler/clause-review"
        ])
    );
    let dep = w.seen.stable.clone().unwrap();
    assert_eq!(
        dep.spec.unwrap().replicas,
        None,
        "the autoscaler sets the replicas"
    );
    let hpa = w.seen.hpa.clone().unwrap().spec.unwrap();
    assert_eq!((hpa.min_replicas, hpa.max_replicas), (Some(2), 6));
    let target = hpa.metrics.unwrap()[0]
        .pods
        .clone()
        .unwrap()
        .target
        .average_value;
    assert_eq!(target.map(|q| q.0).as_deref(), Some("8"));
    w.spec(|md| {
        md.spec.autoscaling = None;
        md.spec.replicas = Some(2);
    });
    w.step();
    assert_eq!(w.deleted(), s(&["Autoscaler/clause-review"]));
}

#[test]
fn the_server_pod_is_restricted_and_owned() {
    let mut w = World::new();
    w.step();
    let d = w.seen.stable.clone().unwrap();
    let owner = &d.owner_references()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("ModelDeployment", Some(true))
    );
    let pod = d.spec.unwrap().template.spec.unwrap();
    assert_eq!(pod.automount_service_account_token, Some(false));
    let psc = pod.security_context.unwrap();
    assert_eq!(
        (psc.run_as_non_root, psc.run_as_user),
        (Some(true), Some(65532))
    );
    let c = &pod.containers[0];
    let sc = c.security_context.clone().unwrap();
    assert_eq!(sc.allow_privilege_escalation, Some(false));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    let args = c.args.clone().unwrap();
    let at = |flag: &str| args[args.iter().position(|a| a == flag).unwrap() + 1].clone();
    assert_eq!(at("--model"), "/mnt/pvc/models/clause-review-v1");
    assert_eq!(at("--expect-sha256"), OLD);
    assert_eq!(at("--api-keys"), super::KEYS_DIR);
    assert_eq!(at("--allowed-consumers"), "legal-ops-agent");
    assert_eq!(at("--requests-per-minute"), "60");
    let vols = pod.volumes.unwrap();
    assert_eq!(
        vols[0].persistent_volume_claim.clone().unwrap().claim_name,
        "models"
    );
    let keys = vols[1].projected.clone().unwrap().sources.unwrap();
    assert_eq!(
        keys[0].secret.clone().unwrap().name,
        "clause-review-api-keys"
    );
}

#[test]
fn replicas_split_by_traffic_percent() {
    assert_eq!(split_replicas(4, 25), (3, 1));
    assert_eq!(split_replicas(4, 0), (4, 0));
    assert_eq!(
        split_replicas(1, 50),
        (1, 1),
        "one canary beside at least one stable"
    );
    assert_eq!(split_replicas(10, 99), (1, 9));
}
