//! Certificates and keys of a test control plane, made with the `openssl` CLI: a CA, the
//! API server's serving certificate (127.0.0.1, localhost, the in-cluster names), an admin
//! client certificate in `system:masters`, and the service-account signing key pair.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Error, Result};

/// Paths of the generated material, all inside the control plane's directory.
#[derive(Debug, Clone)]
pub(crate) struct Pki {
    pub(crate) ca_crt: PathBuf,
    pub(crate) ca_key: PathBuf,
    pub(crate) server_crt: PathBuf,
    pub(crate) server_key: PathBuf,
    pub(crate) admin_crt: PathBuf,
    pub(crate) admin_key: PathBuf,
    pub(crate) sa_key: PathBuf,
    pub(crate) sa_pub: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) -> Result<()> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|source| Error::Io {
            what: "running openssl (install the openssl package)".into(),
            source,
        })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Setup(format!(
            "openssl {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}

fn ec_key(dir: &Path, name: &str) -> Result<()> {
    openssl(
        dir,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            name,
        ],
    )
}

fn signed(dir: &Path, name: &str, subject: &str, ext: &str) -> Result<()> {
    let key = format!("{name}.key");
    let csr = format!("{name}.csr");
    let crt = format!("{name}.crt");
    let extfile = format!("{name}.ext");
    ec_key(dir, &key)?;
    std::fs::write(dir.join(&extfile), ext).map_err(|source| Error::Io {
        what: format!("writing {extfile}"),
        source,
    })?;
    openssl(
        dir,
        &["req", "-new", "-key", &key, "-subj", subject, "-out", &csr],
    )?;
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "7",
            "-extfile",
            &extfile,
            "-out",
            &crt,
        ],
    )
}

impl Pki {
    pub(crate) fn generate(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            what: format!("creating {}", dir.display()),
            source,
        })?;
        ec_key(dir, "ca.key")?;
        openssl(
            dir,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "ca.key",
                "-subj",
                "/CN=modelcommons-testbed-ca",
                "-days",
                "7",
                "-out",
                "ca.crt",
            ],
        )?;
        signed(
            dir,
            "apiserver",
            "/CN=kube-apiserver",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=serverAuth\nsubjectAltName=IP:127.0.0.1,IP:10.0.0.1,DNS:localhost,\
             DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,\
             DNS:kubernetes.default.svc.cluster.local\n",
        )?;
        signed(
            dir,
            "admin",
            "/O=system:masters/CN=modelcommons-admin",
            "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n\
             extendedKeyUsage=clientAuth\n",
        )?;
        ec_key(dir, "sa.key")?;
        openssl(dir, &["ec", "-in", "sa.key", "-pubout", "-out", "sa.pub"])?;
        Ok(Self {
            ca_crt: dir.join("ca.crt"),
            ca_key: dir.join("ca.key"),
            server_crt: dir.join("apiserver.crt"),
            server_key: dir.join("apiserver.key"),
            admin_crt: dir.join("admin.crt"),
            admin_key: dir.join("admin.key"),
            sa_key: dir.join("sa.key"),
            sa_pub: dir.join("sa.pub"),
        })
    }
}
