# syntax=docker/dockerfile:1
# flowmerge-mapper: multi-stage build. Dependencies are compiled in their own cached layer
# (cargo-chef), so a code change rebuilds only flowmerge's crates; the runtime image is distroless
# (glibc, CA certificates, no shell) and runs as a non-root user. The mapper is built without the
# merge engine (`--no-default-features`: no polars, no SQLite), which makes this image's build a
# fraction of the merger's; compose's init and seed run the `flowmerge` CLI from the merger image.
# Build from the repository root:  docker build -f docker/mapper.Dockerfile -t flowmerge-mapper .

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --package flowmerge-cli --no-default-features \
    --bin flowmerge-mapper --recipe-path recipe.json
COPY . .
RUN cargo build --release --locked --package flowmerge-cli --no-default-features --bin flowmerge-mapper \
    && install -s -m 0755 target/release/flowmerge-mapper /usr/local/bin/

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="flowmerge-mapper" \
      org.opencontainers.image.description="flowmerge mapper: S3 events to claimed batches and merge jobs" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/flowmerge/flowmerge"
COPY --from=builder /usr/local/bin/flowmerge-mapper /usr/local/bin/
# distroless "nonroot"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flowmerge-mapper"]
