//! `testbed`: runs the test bed by hand and measures it.
//!
//! ```text
//! testbed up [--dir DIR]   start a control plane (state in DIR, default .tmp/cluster) and keep
//!                          it running until SIGINT/SIGTERM; writes DIR/kubeconfig and DIR/ready
//! testbed bench [--runs N] print control-plane start-to-ready and anvil start-to-first-block
//! ```

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use modelcommons_testbed::{
    Anvil, ControlPlane, ControlPlaneOptions, init_tracing, workspace_root,
};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    init_tracing();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("up") => up(flag(&args, "--dir").map(PathBuf::from)).await,
        Some("bench") => {
            let runs = flag(&args, "--runs")
                .map(|r| r.parse())
                .transpose()
                .context("--runs takes a number")?;
            bench(runs.unwrap_or(3)).await
        }
        _ => bail!("usage: testbed up [--dir DIR] | testbed bench [--runs N]"),
    }
}

fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
}

async fn up(dir: Option<PathBuf>) -> anyhow::Result<()> {
    let dir = dir.unwrap_or_else(|| workspace_root().join(".tmp/cluster"));
    let cp = ControlPlane::start(ControlPlaneOptions {
        dir: Some(dir.clone()),
        ..Default::default()
    })
    .await
    .context("starting the control plane")?;
    let ready = dir.join("ready");
    std::fs::write(&ready, format!("{}\n", cp.server()))?;
    println!("control plane ready in {:.1}s", cp.startup().as_secs_f64());
    println!("  export KUBECONFIG={}", cp.kubeconfig().display());
    for (name, pid) in cp.pids() {
        println!(
            "  {name:<24} pid {pid}  log {}/logs/{name}.log",
            dir.display()
        );
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {},
        _ = term.recv() => {},
    }
    println!("stopping the control plane");
    cp.stop();
    Ok(())
}

async fn bench(runs: usize) -> anyhow::Result<()> {
    let mut cp_times = Vec::new();
    let mut anvil_times = Vec::new();
    for _ in 0..runs {
        let cp = ControlPlane::start(ControlPlaneOptions::default()).await?;
        cp_times.push(cp.startup());
        cp.stop();
        let anvil = Anvil::start()?;
        anvil_times.push(anvil.startup());
    }
    report(
        "control plane start → ready (2 kwok nodes Ready)",
        &cp_times,
        Duration::from_secs(20),
    );
    report(
        "anvil start → genesis block served",
        &anvil_times,
        Duration::from_secs(2),
    );
    Ok(())
}

fn report(what: &str, times: &[Duration], target: Duration) {
    let mut s: Vec<f64> = times.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    let median = s.get(s.len() / 2).copied().unwrap_or_default();
    println!(
        "{what:<52} median {median:>7.3}s  min {:>7.3}s  max {:>7.3}s  (runs {}, target ≤ {}s)",
        s.first().copied().unwrap_or_default(),
        s.last().copied().unwrap_or_default(),
        s.len(),
        target.as_secs()
    );
}
