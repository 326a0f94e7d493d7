//! Where a Datanet's contributions manifest is read from, and its digest.

use super::*;

/// Where the manifest comes from, as the curation Job is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ManifestSource {
    /// A key of a ConfigMap in the Datanet's namespace.
    ConfigMap { name: String, key: String },
    /// A `file://` or `http(s)://` URI.
    Uri(String),
}

impl ManifestSource {
    pub(super) fn of(dn: &Datanet) -> Result<Self, String> {
        let c = &dn.spec.contributions;
        match (&c.config_map_ref, &c.manifest_uri) {
            (Some(r), _) => Ok(Self::ConfigMap {
                name: r.name.clone(),
                key: r.key.clone(),
            }),
            (None, Some(u))
                if u.starts_with("file://")
                    || u.starts_with("http://")
                    || u.starts_with("https://")
                    || crate::curate::is_object_uri(u) =>
            {
                Ok(Self::Uri(u.clone()))
            }
            (None, Some(u)) => Err(format!(
                "{u}: this operator reads manifests from ConfigMaps and s3://, gs://, az://, http(s):// and file:// URIs; put the manifest in one of those"
            )),
            (None, None) => {
                Err("set contributions.manifestUri or contributions.configMapRef".into())
            }
        }
    }

    /// Reads the manifest's text; object-store URIs with `objects`' settings.
    pub async fn read(
        &self,
        client: &kube::Client,
        ns: &str,
        config: &crate::controller::Config,
    ) -> Result<String, String> {
        match self {
            Self::ConfigMap { name, key } => {
                let cm = Api::<ConfigMap>::namespaced(client.clone(), ns)
                    .get_opt(name)
                    .await
                    .map_err(|e| format!("reading ConfigMap {name}: {e}"))?
                    .ok_or_else(|| format!("ConfigMap {name} does not exist; create it with the manifest under key {key}"))?;
                cm.data
                    .and_then(|mut d| d.remove(key))
                    .ok_or_else(|| format!("ConfigMap {name} has no key {key}"))
            }
            Self::Uri(uri) => {
                // The operator's own files are never a manifest: file:// only under the dev
                // host directory, and every address checked.
                let mut files =
                    curate::FileFetch::new("/").only_under(config.dev_host_dirs.clone());
                for s in artifact_local(&config.artifact_store) {
                    files = files.excluding(s);
                }
                // config.objects carries its egress already (and keeps its store cache).
                let mut fetch = AnyFetch::new("/")
                    .map_err(|e| e.to_string())?
                    .with_objects(config.objects.clone())
                    .with_files(files);
                fetch.http = fetch.http.with_egress(config.egress.clone());
                let bytes = fetch
                    .fetch(uri, MAX_MANIFEST_BYTES)
                    .await
                    .map_err(|e| e.to_string())?;
                String::from_utf8(bytes).map_err(|_| format!("{uri}: the manifest is not UTF-8"))
            }
        }
    }
}

/// The version digest of a manifest's text: what `status.manifestSha256` holds and a new
/// version is cut for — the canonical digest of its entries ([`curate::manifest_digest`]),
/// so a reformatted manifest is the same version. A manifest that does not parse (and is
/// refused as `ManifestInvalid`) is named by the sha256 of its bytes.
pub fn manifest_digest(text: &str) -> String {
    curate::parse_manifest(text).map_or_else(
        |_| crate::contribution::sha256_hex(text.as_bytes()),
        |m| curate::manifest_digest(&m),
    )
}
