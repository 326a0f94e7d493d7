//! `s3://`, `gs://` and `az://` through the `object_store` crate ([`ObjectFetch`]).
//!
//! Credentials and endpoints are `object_store`'s own settings, named as its builders read
//! them from the environment (`AWS_ACCESS_KEY_ID`, `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`,
//! `GOOGLE_SERVICE_ACCOUNT_KEY`, `AZURE_STORAGE_ACCOUNT_NAME`, `AZURE_STORAGE_ACCOUNT_KEY`,
//! `AZURE_STORAGE_ENDPOINT`, …): a curation pod gets them from the Datanet's
//! `contributions.credentialsSecretRef` (as environment variables), the operator from its own
//! environment. Without any, S3 and Azure fall back to the instance or workload identity and
//! GCS to its application default credentials, as `object_store` does.
//!
//! Requests go through hyper-util and hyper-rustls with the `ring` provider (what
//! [`super::fetch::HttpFetch`] and kube use) rather than `object_store`'s reqwest client,
//! whose TLS would link aws-lc-rs or leave the process without a crypto provider.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use object_store::client::{
    HttpClient, HttpConnector as StoreConnector, HttpError, HttpErrorKind, HttpRequest,
    HttpResponse, HttpResponseBody, HttpService,
};
use object_store::{ClientConfigKey, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};

use super::egress::Egress;
use super::fetch::{Fetch, FetchError, REQUEST_TIMEOUT};

/// The schemes [`ObjectFetch`] reads.
pub const SCHEMES: [&str; 3] = ["s3", "gs", "az"];

/// Whether `uri` names an object in S3, GCS or Azure Blob storage.
pub fn is_object_uri(uri: &str) -> bool {
    uri.split_once("://")
        .is_some_and(|(s, _)| SCHEMES.contains(&s.to_ascii_lowercase().as_str()))
}

/// The environment variables `object_store` reads its settings from: every `AWS_*`,
/// `GOOGLE_*` and `AZURE_*` variable, keys lower-cased as its builders expect.
pub fn env_options() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| {
            k.starts_with("AWS_") || k.starts_with("GOOGLE_") || k.starts_with("AZURE_")
        })
        .map(|(k, v)| (k.to_ascii_lowercase(), v))
        .collect()
}

/// Reads objects from S3, GCS and Azure Blob storage. One store per bucket, built on first
/// use and kept. Transient failures (connection errors, timeouts, 5xx, 429) are retried by
/// `object_store` within [`RETRY_TIMEOUT`]; a missing object or a refused credential is final.
#[derive(Clone)]
pub struct ObjectFetch {
    options: Arc<Vec<(String, String)>>,
    retry: RetryConfig,
    egress: Egress,
    stores: Arc<Mutex<HashMap<String, Arc<dyn ObjectStore>>>>,
}

/// Names the settings, never their values (they hold secret keys).
impl std::fmt::Debug for ObjectFetch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectFetch")
            .field(
                "settings",
                &self.options.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// How long one read may be retried for.
pub const RETRY_TIMEOUT: Duration = Duration::from_secs(60);

impl ObjectFetch {
    /// With `object_store` settings as (lower-case key, value): `("aws_endpoint", …)`.
    /// Keys of other stores and unknown keys are ignored.
    pub fn new(options: Vec<(String, String)>) -> Self {
        Self {
            options: Arc::new(options),
            retry: RetryConfig {
                max_retries: 4,
                retry_timeout: RETRY_TIMEOUT,
                ..RetryConfig::default()
            },
            egress: Egress::from_env(),
            stores: Arc::default(),
        }
    }

    /// Sets where the stores' endpoints may be (by default the list in
    /// [`super::egress::ALLOW_ENV`]); stores built before keep theirs.
    pub fn with_egress(mut self, egress: Egress) -> Self {
        self.egress = egress;
        self.stores = Arc::default();
        self
    }

    /// With the settings of this process's environment ([`env_options`]).
    pub fn from_env() -> Self {
        Self::new(env_options())
    }

    /// Sets how many times a transient failure is retried, and for how long.
    pub fn with_retries(mut self, max_retries: usize, timeout: Duration) -> Self {
        self.retry.max_retries = max_retries;
        self.retry.retry_timeout = timeout;
        self
    }

    /// The store for the bucket (or container) of `url`.
    pub fn store(&self, url: &url::Url) -> Result<Arc<dyn ObjectStore>, String> {
        let key = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
        let mut stores = self
            .stores
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = stores.get(&key) {
            return Ok(s.clone());
        }
        let store = self.build(url)?;
        stores.insert(key, store.clone());
        Ok(store)
    }

    fn settings<'a, K: FromStr>(
        &'a self,
        prefix: &'a str,
    ) -> impl Iterator<Item = (K, &'a str)> + 'a {
        self.options
            .iter()
            .filter(move |(k, _)| k.starts_with(prefix))
            .filter_map(|(k, v)| Some((k.parse().ok()?, v.as_str())))
    }

    fn build(&self, url: &url::Url) -> Result<Arc<dyn ObjectStore>, String> {
        use object_store::aws::AmazonS3Builder;
        use object_store::azure::MicrosoftAzureBuilder;
        use object_store::gcp::GoogleCloudStorageBuilder;
        let fail = |e: object_store::Error| format!("{url}: {e}");
        // The three builders have the same methods but no common trait.
        macro_rules! build {
            ($builder:ty, $prefix:literal) => {{
                let mut b = <$builder>::new();
                for (k, v) in self.settings($prefix) {
                    b = b.with_config(k, v);
                }
                Arc::new(
                    b.with_url(url.as_str())
                        .with_retry(self.retry.clone())
                        .with_http_connector(Connector {
                            egress: self.egress.clone(),
                        })
                        .build()
                        .map_err(fail)?,
                )
            }};
        }
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" => build!(AmazonS3Builder, "aws_"),
            "gs" => build!(GoogleCloudStorageBuilder, "google_"),
            "az" => build!(MicrosoftAzureBuilder, "azure_"),
            other => return Err(format!("{url}: {other}:// is not an object store")),
        };
        Ok(store)
    }

    /// Writes `bytes` to the object at `uri` (tests and tools put manifests and contributions
    /// with it).
    pub async fn put(&self, uri: &str, bytes: Vec<u8>) -> Result<(), String> {
        let (store, path) = self.locate(uri)?;
        store
            .put(&path, bytes.into())
            .await
            .map(drop)
            .map_err(|e| format!("{uri}: {e}"))
    }

    fn locate(
        &self,
        uri: &str,
    ) -> Result<(Arc<dyn ObjectStore>, object_store::path::Path), String> {
        let url = url::Url::parse(uri).map_err(|e| format!("{uri}: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err(format!(
                "{uri}: no bucket; expected <scheme>://<bucket>/<path>"
            ));
        }
        let path = object_store::path::Path::from_url_path(url.path())
            .map_err(|e| format!("{uri}: {e}"))?;
        if path.as_ref().is_empty() {
            return Err(format!("{uri}: no object path after the bucket"));
        }
        Ok((self.store(&url)?, path))
    }
}

impl ObjectFetch {
    /// The endpoint the settings name for `scheme`'s store, when they name one (a private
    /// store or an emulator; the clouds' own endpoints otherwise).
    fn endpoint(&self, scheme: &str) -> Option<url::Url> {
        let get = |key: &str| {
            self.options
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        let raw = match scheme {
            "s3" => get("aws_endpoint").or_else(|| get("aws_endpoint_url")),
            "az" => get("azure_storage_endpoint").or_else(|| get("azure_endpoint")),
            "gs" => get("google_service_account_key")
                .and_then(|k| serde_json::from_str::<serde_json::Value>(&k).ok())
                .and_then(|k| k["gcs_base_url"].as_str().map(str::to_string)),
            _ => None,
        }?;
        url::Url::parse(&raw).ok()
    }
}

impl Fetch for ObjectFetch {
    async fn fetch(&self, uri: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        // An endpoint from the settings (a tenant's Secret, in a curation pod) is checked
        // before any request, so a refusal is final and says only that.
        if let Some(endpoint) = uri.split_once("://").and_then(|(s, _)| self.endpoint(s))
            && let Err(why) = self.egress.check_url(&endpoint).await
        {
            return Err(FetchError::Unreachable(format!("{uri}: {why}")));
        }
        let (store, path) = self.locate(uri).map_err(FetchError::Unreachable)?;
        let unreachable = |e: object_store::Error| FetchError::Unreachable(format!("{uri}: {e}"));
        let meta = store.head(&path).await.map_err(unreachable)?;
        if meta.size > max_bytes {
            return Err(FetchError::TooLarge { limit: max_bytes });
        }
        let bytes = store
            .get(&path)
            .await
            .map_err(unreachable)?
            .bytes()
            .await
            .map_err(unreachable)?;
        // The object may have been replaced between the two requests.
        if bytes.len() as u64 > max_bytes {
            return Err(FetchError::TooLarge { limit: max_bytes });
        }
        Ok(bytes.to_vec())
    }
}

/// Connects `object_store` to hyper-util with hyper-rustls (`ring`, the system's roots),
/// through the [`Egress`] check: an endpoint a tenant's Secret names cannot reach the
/// cluster's own network.
#[derive(Debug, Clone)]
struct Connector {
    egress: Egress,
}

impl StoreConnector for Connector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        // Plain HTTP only where the settings allow it (`AWS_ALLOW_HTTP`, the Azure emulator),
        // as object_store's own client does.
        let allow_http = options
            .get_config_value(&ClientConfigKey::AllowHttp)
            .is_some_and(|v| v == "true");
        let generic = |e: String| object_store::Error::Generic {
            store: "http",
            source: e.into(),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| generic(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(15)));
        let https = hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls);
        let https = if allow_http {
            https.https_or_http()
        } else {
            https.https_only()
        }
        .enable_http1()
        .wrap_connector(self.egress.connector(http));
        Ok(HttpClient::new(Service(
            hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https),
        )))
    }
}

#[derive(Debug)]
struct Service(
    hyper_util::client::legacy::Client<
        hyper_rustls::HttpsConnector<super::egress::Guarded>,
        object_store::client::HttpRequestBody,
    >,
);

#[async_trait::async_trait]
impl HttpService for Service {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let response = tokio::time::timeout(REQUEST_TIMEOUT, self.0.request(req))
            .await
            .map_err(|e| HttpError::new(HttpErrorKind::Timeout, e))?
            .map_err(|e| {
                let kind = if e.is_connect() {
                    HttpErrorKind::Connect
                } else {
                    HttpErrorKind::Request
                };
                HttpError::new(kind, e)
            })?;
        Ok(response.map(|body| {
            HttpResponseBody::new(body.map_err(|e| HttpError::new(HttpErrorKind::Interrupted, e)))
        }))
    }
}
