//! A local EVM chain: anvil from npm `@foundry-rs/anvil-linux-amd64`, on a free loopback port.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tempfile::TempDir;

use crate::paths::anvil_binary;
use crate::process::{Component, free_port};
use crate::{Error, Result};

/// The chain id anvil runs with here.
pub const CHAIN_ID: u64 = 31337;

/// The private keys of anvil's ten funded dev accounts (the well-known `test test … junk`
/// mnemonic). Dev chains only: these keys are public.
pub const DEV_KEYS: [&str; 10] = [
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
    "0x8b3a350cf5c34c9194ca85829a2df0ec3153be0318b5e2d3348e872092edffba",
    "0x92db14e403b83dfe3df233f83dfa3a0d7096f21ca9b0d6d6b8d88b2b4ec1564e",
    "0x4bbbf85ce3377467afe5d46f804f221813b2bb87f24d81f60f1fcdbf7cbf4356",
    "0xdbda1821b80551c9d65939329250298aa3472ba22feea921c0cf5d620ea67b97",
    "0x2a871d0798f97d79848a013d4936a73bf4cc922c825d33c1cf7073dff6d409c6",
];

/// A running anvil chain, killed when dropped.
#[derive(Debug)]
pub struct Anvil {
    port: u16,
    startup: Duration,
    _process: Component,
    _dir: TempDir,
}

impl Anvil {
    /// Starts anvil (instant mining, chain id 31337, ten funded dev accounts) and returns once
    /// its JSON-RPC endpoint answers with the genesis block.
    pub fn start() -> Result<Self> {
        let started = Instant::now();
        let bin = anvil_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("modelcommons-anvil-")
            .tempdir()
            .map_err(|source| Error::Io {
                what: "creating a temporary directory".into(),
                source,
            })?;
        let port = free_port()?;
        let mut cmd = std::process::Command::new(bin);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--chain-id",
            &CHAIN_ID.to_string(),
            "--accounts",
            "10",
        ]);
        let mut process = Component::spawn("anvil", cmd, dir.path())?;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let genesis = rpc(
                port,
                "eth_getBlockByNumber",
                serde_json::json!(["0x0", false]),
            );
            if genesis.is_ok_and(|v| v.get("number").is_some()) {
                break;
            }
            process.check_alive()?;
            if Instant::now() > deadline {
                return Err(process.not_ready(30));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(Self {
            port,
            startup: started.elapsed(),
            _process: process,
            _dir: dir,
        })
    }

    /// The HTTP JSON-RPC endpoint, `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// How long the start took, until the genesis block was served.
    pub fn startup(&self) -> Duration {
        self.startup
    }

    /// One JSON-RPC call (for tests and benchmarks that need no full client).
    pub fn rpc(&self, method: &str, params: serde_json::Value) -> Result<serde_json::Value> {
        rpc(self.port, method, params)
    }
}

fn rpc(port: u16, method: &str, params: serde_json::Value) -> Result<serde_json::Value> {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": method, "params": params})
        .to_string();
    let io = |source| Error::Io {
        what: format!("JSON-RPC {method} to 127.0.0.1:{port}"),
        source,
    };
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(io)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(io)?;
    write!(
        s,
        "POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(io)?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(io)?;
    let json = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(json).map_err(|e| {
        Error::Setup(format!(
            "JSON-RPC {method}: unreadable answer ({e}): {resp}"
        ))
    })?;
    if let Some(err) = v.get("error") {
        return Err(Error::Setup(format!(
            "JSON-RPC {method} answered an error: {err}"
        )));
    }
    Ok(v.get("result").cloned().unwrap_or_default())
}
