//! Links the trainer against the libtorch of the torch 2.13.0 wheel (`LIBTORCH`, set by the
//! Makefile from `hack/libtorch.sh`) with an rpath, so the binary runs without
//! `LD_LIBRARY_PATH`.
//!
//! CUDA: libtorch's CUDA kernels live in `libtorch_cuda.so`, which nothing in the trainer
//! references by symbol, so the default `--as-needed` link drops it and `tch::Cuda` reports no
//! device. With `TORCH_CUDA=1` the build links it with `--no-as-needed` and adds the rpath of
//! the NVIDIA wheels (`site-packages/nvidia/*/lib`). That build then needs the full
//! `pip install torch==2.13.0` (cuBLAS, cuDNN, NCCL … wheels) on the machine that runs it.

use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rerun-if-env-changed=TORCH_CUDA");
    let Some(libtorch) = std::env::var_os("LIBTORCH").map(PathBuf::from) else {
        // torch-sys fails with its own message; add ours on how to get libtorch here.
        println!(
            "cargo:warning=LIBTORCH is not set: run `make libtorch` (or `export LIBTORCH=$(hack/libtorch.sh)`)"
        );
        return;
    };
    let lib = libtorch.join("lib");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    // The wheel's own RPATHs point at ../../nvidia/*/lib; add them for the binary as well.
    if let Some(site) = libtorch.parent() {
        for dir in nvidia_lib_dirs(&site.join("nvidia")) {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", dir.display());
        }
    }
    if std::env::var("TORCH_CUDA").is_ok_and(|v| v == "1") {
        println!("cargo:rustc-link-search=native={}", lib.display());
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed,-ltorch_cuda,--as-needed");
    }
}

fn nvidia_lib_dirs(nvidia: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(nvidia) else {
        return Vec::new();
    };
    let mut dirs: Vec<PathBuf> = entries
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("lib"))
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}
