//! Helpers shared by the crds integration tests.

#![allow(dead_code, clippy::unwrap_used)]

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::ResourceExt;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams};
use modelcommons_crds::{
    Datanet, FineTuneJob, ModelDeployment, ModelProposal, RLHFRound, all_crds,
};

pub const MANAGER: &str = "modelcommons.dev-test";

/// Applies every CRD (server-side) and waits until each is Established.
pub async fn install_crds(client: &kube::Client) {
    modelcommons_testbed::install_crds(client, &all_crds())
        .await
        .unwrap();
}

pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The YAML documents of a file, as JSON values (empty documents skipped).
pub fn documents(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .filter(|v: &serde_json::Value| !v.is_null())
        .collect()
}

/// The API resource of a kind the examples use.
pub fn api_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "ModelProposal" => ApiResource::erase::<ModelProposal>(&()),
        "Datanet" => ApiResource::erase::<Datanet>(&()),
        "FineTuneJob" => ApiResource::erase::<FineTuneJob>(&()),
        "RLHFRound" => ApiResource::erase::<RLHFRound>(&()),
        "ModelDeployment" => ApiResource::erase::<ModelDeployment>(&()),
        "ConfigMap" => ApiResource::erase::<ConfigMap>(&()),
        "Secret" => ApiResource::erase::<Secret>(&()),
        _ => return None,
    })
}

/// Server-side applies one document into `namespace` (`dry_run`: validated and admitted, not
/// stored). Namespace documents are skipped: tests bring their own namespace.
pub async fn apply(
    client: &kube::Client,
    namespace: &str,
    mut doc: serde_json::Value,
    dry_run: bool,
) -> Option<Result<DynamicObject, kube::Error>> {
    let kind = doc["kind"].as_str().unwrap_or_default().to_string();
    let ar = api_resource(&kind)?;
    doc["metadata"]["namespace"] = namespace.into();
    let obj: DynamicObject = serde_json::from_value(doc).unwrap();
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &ar);
    let mut pp = PatchParams::apply(MANAGER).force();
    pp.dry_run = dry_run;
    Some(api.patch(&obj.name_any(), &pp, &Patch::Apply(&obj)).await)
}

/// The `.yaml` files of a directory, sorted.
pub fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    files
}
