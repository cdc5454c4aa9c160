# syntax=docker/dockerfile:1
#
# The `warren` image: one binary, the HTTP gateway and the bundled services.
#
#   docker build -t warren:0.1.0 .
#   docker run --rm -p 8080:8080 -e AMQP_URL=amqp://user:pass@rabbitmq:5672/%2f warren:0.1.0
#                                       # the gateway (default command)
#   docker run --rm -e AMQP_URL=... -v warren-data:/data warren:0.1.0 \
#       run library indexer --ops-listen 0.0.0.0:9090      # services; data in the /data volume
#   docker run --rm -p 8080:8080 warren:0.1.0 dev --listen 0.0.0.0:8080
#                                       # everything in one process, no broker
#
# Runs as uid/gid 10001 and writes only to /data (WARREN_DATA_DIR) and /tmp, so it works with a
# read-only root filesystem. Health: GET /healthz (liveness) and /readyz (readiness: connected to
# the broker) on the gateway's port 8080, or on a service's --ops-listen port (9090 by
# convention); the Helm chart (helm/warren) wires them as Kubernetes probes. The image has no
# HEALTHCHECK because it has no HTTP client to run one (and Kubernetes ignores it).
#
# Layers: cargo-chef builds the dependencies from the manifests and Cargo.lock alone (the
# `cook` layer stays cached until they change), then the workspace sources are copied and only
# Warren's own crates are compiled. scripts/image-checks.sh tests what can be tested without a
# Docker engine.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

# --- toolchain + cargo-chef -------------------------------------------------------------------
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS chef
ARG CARGO_CHEF_VERSION=0.1.78
RUN cargo install --locked cargo-chef --version "${CARGO_CHEF_VERSION}"
WORKDIR /src

# --- the dependency recipe: manifests and Cargo.lock only -------------------------------------
FROM chef AS planner
COPY . .
RUN cargo chef prepare --recipe-path recipe.json --bin warren

# --- release build ----------------------------------------------------------------------------
FROM chef AS builder
COPY --from=planner /src/recipe.json recipe.json
# Dependencies only: cached until Cargo.toml/Cargo.lock change.
RUN cargo chef cook --release --locked --recipe-path recipe.json --bin warren
COPY . .
RUN cargo build --release --locked --bin warren \
    && install -D -m 0755 target/release/warren /out/warren

# --- runtime ----------------------------------------------------------------------------------
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# ca-certificates: for amqps:// and https:// peers. Versions are not pinned: the slim base image
# moves with Debian's security updates, and pinned versions would stop building.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 warren \
    && useradd --system --uid 10001 --gid 10001 --home-dir /data --no-create-home \
        --shell /usr/sbin/nologin warren \
    && install -d -o 10001 -g 10001 -m 0750 /data

COPY --from=builder /out/warren /usr/local/bin/warren

LABEL org.opencontainers.image.title="warren" \
      org.opencontainers.image.description="HTTP/JSON gateway and services on a nameko-compatible AMQP RPC mesh" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0"

ENV WARREN_DATA_DIR=/data \
    WARREN_LISTEN=0.0.0.0:8080 \
    WARREN_LOG_FORMAT=json

VOLUME ["/data"]
WORKDIR /data
EXPOSE 8080 9090
# Numeric, so that Kubernetes can verify runAsNonRoot.
USER 10001:10001
STOPSIGNAL SIGTERM

ENTRYPOINT ["warren"]
CMD ["gateway", "--listen", "0.0.0.0:8080"]
