//! Child processes of the test bed: started with their output in a log file, killed and
//! reaped on drop, and diagnosed by the tail of that log when they fail.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::{Error, Result};

/// A running component (etcd, kube-apiserver, …). Killed when dropped.
#[derive(Debug)]
pub(crate) struct Component {
    pub(crate) name: &'static str,
    pub(crate) log: PathBuf,
    child: Child,
}

impl Component {
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, log_dir: &Path) -> Result<Self> {
        let log = log_dir.join(format!("{name}.log"));
        let file = File::create(&log).map_err(|source| Error::Io {
            what: format!("creating {}", log.display()),
            source,
        })?;
        let err = file.try_clone().map_err(|source| Error::Io {
            what: format!("cloning {}", log.display()),
            source,
        })?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .map_err(|source| Error::Io {
                what: format!("starting {name} ({:?})", cmd.get_program()),
                source,
            })?;
        Ok(Self { name, log, child })
    }

    /// An error if the process has exited already (with its log's tail).
    pub(crate) fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(Error::Exited {
                component: self.name,
                status: status.to_string(),
                log: self.log.display().to_string(),
                tail: tail(&self.log, 25),
            }),
            _ => Ok(()),
        }
    }

    pub(crate) fn not_ready(&self, seconds: u64) -> Error {
        Error::NotReady {
            component: self.name,
            seconds,
            log: self.log.display().to_string(),
            tail: tail(&self.log, 25),
        }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Component {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The last `n` lines of a log file, for error messages.
pub(crate) fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A free TCP port on 127.0.0.1 (bound and released; the kernel does not hand it out again
/// soon, which is enough for components started right after).
pub(crate) fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|source| Error::Io {
        what: "binding a free port on 127.0.0.1".into(),
        source,
    })?;
    let port = l.local_addr().map_err(|source| Error::Io {
        what: "reading a bound port".into(),
        source,
    })?;
    Ok(port.port())
}
