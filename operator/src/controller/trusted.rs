//! The operator's records in its trusted namespace (`Config::trusted_namespace`), which
//! tenants can neither read nor write: one ConfigMap per object recorded, a data key per
//! entry, each entry applied under its own field manager so that writing one leaves the
//! others. See [`super::lineage`] (Datanet versions) and [`super::usage`] (GPU usage).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;

use super::{Context, Error, FIELD_MANAGER, LABEL_MANAGED_BY};

/// The data of record `name` (empty when it does not exist yet).
pub async fn read(ctx: &Context, name: &str) -> Result<BTreeMap<String, String>, Error> {
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ctx.config.trusted_namespace);
    Ok(api
        .get_opt(name)
        .await?
        .and_then(|cm| cm.data)
        .unwrap_or_default())
}

/// Writes entry `key` of record `name` (created if need be), labelled as `app` and annotated
/// with what it records (`annotation` = (key, value)).
pub async fn write(
    ctx: &Context,
    name: &str,
    app: &str,
    annotation: (&str, String),
    key: &str,
    value: String,
) -> Result<(), Error> {
    let ns = &ctx.config.trusted_namespace;
    let cm = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns,
            "labels": {LABEL_MANAGED_BY: "modelcommons-operator", "app.kubernetes.io/name": app},
            "annotations": {annotation.0: annotation.1}},
        "data": {key: value},
    });
    Api::<ConfigMap>::namespaced(ctx.client.clone(), ns)
        .patch(
            name,
            &PatchParams::apply(&format!("{FIELD_MANAGER}-{key}")).force(),
            &Patch::Apply(&cm),
        )
        .await?;
    Ok(())
}
