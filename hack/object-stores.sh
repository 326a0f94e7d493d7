#!/usr/bin/env bash
# Installs (once, cached by version outside the clone) the object-store servers the Datanet
# tests read manifests and contributions from, through the same `object_store` client the
# operator uses: S3 from s3proxy (Maven Central, a real S3 server on the local filesystem),
# Azure Blob from Azurite (npm, Microsoft's own emulator) and GCS from fake-gcs-server (built
# from the Go module proxy). Prints `export` lines for their paths.
set -euo pipefail
cache=${MODELCOMMONS_CACHE:-$HOME/.cache/modelcommons}
S3PROXY_VERSION=3.0.0
AZURITE_VERSION=3.37.0
STORAGE_BLOB_VERSION=12.29.1
FAKE_GCS_VERSION=v1.56.1

if ! command -v java >/dev/null 2>&1; then
  echo "deps: installing a Java runtime (s3proxy runs on it)" >&2
  if command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && apt-get install -y -qq default-jre-headless) >&2
  else
    echo "deps: java (>= 17) is required for s3proxy" >&2; exit 1
  fi
fi

jar="$cache/s3proxy-$S3PROXY_VERSION/s3proxy.jar"
if [ ! -s "$jar" ]; then
  echo "deps: s3proxy $S3PROXY_VERSION from Maven Central" >&2
  mkdir -p "$(dirname "$jar")"
  curl -fsSL --retry 3 -o "$jar.tmp" \
    "https://repo1.maven.org/maven2/org/gaul/s3proxy/$S3PROXY_VERSION/s3proxy-$S3PROXY_VERSION-jar-with-dependencies.jar"
  mv "$jar.tmp" "$jar"
fi

azurite="$cache/azurite-$AZURITE_VERSION"
if [ ! -x "$azurite/node_modules/.bin/azurite-blob" ] || [ ! -d "$azurite/node_modules/@azure/storage-blob" ]; then
  echo "deps: azurite $AZURITE_VERSION from npm" >&2
  mkdir -p "$azurite"
  npm install --prefix "$azurite" --no-audit --no-fund --loglevel=error --no-save \
    "azurite@$AZURITE_VERSION" "@azure/storage-blob@$STORAGE_BLOB_VERSION" >&2
fi

gcs="$cache/bin/fake-gcs-server-$FAKE_GCS_VERSION"
if [ ! -x "$gcs/fake-gcs-server" ]; then
  echo "deps: building fake-gcs-server $FAKE_GCS_VERSION from the Go module proxy" >&2
  mkdir -p "$gcs"
  tmp=$(mktemp -d "$gcs/.build.XXXXXX")
  trap 'rm -rf "$tmp"' EXIT
  GOTOOLCHAIN=local GOFLAGS=-buildvcs=false CGO_ENABLED=0 GOBIN="$tmp" \
    go install -trimpath -ldflags "-s -w" "github.com/fsouza/fake-gcs-server@$FAKE_GCS_VERSION" >&2
  mv "$tmp/fake-gcs-server" "$gcs/fake-gcs-server"
fi

echo "export MODELCOMMONS_S3PROXY_JAR=$jar"
echo "export MODELCOMMONS_AZURITE=$azurite"
echo "export MODELCOMMONS_FAKE_GCS=$gcs/fake-gcs-server"
