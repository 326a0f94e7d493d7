#!/usr/bin/env bash
# Installs (once) the Python reference environment the trainer's parity tests and benchmarks
# compare against: the same torch wheel tch links (2.13.0, with its CUDA libraries, about
# 4.7 GB: `import torch` needs them even on CPU) plus Hugging Face `transformers`, in a venv in
# the cache outside the clone. Prints the venv's python on stdout; logs go to stderr.
set -euo pipefail
TORCH_VERSION=2.13.0
TRANSFORMERS_VERSION=5.24.0
cache=${MODELCOMMONS_CACHE:-$HOME/.cache/modelcommons}
dest="$cache/pyenv/torch-${TORCH_VERSION}_transformers-${TRANSFORMERS_VERSION}"
if [ -f "$dest/.complete" ]; then echo "$dest/bin/python"; exit 0; fi
py=$(command -v python3 || command -v python) || { echo "python3 is needed" >&2; exit 1; }
rm -rf "$dest"; "$py" -m venv "$dest"
echo "installing torch ${TORCH_VERSION} + transformers ${TRANSFORMERS_VERSION} into $dest (about 5 GB, once)" >&2
"$dest/bin/python" -m pip install --quiet --disable-pip-version-check --no-compile \
  "torch==${TORCH_VERSION}" "transformers==${TRANSFORMERS_VERSION}" "safetensors" "tokenizers" "jinja2" >&2
touch "$dest/.complete"
echo "$dest/bin/python"
