//! Prints (or writes) the CRD YAML generated from the Rust types.
//!
//! `crdgen` prints the stream; `crdgen --write` writes `crds/modelcommons.dev_crds.yaml`
//! (and the Helm chart's copy when the chart exists); `crdgen --check` fails when a committed
//! copy differs from what the types generate.

use std::path::PathBuf;
use std::process::ExitCode;

fn targets() -> Vec<PathBuf> {
    let crate_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = crate_dir.parent().map(PathBuf::from).unwrap_or(crate_dir);
    let mut t = vec![root.join("crds/modelcommons.dev_crds.yaml")];
    let chart = root.join("charts/modelcommons");
    if chart.join("Chart.yaml").is_file() {
        t.push(chart.join("crds/modelcommons.dev_crds.yaml"));
    }
    t
}

fn main() -> ExitCode {
    let yaml = match modelcommons_crds::crds_yaml() {
        Ok(y) => y,
        Err(e) => {
            eprintln!("crdgen: serializing the CRDs: {e}");
            return ExitCode::FAILURE;
        }
    };
    match std::env::args().nth(1).as_deref() {
        None => print!("{yaml}"),
        Some("--write") => {
            for t in targets() {
                if let Some(dir) = t.parent() {
                    let _ = std::fs::create_dir_all(dir);
                }
                if let Err(e) = std::fs::write(&t, &yaml) {
                    eprintln!("crdgen: writing {}: {e}", t.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", t.display());
            }
        }
        Some("--check") => {
            let mut stale = false;
            for t in targets() {
                if std::fs::read_to_string(&t).ok().as_deref() != Some(yaml.as_str()) {
                    eprintln!(
                        "{} is stale: run `make crds` and commit the result",
                        t.display()
                    );
                    stale = true;
                }
            }
            if stale {
                return ExitCode::FAILURE;
            }
            println!("CRD YAML up to date");
        }
        Some(other) => {
            eprintln!("crdgen: unknown argument {other}; use --write or --check");
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
