# The trainer / inference server image: `modelcommons-trainer` linked against libtorch 2.13.0
# from the PyPI torch wheel (CUDA 13), on the CUDA runtime base, non-root. Build from the
# repository root:
#   docker build -f images/trainer.Dockerfile -t ghcr.io/modelcommons/trainer:0.1.0 .
# Not built by this repository's CI (no container daemon or registry on its machine).
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends python3-pip python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/torch && /opt/torch/bin/pip install --no-cache-dir torch==2.13.0
WORKDIR /src
COPY . .
ENV LIBTORCH=/opt/torch/lib/python3.11/site-packages/torch TORCH_CUDA=1
RUN cargo build --release --locked -p modelcommons-trainer --bin modelcommons-trainer

FROM nvidia/cuda:13.0.0-cudnn-runtime-ubuntu24.04
# libtorch and the NVIDIA libraries the trainer's rpath names, from the same wheel set.
COPY --from=build /opt/torch/lib/python3.11/site-packages/torch/lib /opt/torch/lib/python3.11/site-packages/torch/lib
COPY --from=build /opt/torch/lib/python3.11/site-packages/nvidia /opt/torch/lib/python3.11/site-packages/nvidia
COPY --from=build /src/target/release/modelcommons-trainer /usr/local/bin/modelcommons-trainer
RUN useradd --uid 65532 --no-create-home --shell /usr/sbin/nologin trainer
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/modelcommons-trainer"]
