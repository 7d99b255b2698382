#!/usr/bin/env bash
# Everything the tests need, then every test: formatting, lints, unit, property and end-to-end
# tests. The real samples are read from ../shared/realdata (FLOWMERGE_REALDATA overrides).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# The build cache lives outside the clone so repeated runs are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flowmerge/target}"
export FLOWMERGE_REALDATA="${FLOWMERGE_REALDATA:-$root/../shared/realdata}"

# moto's server (the AWS emulator the worker tests start), in a venv kept with the build cache.
export FLOWMERGE_TEST_VENV="${FLOWMERGE_TEST_VENV:-$HOME/.cache/flowmerge/venv-test}"
if ! cmp -s tests/requirements.txt "$FLOWMERGE_TEST_VENV/requirements.txt"; then
    echo "== installing test requirements into $FLOWMERGE_TEST_VENV"
    python3 -m venv "$FLOWMERGE_TEST_VENV"
    "$FLOWMERGE_TEST_VENV/bin/pip" install --quiet --disable-pip-version-check -r tests/requirements.txt
    cp tests/requirements.txt "$FLOWMERGE_TEST_VENV/requirements.txt"
fi

# Installs Debian's package PACKAGE unless COMMAND is on the PATH (the package index is
# refreshed only when the install fails without it).
apt_install() {
    local command=$1 package=$2
    command -v "$command" > /dev/null && return 0
    echo "== installing $package (Debian package)"
    local sudo=""; [ "$(id -u)" -eq 0 ] || sudo="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get install -y --no-install-recommends "$package" > /dev/null \
        || { $sudo apt-get update -q > /dev/null && $sudo apt-get install -y --no-install-recommends "$package" > /dev/null; }
}
# Debian's docker-compose (1.29) validates compose.yaml against the Compose schema, offline.
apt_install docker-compose docker-compose
# tshark (Debian) is the independent DNS parser the capture tests count queries with.
apt_install tshark tshark
# A Java runtime for Spark, the engine tests/spark_ddl.py reads the DDL's tables with.
apt_install java default-jre-headless

echo "== toolchain"
cargo --version
echo "== cargo fmt --check"
cargo fmt --all --check
echo "== cargo clippy"
cargo clippy --locked --all-targets -- -D warnings
echo "== cargo test"
cargo test --locked --workspace
echo "== the mapper without the engine: no polars in its build, its own lints, its binary"
# docker/mapper.Dockerfile builds it so; the container run below uses this binary.
mapper_args=(--locked -p flowmerge-cli --no-default-features)
# The tree first, so that a failing `cargo tree` stops the run instead of finding nothing.
mapper_tree=$(cargo tree "${mapper_args[@]}" -e normal --prefix none)
if grep -E '^(polars|rusqlite|flowmerge-core) ' <<<"$mapper_tree"; then
    echo "FAIL the mapper's build (flowmerge-cli --no-default-features) links the engine (above)"
    exit 1
fi
cargo clippy "${mapper_args[@]}" --all-targets -- -D warnings
cargo build "${mapper_args[@]}" --bin flowmerge-mapper
echo "== compose.yaml and Dockerfiles against the code"
"$FLOWMERGE_TEST_VENV/bin/python" tests/check_containers.py "$CARGO_TARGET_DIR/debug/flowmerge"
echo "== containers: runtime images from the binaries just built, compose.yaml end to end"
./scripts/test-containers.sh --prebuilt "$CARGO_TARGET_DIR/debug"
# The images from docker/*.Dockerfile (a release build inside Docker: ~33 minutes cold on 2 cores,
# then under 2 for the code-change check) when the last commit changed what they are built from;
# otherwise the run above covers the rest.
image_inputs=(docker compose.yaml Cargo.toml Cargo.lock rust-toolchain.toml crates/*/Cargo.toml)
if git rev-parse -q --verify HEAD~1 > /dev/null && ! git diff --quiet HEAD~1 HEAD -- "${image_inputs[@]}"; then
    echo "== containers: the last commit changed ${image_inputs[*]}: building the images from the Dockerfiles"
    ./scripts/test-containers.sh
fi
echo "== CDK app: type check, tests, offline synth with cdk-nag"
cd "$root/infra-cdk"
export CDK_DISABLE_VERSION_CHECK=1
npm ci --no-audit --no-fund --loglevel=error
npm run --silent build
FLOWMERGE_BIN="$CARGO_TARGET_DIR/debug/flowmerge" npm test --silent
npx cdk synth --quiet > /dev/null
echo "== all checks passed"
