//! Real object-store servers on loopback, one per test, with one bucket each: S3 from
//! s3proxy (signature checked), Azure Blob from Azurite (shared key checked) and GCS from
//! fake-gcs-server. `hack/object-stores.sh` (run by `hack/deps.sh`) installs them and exports
//! their paths.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use modelcommons_operator::curate::{Egress, ObjectFetch};

/// Azurite's well-known development account.
pub const AZURITE_ACCOUNT: &str = "devstoreaccount1";
pub const AZURITE_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";

/// A running server and the settings that reach its bucket.
pub struct Store {
    /// `s3://bucket`, `az://container` or `gs://bucket`.
    pub bucket: String,
    /// The settings as environment variables (what a Secret for `credentialsSecretRef`
    /// holds).
    pub env: Vec<(String, String)>,
    /// `127.0.0.1:<port>`: what fetches must be allowed to reach.
    pub addr: String,
    upload: Option<String>,
    child: tokio::process::Child,
    _dir: tempfile::TempDir,
}

impl Store {
    /// The settings as `object_store` keys (lower case), for an [`ObjectFetch`].
    pub fn options(&self) -> Vec<(String, String)> {
        self.env
            .iter()
            .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
            .collect()
    }

    pub fn fetch(&self) -> ObjectFetch {
        ObjectFetch::new(self.options()).with_egress(self.egress())
    }

    /// Fetches allowed to reach this store.
    pub fn egress(&self) -> Egress {
        Egress::allowing([self.addr.as_str()])
    }

    /// `<bucket>/<path>`.
    pub fn uri(&self, path: &str) -> String {
        format!("{}/{path}", self.bucket)
    }

    /// Writes an object. fake-gcs-server takes uploads only through the JSON API (its XML
    /// API, which object_store writes with, serves reads), so GCS objects go in that way.
    pub async fn put(&self, path: &str, bytes: impl Into<Vec<u8>>) {
        if let Some(base) = &self.upload {
            let r = reqwest::Client::new()
                .post(format!(
                    "{base}/upload/storage/v1/b/contributions/o?uploadType=media&name={}",
                    path.replace('/', "%2F")
                ))
                .body(bytes.into())
                .send()
                .await
                .unwrap();
            assert!(r.status().is_success(), "{:?}", r.text().await);
            return;
        }
        self.fetch()
            .put(&self.uri(path), bytes.into())
            .await
            .unwrap();
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn tool(var: &str) -> PathBuf {
    PathBuf::from(std::env::var(var).unwrap_or_else(|_| {
        panic!(
            "{var} is not set: run the tests through `make test`, or eval \"$(hack/deps.sh)\" first"
        )
    }))
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `port` answers HTTP; fails the test with the server's log after 60 s.
async fn until_up(port: u16, child: &mut tokio::process::Child, log: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
        {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!(
                "the object store exited ({status}): {}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        assert!(
            Instant::now() < deadline,
            "the object store did not listen on {port} in 60 s: {}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn(cmd: &mut tokio::process::Command, log: &std::path::Path) -> tokio::process::Child {
    let out = std::fs::File::create(log).unwrap();
    cmd.stdout(out.try_clone().unwrap())
        .stderr(out)
        .kill_on_drop(true)
        .spawn()
        .unwrap()
}

/// s3proxy on the local filesystem, requiring AWS signatures with its one identity.
pub async fn s3() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("data/contributions")).unwrap();
    let conf = dir.path().join("s3proxy.conf");
    std::fs::write(
        &conf,
        format!(
            "s3proxy.endpoint=http://127.0.0.1:{port}\n\
             s3proxy.authorization=aws-v2-or-v4\n\
             s3proxy.identity=modelcommons\n\
             s3proxy.credential=modelcommons-secret\n\
             jclouds.provider=filesystem\n\
             jclouds.filesystem.basedir={}\n",
            dir.path().join("data").display()
        ),
    )
    .unwrap();
    let log = dir.path().join("s3proxy.log");
    let mut child = spawn(
        tokio::process::Command::new("java")
            .arg("-jar")
            .arg(tool("MODELCOMMONS_S3PROXY_JAR"))
            .arg("--properties")
            .arg(&conf),
        &log,
    );
    until_up(port, &mut child, &log).await;
    Store {
        bucket: "s3://contributions".into(),
        addr: format!("127.0.0.1:{port}"),
        env: vec![
            // The store is on loopback: its address must be allowed explicitly.
            (
                "MODELCOMMONS_FETCH_ALLOW".into(),
                format!("127.0.0.1:{port}"),
            ),
            ("AWS_ACCESS_KEY_ID".into(), "modelcommons".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "modelcommons-secret".into()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ENDPOINT".into(), format!("http://127.0.0.1:{port}")),
            ("AWS_ALLOW_HTTP".into(), "true".into()),
        ],
        upload: None,
        child,
        _dir: dir,
    }
}

/// Azurite (blob service, in memory) with its development account.
pub async fn azure() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let azurite = tool("MODELCOMMONS_AZURITE");
    let log = dir.path().join("azurite.log");
    let mut child = spawn(
        tokio::process::Command::new(azurite.join("node_modules/.bin/azurite-blob"))
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string()])
            .args(["--inMemoryPersistence", "--skipApiVersionCheck", "--silent"]),
        &log,
    );
    until_up(port, &mut child, &log).await;
    let endpoint = format!("http://127.0.0.1:{port}/{AZURITE_ACCOUNT}");
    // object_store cannot create containers: Microsoft's own client does.
    let script = r"
        const {BlobServiceClient, StorageSharedKeyCredential} = require('@azure/storage-blob');
        const [url, account, key, container] = process.argv.slice(1);
        new BlobServiceClient(url, new StorageSharedKeyCredential(account, key))
          .getContainerClient(container).createIfNotExists()
          .then(() => {}, e => { console.error(e.message); process.exit(1); });";
    let out = tokio::process::Command::new("node")
        .env("NODE_PATH", azurite.join("node_modules"))
        .args([
            "-e",
            script,
            &endpoint,
            AZURITE_ACCOUNT,
            AZURITE_KEY,
            "contributions",
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "creating the container: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Store {
        bucket: "az://contributions".into(),
        addr: format!("127.0.0.1:{port}"),
        env: vec![
            // The store is on loopback: its address must be allowed explicitly.
            (
                "MODELCOMMONS_FETCH_ALLOW".into(),
                format!("127.0.0.1:{port}"),
            ),
            ("AZURE_STORAGE_ACCOUNT_NAME".into(), AZURITE_ACCOUNT.into()),
            ("AZURE_STORAGE_ACCOUNT_KEY".into(), AZURITE_KEY.into()),
            ("AZURE_STORAGE_ENDPOINT".into(), endpoint),
            ("AZURE_ALLOW_HTTP".into(), "true".into()),
        ],
        upload: None,
        child,
        _dir: dir,
    }
}

/// fake-gcs-server in memory, its bucket made from a directory at start.
pub async fn gcs() -> Store {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    std::fs::create_dir_all(dir.path().join("data/contributions")).unwrap();
    let log = dir.path().join("fake-gcs.log");
    let mut child = spawn(
        tokio::process::Command::new(tool("MODELCOMMONS_FAKE_GCS"))
            .args([
                "-scheme",
                "http",
                "-host",
                "127.0.0.1",
                "-backend",
                "memory",
            ])
            .args(["-port", &port.to_string()])
            .args(["-public-host", &format!("127.0.0.1:{port}")])
            .arg("-data")
            .arg(dir.path().join("data")),
        &log,
    );
    until_up(port, &mut child, &log).await;
    // What object_store's own CI uses for fake-gcs-server: a service-account key that names
    // the server and turns OAuth off.
    let key = serde_json::json!({
        "gcs_base_url": format!("http://127.0.0.1:{port}"),
        "disable_oauth": true, "client_email": "", "private_key": "", "private_key_id": ""
    });
    Store {
        bucket: "gs://contributions".into(),
        addr: format!("127.0.0.1:{port}"),
        env: vec![
            // The store is on loopback: its address must be allowed explicitly.
            (
                "MODELCOMMONS_FETCH_ALLOW".into(),
                format!("127.0.0.1:{port}"),
            ),
            ("GOOGLE_SERVICE_ACCOUNT_KEY".into(), key.to_string()),
            ("GOOGLE_ALLOW_HTTP".into(), "true".into()),
        ],
        upload: Some(format!("http://127.0.0.1:{port}")),
        child,
        _dir: dir,
    }
}
