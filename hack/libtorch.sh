#!/usr/bin/env bash
# Installs (once) libtorch for tch 0.26: the torch 2.13.0 wheel from PyPI plus the CUDA 13
# runtime and CUPTI wheels that libtorch links against, into a cache outside the clone.
# Prints the LIBTORCH directory (…/site-packages/torch) on stdout; logs go to stderr.
#
# Only what tch links is installed (no cuDNN/cuBLAS/NCCL wheels: several GB). The CPU build of
# the trainer therefore runs anywhere; for a CUDA build see trainer/build.rs (TORCH_CUDA=1),
# which additionally needs `pip install torch==2.13.0` with its dependencies on the GPU host.
set -euo pipefail
TORCH_VERSION=2.13.0
cache=${MODELCOMMONS_CACHE:-$HOME/.cache/modelcommons}
dest="$cache/libtorch/torch-${TORCH_VERSION}"
site="$dest/site-packages"
if [ -f "$dest/.complete" ]; then echo "$site/torch"; exit 0; fi
py=$(command -v python3 || command -v python) || { echo "python3 is needed to fetch the torch wheel" >&2; exit 1; }
rm -rf "$dest.tmp"; mkdir -p "$dest.tmp"
echo "installing torch ${TORCH_VERSION} wheel (about 1 GB download, once) into $dest" >&2
"$py" -m pip install --quiet --disable-pip-version-check --no-deps --no-compile \
  --target "$dest.tmp/site-packages" \
  "torch==${TORCH_VERSION}" "nvidia-cuda-runtime==13.*" "nvidia-cuda-cupti==13.*" >&2
touch "$dest.tmp/.complete"
rm -rf "$dest"; mv "$dest.tmp" "$dest"
echo "$site/torch"
