//! What the operator reads of its own trusted Jobs' pods: results (termination messages)
//! taken only from a pod of the operator's own Job, and a failed pod's last words.

use super::*;

/// The result a finished pod of the operator's Job `job` (curation, evaluation) left in its termination
/// message. Only a pod that the Job controller made for this Job counts (its controller-uid
/// label and controller owner reference name the Job's uid) and that runs the Job's
/// container unchanged; any other pod carrying the Job's name is reported with a
/// `ForgedResult` warning and ignored.
pub(crate) async fn pod_result<T, K>(ctx: &Context, dn: &K, job: &Job) -> Result<Option<T>, Error>
where
    T: serde::de::DeserializeOwned,
    K: Resource<DynamicType = ()>,
{
    use k8s_openapi::api::core::v1::Pod;
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    let uid = job.uid().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &ns)
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/job-name={name}")))
        .await?;
    let template = job
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .map(|s| s.containers.as_slice())
        .unwrap_or_default();
    let mut found = None;
    for p in &pods.items {
        let by_controller = p.labels().get("batch.kubernetes.io/controller-uid") == Some(&uid)
            && p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid && o.kind == "Job");
        let same = p
            .spec
            .as_ref()
            .is_some_and(|s| same_containers(&s.containers, template));
        if !(by_controller && same) {
            ctx.event(
                dn,
                EventType::Warning,
                reason::FORGED_RESULT,
                format!(
                    "pod {} carries the name of Job {name} but {}; its result is ignored",
                    p.name_any(),
                    if by_controller {
                        "does not run the Job's container"
                    } else {
                        "was not made by that Job"
                    }
                ),
            );
            continue;
        }
        let message = p
            .status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
            .filter(|t| t.exit_code == 0)
            .find_map(|t| serde_json::from_str(t.message.as_deref()?).ok());
        found = found.or(message);
    }
    Ok(found)
}

/// Whether two container lists run the same thing: image, command, args, environment,
/// Secrets and mounts.
pub(crate) fn same_containers(
    got: &[k8s_openapi::api::core::v1::Container],
    want: &[k8s_openapi::api::core::v1::Container],
) -> bool {
    let key = |c: &k8s_openapi::api::core::v1::Container| {
        (
            c.name.clone(),
            c.image.clone(),
            c.command.clone().unwrap_or_default(),
            c.args.clone().unwrap_or_default(),
            c.env
                .clone()
                .unwrap_or_default()
                .into_iter()
                // The API server stores an empty value as none.
                .map(|e| (e.name, e.value.filter(|v| !v.is_empty())))
                .collect::<Vec<_>>(),
            c.env_from
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|e| e.secret_ref.map(|r| r.name))
                .collect::<Vec<_>>(),
            c.volume_mounts
                .clone()
                .unwrap_or_default()
                .into_iter()
                .map(|m| (m.name, m.mount_path, m.read_only.unwrap_or(false)))
                .collect::<Vec<_>>(),
        )
    };
    got.len() == want.len() && got.iter().zip(want).all(|(g, w)| key(g) == key(w))
}

/// Whether an existing Job under the curation Job's name is the operator's: labelled with
/// this Datanet's uid and running exactly the pod the operator would create. Tenants cannot
/// create Jobs in the trusted namespace; should anyone who can make one there under that
/// name, it is not one that runs anything but the operator's own curation.
pub(super) fn job_is_ours(job: &Job, dn: &Datanet, desired: &Job) -> Result<(), String> {
    if job.labels().get(LABEL_DATANET_UID) != dn.uid().as_ref() {
        return Err("it is not labelled with this Datanet's uid".into());
    }
    let pod = |j: &Job| j.spec.as_ref().and_then(|s| s.template.spec.clone());
    let (Some(got), Some(want)) = (pod(job), pod(desired)) else {
        return Err("it has no pod template".into());
    };
    if !same_containers(&got.containers, &want.containers)
        || !got.init_containers.unwrap_or_default().is_empty()
    {
        return Err("its pod does not run the operator's curation container".into());
    }
    let vols = |v: Option<Vec<k8s_openapi::api::core::v1::Volume>>| {
        v.unwrap_or_default()
            .into_iter()
            .map(|v| {
                (
                    v.name,
                    v.persistent_volume_claim.map(|c| c.claim_name),
                    v.config_map.map(|c| c.name),
                    v.host_path.map(|h| h.path),
                )
            })
            .collect::<Vec<_>>()
    };
    if vols(got.volumes) != vols(want.volumes) {
        return Err("its pod mounts other volumes than the operator's".into());
    }
    Ok(())
}

/// What a failed pod of the operator's Job `job` said last (its termination message, which
/// falls back to its last log lines), at most 800 characters.
pub(super) async fn pod_failure(ctx: &Context, job: &Job) -> Result<Option<String>, Error> {
    use k8s_openapi::api::core::v1::Pod;
    let uid = job.uid().unwrap_or_default();
    let pods = Api::<Pod>::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default())
        .list(&ListParams::default().labels(&format!("batch.kubernetes.io/controller-uid={uid}")))
        .await?;
    Ok(pods
        .items
        .iter()
        .filter(|p| {
            p.owner_references()
                .iter()
                .any(|o| o.controller == Some(true) && o.uid == uid)
        })
        .flat_map(|p| {
            p.status
                .iter()
                .flat_map(|s| s.container_statuses.iter().flatten())
        })
        .filter_map(|c| c.state.as_ref()?.terminated.as_ref())
        .filter(|t| t.exit_code != 0)
        .filter_map(|t| t.message.as_deref())
        .map(|m| {
            let m = m.trim();
            let start = m.len().saturating_sub(800);
            let start = (start..m.len())
                .find(|i| m.is_char_boundary(*i))
                .unwrap_or(m.len());
            m[start..].replace('\n', " | ")
        })
        .next_back())
}
