# syntax=docker/dockerfile:1
#
# The sagahost image: one static binary (musl) on an empty base (`scratch`). No shell, no libc,
# no package manager; it runs as uid/gid 65532 and works with a read-only root filesystem.
#
#   /sagahost            the binary (ENTRYPOINT)
#   /etc/sagahost/       mount the config here (read-only): sagahost.toml, secrets, components
#   /var/lib/sagahost/   the data dir (VOLUME, owned by 65532): compiled-component cache, the
#                        embedded queue and its saga-state key; set `data-dir = "/var/lib/sagahost"`
#
# The config's paths are the container's: `component = "components/mdm.wasm"` is relative to
# /etc/sagahost. The admin endpoint (health, readiness, metrics) is `[admin] listen`; listen on
# 0.0.0.0:9090 (with `token`, which the config requires off loopback) to publish it.
#
# Two ways to build it, the same runtime image either way:
#
# 1. From source, where a registry is reachable (CI, a laptop with Docker or Podman). The
#    `builder` stage compiles the host for x86_64-unknown-linux-musl in the Rust image:
#
#      docker build -t sagahost .
#      buildah bud --format docker -t sagahost .          # --format docker keeps HEALTHCHECK
#
#    `--build-arg PROFILE=container-test` builds with the faster-to-compile profile of
#    Cargo.toml instead of `release`.
#
# 2. From a static binary built beforehand (no registry needed: `scratch` is not pulled). Build
#    the binary on the machine, then give its directory as the build context `prebuilt`:
#
#      rustup target add x86_64-unknown-linux-musl        # and Debian's musl-tools (musl-gcc)
#      cargo build --locked --release --target x86_64-unknown-linux-musl -p sagahost --bin sagahost
#      mkdir -p target/image && cp target/x86_64-unknown-linux-musl/release/sagahost target/image/
#      buildah bud --format docker --target runtime-prebuilt --build-context prebuilt=target/image -t sagahost .
#
#    (`docker buildx build --build-context prebuilt=… --target runtime-prebuilt` likewise.)
#    `scripts/container-test` builds the image this way and runs it against a broker.
#
# Run it (see README, "Run in a container"):
#
#   docker run --read-only -v sagahost-data:/var/lib/sagahost \
#       -v "$PWD/deploy/container:/etc/sagahost:ro" -p 9090:9090 sagahost

# The runtime image, less the binary: what both ways share.
FROM scratch AS base
# The data dir, owned by the user the host runs as, in a root-owned /var/lib (WORKDIR creates
# /var/lib as root; COPY --chown would make every directory it creates 65532's).
WORKDIR /var/lib
COPY --chown=65532:65532 deploy/container/data-dir/ /var/lib/sagahost/
WORKDIR /var/lib/sagahost
USER 65532:65532
VOLUME ["/var/lib/sagahost"]
# The admin endpoint: /healthz, /readyz, /metrics (and /admin, behind its token).
EXPOSE 9090
# `sagahost probe` asks /readyz of the admin endpoint that `[admin] listen` of this config names
# (SAGAHOST_PROBE_URL overrides it); exit 0 when ready. No shell or curl needed.
ENV SAGAHOST_PROBE_CONFIG=/etc/sagahost/sagahost.toml
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 CMD ["/sagahost", "probe"]
ENTRYPOINT ["/sagahost"]
CMD ["run", "--config", "/etc/sagahost/sagahost.toml"]
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="sagahost" \
      org.opencontainers.image.description="Runs Dataverse saga steps as sandboxed WebAssembly partner components" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION"

# Way 2: the binary from the `prebuilt` build context (a directory holding `sagahost`).
FROM base AS runtime-prebuilt
COPY --from=prebuilt --chmod=0555 sagahost /sagahost

# Way 1: build from source. The pinned toolchain of rust-toolchain.toml (1.97.0) is the image's.
FROM docker.io/library/rust:1.97.0-bookworm AS builder
# rusqlite bundles SQLite and ring has C and assembly: both need a C compiler for musl.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
ARG PROFILE=release
ENV CC_x86_64_unknown_linux_musl=musl-gcc
RUN rustup target add x86_64-unknown-linux-musl
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile "$PROFILE" --target x86_64-unknown-linux-musl -p sagahost --bin sagahost \
    && install -D -m 0555 "target/x86_64-unknown-linux-musl/$PROFILE/sagahost" /out/sagahost

# The default target.
FROM base AS runtime
COPY --from=builder /out/sagahost /sagahost
