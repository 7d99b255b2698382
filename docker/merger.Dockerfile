# syntax=docker/dockerfile:1
# flowmerge-merger: multi-stage build. Dependencies are compiled in their own cached layer
# (cargo-chef), so a code change rebuilds only flowmerge's crates; the runtime image is distroless
# (glibc, CA certificates, no shell) and runs as a non-root user.
# Build from the repository root:  docker build -f docker/merger.Dockerfile -t flowmerge-merger .

ARG RUST_VERSION=1.95.0

FROM rust:${RUST_VERSION}-slim-bookworm AS chef
RUN cargo install cargo-chef --locked --version 0.1.73
WORKDIR /src

FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json

FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
RUN cargo chef cook --release --locked --package flowmerge-cli --recipe-path recipe.json
COPY . .
# The image also carries the flowmerge CLI (compose's init and seed services run it). Binaries
# are stripped (`install -s`): the symbols would double the image for no use at run time.
RUN cargo build --release --locked --package flowmerge-cli --bin flowmerge-merger --bin flowmerge \
    && install -s -m 0755 target/release/flowmerge-merger target/release/flowmerge /usr/local/bin/ \
    && mkdir -p /spill

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="flowmerge-merger" \
      org.opencontainers.image.description="flowmerge merger: merge jobs to partitioned Parquet" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.source="https://github.com/flowmerge/flowmerge"
COPY --from=builder /usr/local/bin/flowmerge-merger /usr/local/bin/flowmerge /usr/local/bin/
# Where merges spill (FLOWMERGE_SPILL_DIR): a volume, writable with a read-only root, owned by the
# user so that ECS's bind mount (which copies a VOLUME's ownership) and Docker's are writable.
COPY --from=builder --chown=65532:65532 /spill /var/spool/flowmerge
ENV FLOWMERGE_SPILL_DIR=/var/spool/flowmerge
VOLUME ["/var/spool/flowmerge"]
# distroless "nonroot"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flowmerge-merger"]
