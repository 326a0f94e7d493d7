# The operator image: `modelcommons-operator` (run, curate, bootstrap, crd) on a distroless,
# non-root base. Build from the repository root:
#   docker build -f images/operator.Dockerfile -t ghcr.io/modelcommons/operator:0.1.0 .
# Not built by this repository's CI: the machine it runs on has no container daemon and no
# registry access (see README, Installing).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
# The operator does not link libtorch; only its own crate and the CRD types are built.
RUN cargo build --release --locked -p modelcommons-operator --bin modelcommons-operator \
 && strip target/release/modelcommons-operator

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /src/target/release/modelcommons-operator /usr/local/bin/modelcommons-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/modelcommons-operator"]
CMD ["run"]
