//! A random namespace per test, so tests share one control plane without seeing each other.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use kube::Client;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::{Error, Result};

/// A namespace created for one test. Call [`TestNamespace::delete`] at the end of the test;
/// a namespace left by a failed test dies with its (throwaway) control plane.
pub struct TestNamespace {
    name: String,
    client: Client,
}

impl std::fmt::Debug for TestNamespace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestNamespace")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl TestNamespace {
    /// Creates `<prefix>-<random>` and waits until its `default` service account exists, so
    /// pods can be admitted in it at once.
    pub async fn create(client: &Client, prefix: &str) -> Result<Self> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let name = format!(
            "{prefix}-{:x}{:x}{n}",
            std::process::id() % 0xfff,
            nanos % 0xfffff
        );
        let api: Api<Namespace> = Api::all(client.clone());
        let ns: Namespace = serde_json::from_value(json!({
            "metadata": { "name": name, "labels": { "modelcommons.dev/test": "true" } }
        }))
        .map_err(|e| Error::Setup(e.to_string()))?;
        api.create(&PostParams::default(), &ns).await?;
        let sas: Api<ServiceAccount> = Api::namespaced(client.clone(), &name);
        let deadline = Instant::now() + Duration::from_secs(30);
        while sas.get_opt("default").await?.is_none() {
            if Instant::now() > deadline {
                return Err(Error::Setup(format!(
                    "namespace {name}: no default service account after 30s (is kube-controller-manager running?)"
                )));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            name,
            client: client.clone(),
        })
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Deletes the namespace (and, through the namespace controller, all in it).
    pub async fn delete(self) -> Result<()> {
        let api: Api<Namespace> = Api::all(self.client);
        api.delete(&self.name, &DeleteParams::background()).await?;
        Ok(())
    }
}
