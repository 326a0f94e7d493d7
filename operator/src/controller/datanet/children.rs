//! The typed children of a Datanet's curation: the Job (in the trusted namespace) and its
//! pod, named by the Datanet's uid, version and manifest digest.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, Container, EnvFromSource, EnvVar, HostPathVolumeSource, KeyToPath,
    PodSpec, ResourceRequirements, SecretEnvSource, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use modelcommons_crds::datanet::Datanet;

use super::{
    ANNOTATION_RETRY, CURATION_APP, LABEL_DATANET_NAMESPACE, LABEL_DATANET_UID, MANIFEST_DIR,
    MANIFEST_KEY, RESULT_FILE, SPEC_ENV,
};
use crate::controller::finetune::volumes;
use crate::controller::{Config, Error, LABEL_INSTANCE, LABEL_MANAGED_BY};
use crate::curate;
use crate::runtime::children::{MANAGED_BY, restricted_container, restricted_pod, trusted_job};

/// The name of the curation Job of `version` of the Datanet with uid `uid` and manifest
/// `digest`, in the trusted namespace (uids keep Datanets of every namespace apart there).
pub fn job_name(uid: &str, version: u32, digest: &str) -> String {
    format!("curate-{uid}-v{version}-{}", &digest[..8.min(digest.len())])
}

/// The ConfigMap that hands the manifest to curation Job `job`.
pub(super) fn manifest_copy(job: &str) -> String {
    format!("{job}-manifest")
}

/// The Secret that hands the tenant's object-store credentials to curation Job `job`.
pub(super) fn credentials_copy(job: &str) -> String {
    format!("{job}-credentials")
}

/// The curation Job, in the operator's trusted namespace.
pub fn curation_job(
    dn: &Datanet,
    config: &Config,
    version: u32,
    digest: &str,
) -> Result<Job, Error> {
    let name = job_name(&dn.uid().unwrap_or_default(), version, digest);
    let mut args = vec![
        "curate".to_string(),
        "--datanet".into(),
        format!("{}/{}", dn.namespace().unwrap_or_default(), dn.name_any()),
        "--version".into(),
        version.to_string(),
        "--artifact-store".into(),
        config.artifact_store.clone(),
        "--manifest".into(),
        format!("file://{MANIFEST_DIR}/{MANIFEST_KEY}"),
        "--manifest-dir".into(),
        MANIFEST_DIR.into(),
    ];
    let (mut vols, mut mounts) = volumes(&[config.artifact_store.as_str()]);
    vols.push(Volume {
        name: "manifest".into(),
        config_map: Some(ConfigMapVolumeSource {
            name: manifest_copy(&name),
            items: Some(vec![KeyToPath {
                key: MANIFEST_KEY.into(),
                path: MANIFEST_KEY.into(),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    });
    mounts.push(read_only_mount("manifest", MANIFEST_DIR));
    for (i, dev) in config.dev_host_dirs.iter().enumerate() {
        // Dev mode only (the test bed, the demo): the host directory, read-only, at its own
        // path, so `file://` contributions name the same path on the host and in the pod.
        let dev = dev.display().to_string();
        let vol = format!("dev-data-{i}");
        vols.push(Volume {
            name: vol.clone(),
            host_path: Some(HostPathVolumeSource {
                path: dev.clone(),
                type_: Some("Directory".into()),
            }),
            ..Default::default()
        });
        mounts.push(read_only_mount(&vol, &dev));
        args.extend(["--files-under".into(), dev]);
    }
    let (labels, annotations) = curation_labels(dn, version);
    let pod = curation_pod(dn, config, &name, args, vols, mounts);
    let metadata = ObjectMeta {
        name: Some(name),
        namespace: Some(config.trusted_namespace.clone()),
        labels: Some(labels),
        annotations: Some(annotations),
        ..Default::default()
    };
    Ok(trusted_job(metadata, 2, 6 * 3600, pod))
}

/// The labels (by which the operator finds its curation Jobs) and annotations of a curation
/// Job and its pods.
fn curation_labels(
    dn: &Datanet,
    version: u32,
) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let ns = dn.namespace().unwrap_or_default();
    let uid = dn.uid().unwrap_or_default();
    let labels = BTreeMap::from(
        [
            (LABEL_MANAGED_BY, MANAGED_BY.to_string()),
            ("app.kubernetes.io/name", CURATION_APP.to_string()),
            (LABEL_INSTANCE, dn.name_any()),
            (LABEL_DATANET_NAMESPACE, ns.clone()),
            (LABEL_DATANET_UID, uid),
            ("modelcommons.dev/datanet-version", version.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v)),
    );
    let annotations = BTreeMap::from([
        (
            "modelcommons.dev/datanet".to_string(),
            format!("{ns}/{}", dn.name_any()),
        ),
        (
            ANNOTATION_RETRY.to_string(),
            dn.annotations()
                .get(ANNOTATION_RETRY)
                .cloned()
                .unwrap_or_default(),
        ),
    ]);
    (labels, annotations)
}

pub(super) fn read_only_mount(name: &str, path: &str) -> VolumeMount {
    VolumeMount {
        name: name.into(),
        mount_path: path.into(),
        read_only: Some(true),
        ..Default::default()
    }
}

/// The curation pod: `modelcommons-operator curate`, with no API access (it reads and writes
/// files only), its failure's last log lines as its termination message (tenants cannot
/// read logs in the trusted namespace).
pub(super) fn curation_pod(
    dn: &Datanet,
    config: &Config,
    job: &str,
    args: Vec<String>,
    volumes: Vec<Volume>,
    mounts: Vec<VolumeMount>,
) -> PodSpec {
    let env = |name: &str, value: String| EnvVar {
        name: name.into(),
        value: Some(value),
        ..Default::default()
    };
    // Object-store credentials as the environment object_store reads: the operator's copy
    // of the tenant's Secret, beside the Job. The two variables set here win over any of the
    // same name in it.
    let env_from = dn
        .spec
        .contributions
        .credentials_secret_ref
        .as_ref()
        .map(|_| {
            vec![EnvFromSource {
                secret_ref: Some(SecretEnvSource {
                    name: credentials_copy(job),
                    ..Default::default()
                }),
                ..Default::default()
            }]
        });
    PodSpec {
        automount_service_account_token: Some(false),
        security_context: Some(restricted_pod()),
        containers: vec![Container {
            name: "curate".into(),
            image: Some(config.operator_image.clone()),
            args: Some(args),
            env: Some(vec![
                env(
                    SPEC_ENV,
                    serde_json::to_string(&dn.spec).unwrap_or_default(),
                ),
                env(curate::ALLOW_ENV, config.egress.to_env()),
            ]),
            env_from: Some(env_from.unwrap_or_default()),
            volume_mounts: Some(mounts),
            termination_message_path: Some(RESULT_FILE.into()),
            termination_message_policy: Some("FallbackToLogsOnError".into()),
            resources: Some(ResourceRequirements {
                requests: Some(BTreeMap::from([
                    ("cpu".to_string(), Quantity("250m".into())),
                    ("memory".to_string(), Quantity("256Mi".into())),
                ])),
                ..Default::default()
            }),
            security_context: Some(restricted_container()),
            ..Default::default()
        }],
        volumes: Some(volumes),
        ..Default::default()
    }
}

/// The Role and RoleBinding a tenant applies in its namespace so that the operator may read
/// the one Secret its Datanet names (and nothing else of the namespace's Secrets), as
/// `kubectl` commands.
pub fn credentials_role(ns: &str, secret: &str, operator: &str) -> String {
    format!(
        "kubectl -n {ns} create role modelcommons-read-{secret} --verb=get --resource=secrets --resource-name={secret} && kubectl -n {ns} create rolebinding modelcommons-read-{secret} --role=modelcommons-read-{secret} --serviceaccount={operator}"
    )
}
