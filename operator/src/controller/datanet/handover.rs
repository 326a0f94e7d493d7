//! The curation Job's inputs, handed over by value beside it in the trusted namespace.

use super::*;

/// Writes what the curation Job reads beside it in the trusted namespace: the manifest the
/// operator read, and a copy of the tenant's credentials Secret. `Ok(Some(_))` when the
/// Secret cannot be read (the condition to show).
pub(super) async fn hand_over(
    dn: &Datanet,
    ctx: &Context,
    job: &str,
    manifest: &str,
    owner: Option<&Job>,
) -> Result<Option<Shown>, Error> {
    let trusted = &ctx.config.trusted_namespace;
    let cm = ConfigMap {
        metadata: input_meta(dn, trusted, manifest_copy(job), owner),
        data: Some(BTreeMap::from([(
            MANIFEST_KEY.to_string(),
            manifest.to_string(),
        )])),
        ..Default::default()
    };
    ssa(
        &Api::<ConfigMap>::namespaced(ctx.client.clone(), trusted),
        &cm,
    )
    .await?;
    let Some(r) = &dn.spec.contributions.credentials_secret_ref else {
        return Ok(None);
    };
    let secret = match read_credentials(dn, ctx, &r.name).await? {
        Ok(s) => s,
        Err(held) => return Ok(Some(held)),
    };
    let copy = Secret {
        metadata: input_meta(dn, trusted, credentials_copy(job), owner),
        type_: Some("Opaque".into()),
        data: secret.data,
        ..Default::default()
    };
    ssa(
        &Api::<Secret>::namespaced(ctx.client.clone(), trusted),
        &copy,
    )
    .await?;
    Ok(None)
}

/// An input of curation Job `owner` (none yet: it is created next), labelled by its Datanet.
fn input_meta(dn: &Datanet, trusted: &str, name: String, owner: Option<&Job>) -> ObjectMeta {
    let owners = owner.map(|j| {
        vec![OwnerReference {
            api_version: "batch/v1".into(),
            kind: "Job".into(),
            name: j.name_any(),
            uid: j.uid().unwrap_or_default(),
            ..Default::default()
        }]
    });
    ObjectMeta {
        name: Some(name),
        namespace: Some(trusted.to_string()),
        labels: Some(BTreeMap::from(
            [
                (LABEL_MANAGED_BY, MANAGED_BY.to_string()),
                ("app.kubernetes.io/name", CURATION_APP.to_string()),
                (LABEL_DATANET_NAMESPACE, dn.namespace().unwrap_or_default()),
                (LABEL_DATANET_UID, dn.uid().unwrap_or_default()),
            ]
            .map(|(k, v)| (k.to_string(), v)),
        )),
        owner_references: owners,
        ..Default::default()
    }
}

/// The tenant's credentials Secret, or why the operator cannot read it (the tenant grants
/// that one Secret by name; the message gives the commands).
async fn read_credentials(
    dn: &Datanet,
    ctx: &Context,
    name: &str,
) -> Result<Result<Secret, Shown>, Error> {
    let ns = dn.namespace().unwrap_or_default();
    match Api::<Secret>::namespaced(ctx.client.clone(), &ns)
        .get_opt(name)
        .await
    {
        Ok(Some(s)) => Ok(Ok(s)),
        Ok(None) => Ok(Err(Shown::new(
            DatanetPhase::Curating,
            reason::CREDENTIALS_MISSING,
            format!(
                "contributions.credentialsSecretRef names Secret {name}, which does not exist in namespace {ns}; create it with the object-store settings (AWS_*, GOOGLE_*, AZURE_*) and curation starts"
            ),
            Some(ctx.config.recheck),
        ))),
        Err(kube::Error::Api(e)) if e.code == 403 => Ok(Err(Shown::new(
            DatanetPhase::Curating,
            reason::CREDENTIALS_FORBIDDEN,
            format!(
                "the operator may not read Secret {name} of namespace {ns}: it reads a tenant's Secret only where the tenant allows it, that one alone. Allow it with: {}; curation then starts by itself",
                credentials_role(&ns, name, &ctx.config.service_account)
            ),
            Some(ctx.config.recheck),
        ))),
        Err(e) => Err(e.into()),
    }
}
