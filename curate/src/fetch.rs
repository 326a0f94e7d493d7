//! Reading contributions: the [`Fetch`] trait and its implementations for local files
//! ([`FileFetch`]), HTTP(S) ([`HttpFetch`]), object stores ([`ObjectFetch`]) and all of them
//! by scheme ([`AnyFetch`]).
//!
//! A fetch that fails is an outcome of that contribution (`Unreachable` or `TooLarge`), never
//! an error of the curation.

use std::future::Future;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::io::AsyncReadExt;

use super::egress::{Egress, Guarded};
use super::object::ObjectFetch;

/// Why a contribution's bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    /// Not found, refused, timed out or an unsupported location, after any retries.
    #[error("{0}")]
    Unreachable(String),
    /// More bytes than the Datanet accepts per contribution.
    #[error("larger than format.maxBytesPerContribution ({limit} bytes)")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
}

/// Reads the bytes of a contribution.
pub trait Fetch {
    /// The bytes at `uri`; [`FetchError::TooLarge`] as soon as more than `max_bytes` arrive.
    fn fetch(
        &self,
        uri: &str,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<u8>, FetchError>> + Send;
}

fn scheme(uri: &str) -> Option<String> {
    uri.split_once("://")
        .map(|(scheme, _)| scheme.to_ascii_lowercase())
}

/// Local files: `file:///a/b` and bare paths, resolved under a root directory — `/` in a
/// Job whose volumes hold the files, a temporary directory in tests. A URI can name only
/// files under the root: `..` and symbolic links that lead out of it are refused.
///
/// A curation names, besides, the only directories whose files it reads
/// ([`FileFetch::only_under`]: the operator's dev data directory, a mounted ConfigMap) and
/// those it never reads ([`FileFetch::excluding`]: the artifact store, whose curated datasets
/// a contributor could otherwise list as their own): both are judged on the real path, after
/// every symbolic link is followed.
#[derive(Debug, Clone)]
pub struct FileFetch {
    root: PathBuf,
    /// `Some`: only files under one of these (real paths under the root) are read.
    only: Option<Vec<PathBuf>>,
    never: Vec<PathBuf>,
}

/// Why a local file is refused, without saying whether it exists.
const NOT_A_DATA_FILE: &str = "refused: not under a data directory this curation reads (file:// contributions are read only from the operator's dev data directory)";

impl FileFetch {
    /// Resolves `file:///a/b` to `<root>/a/b`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            only: None,
            never: Vec::new(),
        }
    }

    /// Reads only files under these directories (none: no file at all).
    pub fn only_under(mut self, dirs: impl IntoIterator<Item = PathBuf>) -> Self {
        self.only = Some(dirs.into_iter().collect());
        self
    }

    /// Never reads a file under `dir`.
    pub fn excluding(mut self, dir: impl Into<PathBuf>) -> Self {
        self.never.push(dir.into());
        self
    }

    async fn admitted(&self, real: &Path, uri: &str) -> Result<(), FetchError> {
        let refused = || FetchError::Unreachable(format!("{uri}: {NOT_A_DATA_FILE}"));
        let under = |dirs: Vec<PathBuf>| async move {
            for d in dirs {
                if let Ok(d) = tokio::fs::canonicalize(self.root.join(strip_root(&d))).await
                    && real.starts_with(&d)
                {
                    return true;
                }
            }
            false
        };
        if let Some(only) = &self.only
            && !under(only.clone()).await
        {
            return Err(refused());
        }
        if under(self.never.clone()).await {
            return Err(refused());
        }
        Ok(())
    }

    fn resolve(&self, uri: &str) -> Result<PathBuf, FetchError> {
        let unreachable = |why: &str| FetchError::Unreachable(format!("{uri}: {why}"));
        let path = match scheme(uri).as_deref() {
            Some("file") => {
                let url = url::Url::parse(uri).map_err(|e| unreachable(&e.to_string()))?;
                if url
                    .host_str()
                    .is_some_and(|h| !h.is_empty() && h != "localhost")
                {
                    return Err(unreachable("a file URI cannot name another host"));
                }
                url.to_file_path()
                    .map_err(|()| unreachable("not a file path"))?
            }
            Some(other) => {
                return Err(unreachable(&format!(
                    "{other}:// is not a local file; use file:// or a path"
                )));
            }
            None => PathBuf::from(uri),
        };
        let mut out = self.root.clone();
        for c in path.components() {
            match c {
                Component::Normal(p) => out.push(p),
                Component::RootDir | Component::CurDir => {}
                Component::ParentDir | Component::Prefix(_) => {
                    return Err(unreachable("`..` may not lead out of the data directory"));
                }
            }
        }
        Ok(out)
    }
}

async fn read_under(root: &Path, path: &Path, uri: &str, max: u64) -> Result<Vec<u8>, FetchError> {
    let unreachable = |why: String| FetchError::Unreachable(format!("{uri}: {why}"));
    let real = tokio::fs::canonicalize(path)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let real_root = tokio::fs::canonicalize(root)
        .await
        .map_err(|e| unreachable(format!("the data directory {}: {e}", root.display())))?;
    if !real.starts_with(&real_root) {
        return Err(unreachable(
            "a symbolic link leads out of the data directory".into(),
        ));
    }
    let file = tokio::fs::File::open(&real)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let meta = file
        .metadata()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if !meta.is_file() {
        return Err(unreachable("not a regular file".into()));
    }
    if meta.len() > max {
        return Err(FetchError::TooLarge { limit: max });
    }
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    if bytes.len() as u64 > max {
        return Err(FetchError::TooLarge { limit: max });
    }
    Ok(bytes)
}

fn strip_root(p: &Path) -> PathBuf {
    p.components()
        .filter(|c| matches!(c, Component::Normal(_)))
        .collect()
}

impl Fetch for FileFetch {
    fn fetch(
        &self,
        uri: &str,
        max_bytes: u64,
    ) -> impl Future<Output = Result<Vec<u8>, FetchError>> + Send {
        let resolved = self.resolve(uri);
        async move {
            let path = resolved?;
            if self.only.is_some() || !self.never.is_empty() {
                // A path that does not resolve is refused in the same words as one outside,
                // so the answer does not tell what exists where.
                let real = tokio::fs::canonicalize(&path)
                    .await
                    .map_err(|_| FetchError::Unreachable(format!("{uri}: {NOT_A_DATA_FILE}")))?;
                self.admitted(&real, uri).await?;
            }
            read_under(&self.root, &path, uri, max_bytes).await
        }
    }
}

/// `http://` and `https://` with retries: a refused or reset connection, a timeout, HTTP 408,
/// 429 and 5xx are retried after a doubling backoff; other statuses are final. Redirects are
/// followed (at most [`MAX_REDIRECTS`]). TLS by rustls with the `ring` provider, checking
/// certificates against the system's roots (`SSL_CERT_FILE` / `SSL_CERT_DIR` override them).
///
/// Built on hyper-util and hyper-rustls (what kube already links) rather than reqwest:
/// reqwest 0.13's `rustls` feature links aws-lc-rs, and its `rustls-no-provider` feature
/// makes every reqwest client in the process that was not given a TLS configuration — alloy's
/// HTTP transport among them — panic for want of a crypto provider.
#[derive(Debug, Clone)]
pub struct HttpFetch {
    client: HttpClient,
    tls: rustls::ClientConfig,
    egress: Egress,
    attempts: u32,
    first_backoff: Duration,
    timeout: Duration,
}

type HttpClient = hyper_util::client::legacy::Client<
    hyper_rustls::HttpsConnector<Guarded>,
    http_body_util::Empty<bytes::Bytes>,
>;

fn http_client(tls: rustls::ClientConfig, egress: &Egress) -> HttpClient {
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_connect_timeout(Some(Duration::from_secs(15)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(egress.connector(http));
    hyper_util::client::legacy::Client::builder(TokioExecutor::new()).build(https)
}

/// Attempts per item by default.
pub const DEFAULT_ATTEMPTS: u32 = 4;
/// The wait before the first retry by default; it doubles, up to [`MAX_BACKOFF`].
pub const DEFAULT_BACKOFF: Duration = Duration::from_millis(500);
/// The longest wait between two attempts.
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The default limit of one attempt, connection to last byte.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(120);
/// Redirects followed in one attempt.
pub const MAX_REDIRECTS: usize = 5;

enum Attempt {
    Retry(String),
    Final(FetchError),
}

/// The message of `e` and of its sources ("client error (Connect): tcp connect error: …").
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

impl HttpFetch {
    /// A client with [`DEFAULT_ATTEMPTS`] attempts, [`DEFAULT_BACKOFF`] and
    /// [`REQUEST_TIMEOUT`], trusting the system's roots.
    pub fn new() -> Result<Self, super::Error> {
        Self::with_roots(Vec::new())
    }

    /// Like [`HttpFetch::new`], and also trusting the certificates of a PEM bundle — the
    /// private CA of an in-cluster object store, say.
    pub fn with_ca_pem(pem: &[u8]) -> Result<Self, super::Error> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let certs = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                super::Error::HttpClient(format!(
                    "reading the CA bundle: {e}; expected PEM CERTIFICATE blocks"
                ))
            })?;
        if certs.is_empty() {
            return Err(super::Error::HttpClient(
                "the CA bundle holds no PEM CERTIFICATE block".into(),
            ));
        }
        Self::with_roots(certs)
    }

    fn with_roots(
        extra: Vec<rustls::pki_types::CertificateDer<'static>>,
    ) -> Result<Self, super::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        // Missing or unreadable system roots do not fail here: an https item then fails its
        // TLS handshake and is reported Unreachable, with the reason.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for cert in extra {
            roots
                .add(cert)
                .map_err(|e| super::Error::HttpClient(format!("a CA certificate: {e}")))?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| super::Error::HttpClient(e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let egress = Egress::from_env();
        Ok(Self {
            client: http_client(tls.clone(), &egress),
            tls,
            egress,
            attempts: DEFAULT_ATTEMPTS,
            first_backoff: DEFAULT_BACKOFF,
            timeout: REQUEST_TIMEOUT,
        })
    }

    /// Sets the attempts per item (at least one) and the wait before the first retry.
    pub fn with_retries(mut self, attempts: u32, first_backoff: Duration) -> Self {
        self.attempts = attempts.max(1);
        self.first_backoff = first_backoff;
        self
    }

    /// Sets where it may connect (by default the list in [`super::egress::ALLOW_ENV`]).
    pub fn with_egress(mut self, egress: Egress) -> Self {
        self.client = http_client(self.tls.clone(), &egress);
        self.egress = egress;
        self
    }

    /// Sets the limit of one attempt, connection to last byte.
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    async fn attempt(&self, url: &url::Url, max: u64) -> Result<Vec<u8>, Attempt> {
        let final_ = |m: String| Attempt::Final(FetchError::Unreachable(m));
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            // Every hop's host is checked before it is asked (the connector checks again
            // the addresses it connects to).
            self.egress.check_url(&url).await.map_err(final_)?;
            let uri: http::Uri = url
                .as_str()
                .parse()
                .map_err(|e: http::uri::InvalidUri| final_(e.to_string()))?;
            let request = http::Request::get(uri)
                .header(
                    http::header::USER_AGENT,
                    concat!("modelcommons-curate/", env!("CARGO_PKG_VERSION")),
                )
                .body(http_body_util::Empty::new())
                .map_err(|e| final_(e.to_string()))?;
            let response = self
                .client
                .request(request)
                .await
                .map_err(|e| Attempt::Retry(chain(&e)))?;
            let status = response.status();
            if status.is_redirection()
                && let Some(location) = response.headers().get(http::header::LOCATION)
            {
                let location = location
                    .to_str()
                    .map_err(|_| final_(format!("HTTP {status} to an unreadable Location")))?;
                let next = url
                    .join(location)
                    .map_err(|e| final_(format!("HTTP {status} to {location:?}: {e}")))?;
                if !matches!(next.scheme(), "http" | "https") {
                    return Err(final_(format!("HTTP {status} to {next}, not http(s)")));
                }
                if url.scheme() == "https" && next.scheme() == "http" {
                    return Err(final_(format!(
                        "HTTP {status} from https to plain http ({next}) is not followed"
                    )));
                }
                url = next;
                continue;
            }
            if !status.is_success() {
                let msg = format!("HTTP {status}");
                return Err(
                    if status.is_server_error()
                        || status == http::StatusCode::REQUEST_TIMEOUT
                        || status == http::StatusCode::TOO_MANY_REQUESTS
                    {
                        Attempt::Retry(msg)
                    } else {
                        final_(msg)
                    },
                );
            }
            let length = response
                .headers()
                .get(http::header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if length.is_some_and(|n| n > max) {
                return Err(Attempt::Final(FetchError::TooLarge { limit: max }));
            }
            let mut body = response.into_body();
            let mut bytes = Vec::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| Attempt::Retry(chain(&e)))?;
                if let Ok(data) = frame.into_data() {
                    if (bytes.len() + data.len()) as u64 > max {
                        return Err(Attempt::Final(FetchError::TooLarge { limit: max }));
                    }
                    bytes.extend_from_slice(&data);
                }
            }
            return Ok(bytes);
        }
        Err(final_(format!("more than {MAX_REDIRECTS} redirects")))
    }
}

impl Fetch for HttpFetch {
    async fn fetch(&self, uri: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        let url = url::Url::parse(uri)
            .map_err(|e| FetchError::Unreachable(format!("{uri}: not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(FetchError::Unreachable(format!(
                "{uri}: not an http(s) URL"
            )));
        }
        let mut last = String::new();
        let mut backoff = self.first_backoff;
        for attempt in 0..self.attempts {
            if attempt > 0 {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
            let result = tokio::time::timeout(self.timeout, self.attempt(&url, max_bytes))
                .await
                .unwrap_or_else(|_| {
                    Err(Attempt::Retry(format!(
                        "no complete answer within {:?}",
                        self.timeout
                    )))
                });
            match result {
                Ok(bytes) => return Ok(bytes),
                Err(Attempt::Final(FetchError::Unreachable(m))) => {
                    return Err(FetchError::Unreachable(format!("{uri}: {m}")));
                }
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry(m)) => last = m,
            }
        }
        Err(FetchError::Unreachable(format!(
            "{uri}: {last} (gave up after {} attempts)",
            self.attempts
        )))
    }
}

/// Every location by the URI's scheme: `file://` and bare paths go to [`FileFetch`],
/// `http(s)://` to [`HttpFetch`], `s3://`, `gs://` and `az://` to [`ObjectFetch`]. Other
/// schemes (`pvc://`) are `Unreachable` here: the Job mounts those as files first.
#[derive(Debug, Clone)]
pub struct AnyFetch {
    /// For `file://` and bare paths.
    pub file: FileFetch,
    /// For `http://` and `https://`.
    pub http: HttpFetch,
    /// For `s3://`, `gs://` and `az://`.
    pub objects: ObjectFetch,
}

impl AnyFetch {
    /// Files under `root`, an [`HttpFetch::new`] client and object stores configured from
    /// this process's environment ([`ObjectFetch::from_env`]).
    pub fn new(root: impl Into<PathBuf>) -> Result<Self, super::Error> {
        Ok(Self {
            file: FileFetch::new(root),
            http: HttpFetch::new()?,
            objects: ObjectFetch::from_env(),
        })
    }

    /// Sets where HTTP(S) and object-store fetches may connect.
    pub fn with_egress(mut self, egress: Egress) -> Self {
        self.http = self.http.with_egress(egress.clone());
        self.objects = self.objects.with_egress(egress);
        self
    }

    /// Restricts `file://` reads as [`FileFetch::only_under`] and [`FileFetch::excluding`] do.
    pub fn with_files(mut self, file: FileFetch) -> Self {
        self.file = file;
        self
    }

    /// Replaces the object stores' settings.
    pub fn with_objects(mut self, objects: ObjectFetch) -> Self {
        self.objects = objects;
        self
    }
}

impl Fetch for AnyFetch {
    async fn fetch(&self, uri: &str, max_bytes: u64) -> Result<Vec<u8>, FetchError> {
        match scheme(uri).as_deref() {
            Some("http" | "https") => self.http.fetch(uri, max_bytes).await,
            None | Some("file") => self.file.fetch(uri, max_bytes).await,
            Some("s3" | "gs" | "az") => self.objects.fetch(uri, max_bytes).await,
            Some(other) => Err(FetchError::Unreachable(format!(
                "{uri}: {other}:// is not fetched by the curation itself; file://, \
                 http(s)://, s3://, gs:// and az:// are (mount or copy the data first)"
            ))),
        }
    }
}

/// A tiny HTTP/1.1 server on loopback for tests: each request is answered by a closure of
/// (path, how many times this path was asked before).
#[cfg(test)]
pub(crate) mod testserver {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
    use tokio::net::TcpListener;

    /// An answer: status, body, and whether to send `Content-Length` (else the body ends
    /// when the connection closes).
    pub(crate) struct Reply {
        pub status: u16,
        pub body: Vec<u8>,
        pub length: bool,
        pub headers: Vec<(&'static str, String)>,
    }

    impl Reply {
        pub(crate) fn ok(body: impl Into<Vec<u8>>) -> Self {
            Self {
                status: 200,
                body: body.into(),
                length: true,
                headers: Vec::new(),
            }
        }
        pub(crate) fn status(status: u16) -> Self {
            Self {
                status,
                body: Vec::new(),
                length: true,
                headers: Vec::new(),
            }
        }
        pub(crate) fn redirect(to: &str) -> Self {
            Self {
                headers: vec![("Location", to.into())],
                ..Self::status(302)
            }
        }
    }

    /// Serves until the test's runtime ends; returns `http://127.0.0.1:PORT` and the
    /// requests seen per path.
    pub(crate) async fn serve(
        handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
        serve_with(None, handler).await
    }

    /// [`serve`], over TLS when `tls` is given (then the URL is `https://`).
    pub(crate) async fn serve_with(
        tls: Option<tokio_rustls::TlsAcceptor>,
        handler: impl Fn(&str, usize) -> Reply + Send + Sync + 'static,
    ) -> (String, Arc<Mutex<HashMap<String, usize>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let base = format!("{scheme}://{}", listener.local_addr().unwrap());
        let seen: Arc<Mutex<HashMap<String, usize>>> = Arc::default();
        let handler = Arc::new(handler);
        let counts = seen.clone();
        tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let (handler, counts, tls) = (handler.clone(), counts.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => answer(sock, &*handler, &counts).await,
                        Some(tls) => {
                            if let Ok(sock) = tls.accept(sock).await {
                                answer(sock, &*handler, &counts).await;
                            }
                        }
                    }
                });
            }
        });
        (base, seen)
    }

    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        mut sock: S,
        handler: &(dyn Fn(&str, usize) -> Reply + Send + Sync),
        counts: &Mutex<HashMap<String, usize>>,
    ) {
        let mut req = Vec::new();
        let mut buf = [0u8; 1024];
        while !req.windows(4).any(|w| w == b"\r\n\r\n") {
            match sock.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => req.extend_from_slice(&buf[..n]),
            }
        }
        let req = String::from_utf8_lossy(&req);
        let path = req.split_whitespace().nth(1).unwrap_or("/").to_string();
        let nth = {
            let mut counts = counts.lock().unwrap();
            let n = counts.entry(path.clone()).or_insert(0);
            *n += 1;
            *n - 1
        };
        let reply = handler(&path, nth);
        let mut head = format!("HTTP/1.1 {} X\r\nConnection: close\r\n", reply.status);
        for (name, value) in &reply.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if reply.length {
            head.push_str(&format!("Content-Length: {}\r\n", reply.body.len()));
        }
        head.push_str("\r\n");
        let _ = sock.write_all(head.as_bytes()).await;
        let _ = sock.write_all(&reply.body).await;
        let _ = sock.shutdown().await;
    }

    /// An http URL on a loopback port where nothing listens.
    pub(crate) async fn closed_port_url() -> String {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/gone.jsonl")
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // tests fail loudly on purpose

    use super::testserver::{Reply, closed_port_url, serve, serve_with};
    use super::*;

    /// The test servers are on loopback: allowed explicitly.
    fn quick() -> HttpFetch {
        HttpFetch::new()
            .unwrap()
            .with_retries(3, Duration::from_millis(5))
            .with_egress(Egress::allowing(["127.0.0.1:*"]))
    }

    #[tokio::test]
    async fn internal_addresses_are_refused_directly_and_through_redirects() {
        let (internal, seen) = serve(|_, _| Reply::ok("secret")).await;
        let internal_port = internal.rsplit(':').next().unwrap().to_string();
        let target = format!("{internal}/latest/meta-data");
        let (redirector, _) = serve(move |_, _| Reply::redirect(&target)).await;
        let redirector_port = redirector.rsplit(':').next().unwrap().to_string();
        // Only the redirector is allowed: the address it sends to is not.
        let f = HttpFetch::new()
            .unwrap()
            .with_retries(3, Duration::from_millis(5))
            .with_egress(Egress::allowing([format!("127.0.0.1:{redirector_port}")]));
        let refused = |r: Result<Vec<u8>, FetchError>| match r {
            Err(FetchError::Unreachable(m)) => {
                assert!(m.contains("not a public address"), "{m}");
                assert!(!m.contains("secret"), "{m}");
            }
            other => panic!("{other:?}"),
        };
        refused(f.fetch(&format!("{redirector}/x"), 100).await);
        for u in [
            format!("http://127.0.0.1:{internal_port}/"),
            format!("http://2130706433:{internal_port}/"),
            format!("http://0x7f.0.0.1:{internal_port}/"),
            format!("http://localhost:{internal_port}/"),
            format!("http://[::ffff:127.0.0.1]:{internal_port}/"),
            "http://169.254.169.254/latest/meta-data/".to_string(),
            "http://[fd00:ec2::254]/".to_string(),
        ] {
            refused(f.fetch(&u, 100).await);
        }
        assert!(
            seen.lock().unwrap().is_empty(),
            "the internal server was never asked"
        );
    }

    #[tokio::test]
    async fn files_resolve_under_the_root_only() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("data/c")).unwrap();
        std::fs::write(dir.path().join("data/c/a.jsonl"), b"abc").unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret"),
            dir.path().join("data/c/link"),
        )
        .unwrap();
        let f = FileFetch::new(dir.path());
        assert_eq!(f.fetch("file:///data/c/a.jsonl", 10).await.unwrap(), b"abc");
        assert_eq!(f.fetch("data/c/a.jsonl", 10).await.unwrap(), b"abc");
        assert_eq!(
            f.fetch("file:///data/x/../c/a.jsonl", 10).await.unwrap(),
            b"abc",
            "a URI's dot segments are resolved before the root is applied"
        );
        assert_eq!(
            f.fetch("file:///data/c/a.jsonl", 2).await,
            Err(FetchError::TooLarge { limit: 2 })
        );
        let unreachable = |r: Result<Vec<u8>, FetchError>, what: &str| match r {
            Err(FetchError::Unreachable(m)) => assert!(m.contains(what), "{m}"),
            other => panic!("{other:?}"),
        };
        unreachable(f.fetch("file:///data/c/none", 10).await, "No such file");
        unreachable(f.fetch("data/../../etc/passwd", 10).await, "`..`");
        unreachable(f.fetch("file:///data/c/link", 10).await, "symbolic link");
        unreachable(
            f.fetch("file://elsewhere/data/c/a.jsonl", 10).await,
            "another host",
        );
        unreachable(f.fetch("file:///data/c", 10).await, "not a regular file");
        unreachable(f.fetch("s3://bucket/a", 10).await, "not a local file");
    }

    #[tokio::test]
    async fn http_retries_transient_failures_and_stops_on_final_ones() {
        let (base, seen) = serve(|path, nth| match (path, nth) {
            ("/ok", _) => Reply::ok("hello"),
            ("/flaky", 0) => Reply::status(503),
            ("/flaky", 1) => Reply::status(429),
            ("/flaky", _) => Reply::ok("finally"),
            ("/big", _) => Reply::ok(vec![b'x'; 100]),
            ("/big-unsized", _) => Reply {
                length: false,
                ..Reply::ok(vec![b'x'; 100])
            },
            ("/down", _) => Reply::status(500),
            ("/moved", _) => Reply::redirect("/ok"),
            ("/loop", _) => Reply::redirect("/loop"),
            _ => Reply::status(404),
        })
        .await;
        let f = quick();
        assert_eq!(f.fetch(&format!("{base}/ok"), 10).await.unwrap(), b"hello");
        assert_eq!(
            f.fetch(&format!("{base}/flaky"), 10).await.unwrap(),
            b"finally"
        );
        assert_eq!(
            f.fetch(&format!("{base}/missing"), 10).await,
            Err(FetchError::Unreachable(format!(
                "{base}/missing: HTTP 404 Not Found"
            )))
        );
        assert_eq!(
            f.fetch(&format!("{base}/down"), 10).await,
            Err(FetchError::Unreachable(format!(
                "{base}/down: HTTP 500 Internal Server Error (gave up after 3 attempts)"
            )))
        );
        assert_eq!(
            f.fetch(&format!("{base}/moved"), 10).await.unwrap(),
            b"hello"
        );
        assert_eq!(
            f.fetch(&format!("{base}/loop"), 10).await,
            Err(FetchError::Unreachable(format!(
                "{base}/loop: more than 5 redirects"
            )))
        );
        for path in ["/big", "/big-unsized"] {
            assert_eq!(
                f.fetch(&format!("{base}{path}"), 99).await,
                Err(FetchError::TooLarge { limit: 99 }),
                "{path}"
            );
        }
        let seen = seen.lock().unwrap().clone();
        assert_eq!(seen["/flaky"], 3, "503 and 429 are retried");
        assert_eq!(seen["/missing"], 1, "404 is final");
        assert_eq!(seen["/down"], 3, "every attempt is used");
        assert_eq!(seen["/big"], 1, "too large is final");
    }

    #[tokio::test]
    async fn an_unreachable_host_is_reported_after_the_retries() {
        let url = closed_port_url().await;
        match quick().fetch(&url, 10).await {
            Err(FetchError::Unreachable(m)) => {
                assert!(m.starts_with(&url), "{m}");
                assert!(m.ends_with("(gave up after 3 attempts)"), "{m}");
            }
            other => panic!("{other:?}"),
        }
    }

    /// A self-signed certificate for 127.0.0.1 made with the `openssl` CLI (as the test
    /// bed makes its certificates): (certificate PEM, key PEM).
    fn self_signed(dir: &Path) -> (Vec<u8>, Vec<u8>) {
        std::fs::write(
            dir.join("req.cnf"),
            "[req]\ndistinguished_name = dn\nx509_extensions = ext\nprompt = no\n\
             [dn]\nCN = modelcommons-test\n\
             [ext]\nbasicConstraints = critical,CA:FALSE\nsubjectAltName = IP:127.0.0.1\n\
             keyUsage = critical,digitalSignature\nextendedKeyUsage = serverAuth\n",
        )
        .unwrap();
        let out = std::process::Command::new("openssl")
            .args([
                "req",
                "-x509",
                "-config",
                "req.cnf",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
                "-nodes",
                "-keyout",
                "key.pem",
                "-out",
                "cert.pem",
                "-days",
                "2",
            ])
            .current_dir(dir)
            .output()
            .expect("running openssl (install the openssl package)");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (
            std::fs::read(dir.join("cert.pem")).unwrap(),
            std::fs::read(dir.join("key.pem")).unwrap(),
        )
    }

    #[tokio::test]
    async fn https_trusts_the_given_ca_and_refuses_an_unknown_one() {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = self_signed(dir.path());
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![CertificateDer::from_pem_slice(&cert).unwrap()],
            PrivateKeyDer::from_pem_slice(&key).unwrap(),
        )
        .unwrap();
        let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let (base, _) = serve_with(Some(tls.clone()), |_, _| Reply::ok("over tls")).await;
        assert!(base.starts_with("https://127.0.0.1:"));

        let trusting = HttpFetch::with_ca_pem(&cert)
            .unwrap()
            .with_retries(1, Duration::ZERO)
            .with_egress(Egress::allowing(["127.0.0.1:*"]));
        assert_eq!(
            trusting.fetch(&format!("{base}/a"), 100).await.unwrap(),
            b"over tls"
        );
        match quick().fetch(&format!("{base}/a"), 100).await {
            Err(FetchError::Unreachable(m)) => assert!(m.contains("UnknownIssuer"), "{m}"),
            other => panic!("{other:?}"),
        }
        // From https, a redirect to plain http is not followed.
        let (plain, downgraded) = serve(|_, _| Reply::ok("downgraded")).await;
        let to = format!("{plain}/a");
        let (redirecting, _) =
            serve_with(Some(tls.clone()), move |_, _| Reply::redirect(&to)).await;
        match trusting.fetch(&format!("{redirecting}/x"), 100).await {
            Err(FetchError::Unreachable(m)) => assert!(m.contains("plain http"), "{m}"),
            other => panic!("{other:?}"),
        }
        assert!(
            downgraded.lock().unwrap().is_empty(),
            "never asked over http"
        );
        assert!(matches!(
            HttpFetch::with_ca_pem(b"not pem"),
            Err(super::super::Error::HttpClient(m)) if m.contains("no PEM CERTIFICATE")
        ));
    }

    #[tokio::test]
    async fn any_fetch_dispatches_by_scheme() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), b"local").unwrap();
        let (base, _) = serve(|_, _| Reply::ok("remote")).await;
        let f = AnyFetch {
            file: FileFetch::new(dir.path()),
            http: quick(),
            objects: ObjectFetch::new(Vec::new()),
        };
        assert_eq!(f.fetch("file:///a", 10).await.unwrap(), b"local");
        assert_eq!(f.fetch("/a", 10).await.unwrap(), b"local");
        assert_eq!(f.fetch(&format!("{base}/a"), 10).await.unwrap(), b"remote");
        assert!(matches!(
            f.fetch("pvc://claim/a", 10).await,
            Err(FetchError::Unreachable(m)) if m.contains("mount or copy")
        ));
        // An object URI goes to the object store (here one without a bucket: refused before
        // any request).
        assert!(matches!(
            f.fetch("s3:///a", 10).await,
            Err(FetchError::Unreachable(m)) if m.contains("no bucket")
        ));
    }
}
