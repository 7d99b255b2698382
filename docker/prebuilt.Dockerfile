# The runtime stage of docker/{mapper,merger}.Dockerfile alone, around binaries built outside
# Docker: what CI runs on every change (scripts/test-containers.sh --prebuilt BIN_DIR) without the
# release build inside the image. The build context's `bin/` holds the worker binary as
# `flowmerge-worker` and, for the merger, `flowmerge` (as in the real images: the mapper's has no
# CLI); the script makes it. Not for production: build the real Dockerfiles.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY bin/ /usr/local/bin/
# As docker/merger.Dockerfile: the spill volume (the context's empty `spill/`).
COPY --chown=65532:65532 spill /var/spool/flowmerge
ENV FLOWMERGE_SPILL_DIR=/var/spool/flowmerge
VOLUME ["/var/spool/flowmerge"]
# distroless "nonroot"
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/flowmerge-worker"]
