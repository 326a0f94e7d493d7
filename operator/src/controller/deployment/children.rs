//! The typed children of a ModelDeployment: the server Deployment(s), the Services, the
//! HorizontalPodAutoscaler and the HTTPRoute. Pure builders (no I/O).

use std::collections::BTreeMap;

use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::autoscaling::v2::{
    CrossVersionObjectReference, HorizontalPodAutoscaler, HorizontalPodAutoscalerSpec,
    MetricIdentifier, MetricSpec, MetricTarget, PodsMetricSource,
};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, HTTPGetAction, HostPathVolumeSource,
    PersistentVolumeClaimVolumeSource, PodSpec, PodTemplateSpec, Probe, ProjectedVolumeSource,
    ResourceRequirements, SecretProjection, Service, ServicePort, ServiceSpec, Volume, VolumeMount,
    VolumeProjection,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use modelcommons_crds::contract::{
    KEYS_DIR, PVC_ROOT, SERVER_PORT, TRAINER_BIN, container_path, serve_args,
};
use modelcommons_crds::deployment::{Autoscaling, ModelDeployment, Route, ServeResources};

use super::decide::Resolved;
use crate::controller::LABEL_INSTANCE;
use crate::runtime::children::{meta, restricted_container, restricted_pod};
use crate::runtime::gateway::{
    GROUP, HTTPBackendRef, HTTPPathMatch, HTTPRoute, HTTPRouteMatch, HTTPRouteRule, HTTPRouteSpec,
    ParentReference,
};

/// The annotation naming the model digest a server Deployment serves.
pub const DIGEST_ANNOTATION: &str = "modelcommons.dev/model-digest";
/// The annotation naming the model URI a server Deployment serves.
pub const URI_ANNOTATION: &str = "modelcommons.dev/model-uri";
/// The pod label telling the stable revision's pods from the canary's.
pub const ROLE: &str = "modelcommons.dev/role";
/// The pod label naming the revision (the digest's first 12 hex digits).
pub const REVISION: &str = "modelcommons.dev/revision";
/// `app.kubernetes.io/name` of the server pods.
pub const SERVER_APP: &str = "modelcommons-server";
const APP_NAME: &str = "app.kubernetes.io/name";

/// A revision's short name: the digest's first 12 hex digits.
pub fn short(digest: &str) -> String {
    digest.chars().take(12).collect()
}

fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn quantity(s: impl Into<String>) -> Quantity {
    Quantity(s.into())
}

/// The model's volume and where the server finds it.
fn model_volume(uri: &str) -> (Volume, VolumeMount) {
    if let Some(p) = uri.strip_prefix("file://") {
        (
            Volume {
                name: "model".into(),
                host_path: Some(HostPathVolumeSource {
                    path: p.into(),
                    type_: Some("Directory".into()),
                }),
                ..Default::default()
            },
            VolumeMount {
                name: "model".into(),
                mount_path: p.into(),
                read_only: Some(true),
                ..Default::default()
            },
        )
    } else {
        let rest = uri.trim_start_matches("pvc://");
        let claim = rest.split('/').next().unwrap_or_default();
        (
            Volume {
                name: "model".into(),
                persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
                    claim_name: claim.into(),
                    read_only: Some(true),
                }),
                ..Default::default()
            },
            VolumeMount {
                name: "model".into(),
                mount_path: format!("{PVC_ROOT}/{claim}"),
                read_only: Some(true),
                ..Default::default()
            },
        )
    }
}

fn http_probe(path: &str, period: i32) -> Probe {
    Probe {
        http_get: Some(HTTPGetAction {
            path: Some(path.into()),
            port: IntOrString::String("http".into()),
            ..Default::default()
        }),
        period_seconds: Some(period),
        ..Default::default()
    }
}

/// The server Deployment `name` (the stable one is named like the ModelDeployment, a canary
/// `<name>-canary`) serving `model` on `replicas` (None: the autoscaler decides).
pub fn server_deployment(
    md: &ModelDeployment,
    image: &str,
    model: &Resolved,
    name: &str,
    replicas: Option<u32>,
) -> Deployment {
    let instance = md.name_any();
    let role = if name == instance { "stable" } else { "canary" };
    let selector = map(&[
        (LABEL_INSTANCE, &instance),
        (APP_NAME, SERVER_APP),
        (ROLE, role),
    ]);
    let mut pod_labels = meta(md, name, &[(APP_NAME, SERVER_APP)])
        .labels
        .unwrap_or_default();
    pod_labels.insert(REVISION.into(), short(&model.digest));
    pod_labels.insert(ROLE.into(), role.into());
    let mut metadata = meta(md, name, &[(APP_NAME, SERVER_APP)]);
    metadata.annotations = Some(map(&[
        (DIGEST_ANNOTATION, &model.digest),
        (URI_ANNOTATION, &model.uri),
    ]));
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: replicas.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector),
                ..Default::default()
            },
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: Some(pod_labels),
                    ..Default::default()
                }),
                spec: Some(server_pod(md, image, model)),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The server pod: `modelcommons-trainer serve` with the model and the API keys mounted
/// read-only, restricted, with no Kubernetes API token.
fn server_pod(md: &ModelDeployment, image: &str, model: &Resolved) -> PodSpec {
    let (vol, mount) = model_volume(&model.uri);
    let mut volumes = vec![vol];
    let mut mounts = vec![mount];
    if !md.spec.access.public {
        let (v, m) = api_keys_volume(&md.spec.access.api_key_secrets);
        volumes.push(v);
        mounts.push(m);
    }
    let model_dir = container_path(&model.uri).unwrap_or_default();
    PodSpec {
        // The server needs no Kubernetes API: no token in a pod that serves tenants' traffic.
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod()),
        containers: vec![Container {
            name: "server".into(),
            image: Some(image.into()),
            command: Some(vec![TRAINER_BIN.into()]),
            args: Some(serve_args(md, &model_dir, &model.digest)),
            ports: Some(vec![ContainerPort {
                name: Some("http".into()),
                container_port: SERVER_PORT,
                ..Default::default()
            }]),
            readiness_probe: Some(http_probe("/readyz", 5)),
            liveness_probe: Some(http_probe("/healthz", 10)),
            resources: Some(server_resources(&md.spec.resources)),
            volume_mounts: Some(mounts),
            security_context: Some(restricted_container()),
            ..Default::default()
        }],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// The API-key Secrets, projected into one directory (one file per consumer).
fn api_keys_volume(secrets: &[String]) -> (Volume, VolumeMount) {
    let sources = secrets
        .iter()
        .map(|s| VolumeProjection {
            secret: Some(SecretProjection {
                name: s.clone(),
                ..Default::default()
            }),
            ..Default::default()
        })
        .collect();
    (
        Volume {
            name: "api-keys".into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(sources),
                ..Default::default()
            }),
            ..Default::default()
        },
        VolumeMount {
            name: "api-keys".into(),
            mount_path: KEYS_DIR.into(),
            read_only: Some(true),
            ..Default::default()
        },
    )
}

/// Requests (default 2 CPUs, 8Gi) and the GPUs as requests and limits.
fn server_resources(r: &ServeResources) -> ResourceRequirements {
    let mut requests = BTreeMap::from([
        (
            "cpu".to_string(),
            quantity(r.cpu.clone().unwrap_or_else(|| "2".into())),
        ),
        (
            "memory".to_string(),
            quantity(r.memory.clone().unwrap_or_else(|| "8Gi".into())),
        ),
    ]);
    let mut limits = None;
    if r.gpus > 0 {
        requests.insert("nvidia.com/gpu".into(), quantity(r.gpus.to_string()));
        limits = Some(BTreeMap::from([(
            "nvidia.com/gpu".to_string(),
            quantity(r.gpus.to_string()),
        )]));
    }
    ResourceRequirements {
        requests: Some(requests),
        limits,
        ..Default::default()
    }
}

fn http_service(md: &ModelDeployment, name: &str, selector: BTreeMap<String, String>) -> Service {
    Service {
        metadata: meta(md, name, &[]),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: 80,
                target_port: Some(IntOrString::String("http".into())),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The Service in front of every server pod of the deployment (both revisions of a canary).
pub fn service(md: &ModelDeployment) -> Service {
    let instance = md.name_any();
    http_service(
        md,
        &instance,
        map(&[(LABEL_INSTANCE, &instance), (APP_NAME, SERVER_APP)]),
    )
}

/// A Service in front of the server pods of one revision (a routed canary's two backends).
pub fn revision_service(md: &ModelDeployment, name: &str, digest: &str) -> Service {
    let instance = md.name_any();
    http_service(
        md,
        name,
        map(&[
            (LABEL_INSTANCE, &instance),
            (APP_NAME, SERVER_APP),
            (REVISION, &short(digest)),
        ]),
    )
}

/// The HorizontalPodAutoscaler of the stable Deployment: scales on the servers' in-flight
/// requests (`modelcommons_serve_http_requests_in_flight`, served to the HPA by a
/// custom-metrics adapter such as prometheus-adapter).
pub fn autoscaler(md: &ModelDeployment, a: &Autoscaling) -> HorizontalPodAutoscaler {
    let name = md.name_any();
    HorizontalPodAutoscaler {
        metadata: meta(md, &name, &[]),
        spec: Some(HorizontalPodAutoscalerSpec {
            scale_target_ref: CrossVersionObjectReference {
                api_version: Some("apps/v1".into()),
                kind: "Deployment".into(),
                name: name.clone(),
            },
            // HPAs cannot scale to zero without the HPAScaleToZero feature gate.
            min_replicas: Some(i32::try_from(a.min_replicas.max(1)).unwrap_or(i32::MAX)),
            max_replicas: i32::try_from(a.max_replicas).unwrap_or(i32::MAX),
            metrics: Some(vec![MetricSpec {
                type_: "Pods".into(),
                pods: Some(PodsMetricSource {
                    metric: MetricIdentifier {
                        name: "modelcommons_serve_http_requests_in_flight".into(),
                        ..Default::default()
                    },
                    target: MetricTarget {
                        type_: "AverageValue".into(),
                        average_value: Some(quantity(
                            a.target_concurrency.unwrap_or(8).to_string(),
                        )),
                        ..Default::default()
                    },
                }),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The HTTPRoute of `spec.route`: its one rule sends traffic to `backends` — (Service, weight).
pub fn http_route(md: &ModelDeployment, route: &Route, backends: &[(String, u32)]) -> HTTPRoute {
    let parent_refs = route
        .parent_refs
        .iter()
        .map(|p| ParentReference {
            group: Some(GROUP.into()),
            kind: Some("Gateway".into()),
            name: p.name.clone(),
            namespace: p.namespace.clone(),
            section_name: p.section_name.clone(),
        })
        .collect();
    let backend_refs = backends
        .iter()
        .map(|(svc, weight)| HTTPBackendRef {
            group: Some(String::new()),
            kind: Some("Service".into()),
            name: svc.clone(),
            port: Some(80),
            weight: Some(i32::try_from(*weight).unwrap_or(100)),
        })
        .collect();
    let mut r = HTTPRoute::new(
        &md.name_any(),
        HTTPRouteSpec {
            parent_refs,
            hostnames: route.hostnames.clone(),
            rules: vec![HTTPRouteRule {
                matches: vec![HTTPRouteMatch {
                    path: Some(HTTPPathMatch {
                        type_: "PathPrefix".into(),
                        value: "/".into(),
                    }),
                }],
                backend_refs,
            }],
        },
    );
    r.metadata = meta(md, &md.name_any(), &[]);
    r
}
