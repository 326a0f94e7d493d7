//! Installing CustomResourceDefinitions into a control plane and waiting until they serve.

use std::time::{Duration, Instant};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};

/// The field manager the test bed applies CRDs with.
pub const CRD_MANAGER: &str = "modelcommons.dev-testbed";

/// Applies `crds` (server-side) and waits until each is Established (at most 30 s).
pub async fn install_crds(
    client: &kube::Client,
    crds: &[CustomResourceDefinition],
) -> anyhow::Result<()> {
    let api: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in crds {
        api.patch(
            &crd.name_any(),
            &PatchParams::apply(CRD_MANAGER).force(),
            &Patch::Apply(crd),
        )
        .await?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    for crd in crds {
        loop {
            let c = api.get(&crd.name_any()).await?;
            let established = c.status.and_then(|s| s.conditions).is_some_and(|cs| {
                cs.iter()
                    .any(|c| c.type_ == "Established" && c.status == "True")
            });
            if established {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("CRD {} not Established after 30s", crd.name_any());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    Ok(())
}
