//! The typed child toolkit: every object the operator creates is a `k8s-openapi` struct (a
//! misspelt field does not compile), owned by its parent, labelled the same way, with the
//! restricted security context, and server-side applied only when its content changed.

use std::collections::BTreeMap;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    Capabilities, PodSecurityContext, PodSpec, PodTemplateSpec, SeccompProfile, SecurityContext,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::{Resource, ResourceExt};

use crate::controller::{Error, FIELD_MANAGER, LABEL_INSTANCE, LABEL_MANAGED_BY};

/// The value of `app.kubernetes.io/managed-by` on every child.
pub const MANAGED_BY: &str = "modelcommons-operator";
/// The annotation holding the hash of what the operator last applied to a child.
pub const APPLIED_ANNOTATION: &str = "modelcommons.dev/applied-hash";
/// The user every pod the operator starts runs as (distroless `nonroot`).
pub const NONROOT_UID: i64 = 65532;

/// The owner reference of a child of `parent` (controller, blocking its deletion).
pub fn owner_ref<K: Resource<DynamicType = ()>>(parent: &K) -> OwnerReference {
    OwnerReference {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        name: parent.name_any(),
        uid: parent.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The labels of every child of the object `instance`, plus `extra`.
pub fn labels(instance: &str, extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut l = BTreeMap::from([
        (LABEL_MANAGED_BY.to_string(), MANAGED_BY.to_string()),
        (LABEL_INSTANCE.to_string(), instance.to_string()),
    ]);
    l.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    l
}

/// `name` in the parent's namespace, owned by it, with [`labels`] and `extra` labels.
pub fn meta<K: Resource<DynamicType = ()>>(
    parent: &K,
    name: &str,
    extra: &[(&str, &str)],
) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: parent.namespace(),
        labels: Some(labels(&parent.name_any(), extra)),
        owner_references: Some(vec![owner_ref(parent)]),
        ..Default::default()
    }
}

/// The pod-level security context of the restricted Pod Security Standard.
pub fn restricted_pod() -> PodSecurityContext {
    PodSecurityContext {
        run_as_non_root: Some(true),
        run_as_user: Some(NONROOT_UID),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".into(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The container-level security context of the restricted Pod Security Standard, with a
/// read-only root filesystem.
pub fn restricted_container() -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        read_only_root_filesystem: Some(true),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".into()]),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// How long a finished trusted Job (curation, evaluation) stays for its result to be read.
pub const TRUSTED_JOB_TTL_SECONDS: i32 = 86400;

/// A one-shot Job of the operator's in its trusted namespace: its pods labelled as the Job,
/// never restarted in place, retried `backoff_limit` times, stopped after `deadline_seconds`,
/// removed [`TRUSTED_JOB_TTL_SECONDS`] after it finishes.
pub fn trusted_job(
    metadata: ObjectMeta,
    backoff_limit: i32,
    deadline_seconds: i64,
    pod: PodSpec,
) -> Job {
    let labels = metadata.labels.clone();
    Job {
        metadata,
        spec: Some(JobSpec {
            backoff_limit: Some(backoff_limit),
            active_deadline_seconds: Some(deadline_seconds),
            ttl_seconds_after_finished: Some(TRUSTED_JOB_TTL_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels,
                    ..Default::default()
                }),
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    ..pod
                }),
            },
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The hash of a child's desired content (what the operator writes).
pub fn content_hash<T: serde::Serialize>(desired: &T) -> String {
    use sha2::Digest;
    let v = serde_json::to_value(desired).unwrap_or_default();
    let digest = sha2::Sha256::digest(crate::ledger::spec::canonical_json(&v).as_bytes());
    digest.iter().take(12).map(|b| format!("{b:02x}")).collect()
}

/// `desired` with its content hash in [`APPLIED_ANNOTATION`].
pub fn stamped<K: Resource + serde::Serialize>(mut desired: K) -> K {
    let meta = desired.meta_mut();
    if let Some(a) = meta.annotations.as_mut() {
        a.remove(APPLIED_ANNOTATION);
        if a.is_empty() {
            meta.annotations = None;
        }
    }
    let hash = content_hash(&desired);
    desired
        .meta_mut()
        .annotations
        .get_or_insert_with(Default::default)
        .insert(APPLIED_ANNOTATION.into(), hash);
    desired
}

/// Whether `existing` already carries what a [`stamped`] `desired` would write.
pub fn unchanged<K: Resource>(existing: Option<&K>, stamped: &K) -> bool {
    let hash = |o: &K| o.annotations().get(APPLIED_ANNOTATION).cloned();
    existing.is_some_and(|e| hash(e).is_some() && hash(e) == hash(stamped))
}

/// Server-side applies a [`stamped`] child under the operator's field manager.
pub async fn apply<K>(api: &Api<K>, stamped: &K) -> Result<K, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let name = stamped.meta().name.clone().unwrap_or_default();
    Ok(api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(stamped),
        )
        .await?)
}

/// Deletes `name`; one already gone is fine. Returns whether there was one to delete.
pub async fn delete<K>(api: &Api<K>, name: &str) -> Result<bool, Error>
where
    K: Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    match api.delete(name, &DeleteParams::default()).await {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(e)) if e.code == 404 => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// A server-side apply of `status` alone (the status subresource), typed.
#[derive(serde::Serialize, Debug)]
#[serde(rename_all = "camelCase")]
pub struct StatusPatch<S> {
    api_version: String,
    kind: String,
    status: S,
}

/// Server-side applies `status` to `name`'s status subresource.
pub async fn apply_status<K, S>(api: &Api<K>, name: &str, status: S) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    S: serde::Serialize + std::fmt::Debug,
{
    let patch = StatusPatch {
        api_version: K::api_version(&()).into(),
        kind: K::kind(&()).into(),
        status,
    };
    api.patch_status(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&patch),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::ConfigMap;

    #[test]
    fn a_stamped_child_is_unchanged_only_against_the_same_content() {
        let cm = |v: &str| ConfigMap {
            metadata: ObjectMeta {
                name: Some("c".into()),
                ..Default::default()
            },
            data: Some(BTreeMap::from([("k".to_string(), v.to_string())])),
            ..Default::default()
        };
        let a = stamped(cm("1"));
        assert!(unchanged(Some(&a), &stamped(cm("1"))));
        assert!(!unchanged(Some(&a), &stamped(cm("2"))));
        assert!(!unchanged(None, &a));
        assert!(
            !unchanged(Some(&cm("1")), &a),
            "an object the operator did not stamp is applied"
        );
        let hash = a.annotations()[APPLIED_ANNOTATION].clone();
        assert_eq!(
            stamped(a).annotations()[APPLIED_ANNOTATION],
            hash,
            "restamping ignores the stamp"
        );
    }
}
