#!/usr/bin/env bash
# Warren's whole test suite, as CI runs it:
#   1. RabbitMQ up on 127.0.0.1:5672 (installed and started when needed) with an amqps://
#      listener on 5671 (private test CA), PostgreSQL up,
#   2. wrk (apt-get, when missing) and the nameko venv for the interop tests
#      (scripts/nameko-venv.sh, reused when current),
#   3. cargo fmt --check, cargo clippy --all-targets -D warnings,
#   4. the container image and Helm chart checks (no Docker engine or cluster needed),
#   5. openapi/openapi.json current, then every unit, doc and end-to-end test (cargo nextest
#      when installed, cargo test otherwise),
#   6. the `otel` feature: clippy and its one test (tests/otel.rs),
#   7. the OpenAPI tooling checks (validators, generated clients, Chromium, schemathesis),
#   8. the fault tests, alone, since they restart the broker,
#   9. the cluster tests, alone, on a three-node cluster started beside the main broker.
# Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f), CARGO_TARGET_DIR,
# WARREN_VENV (the nameko venv; default .venv/nameko), WARREN_TOOLS_DIR (helm, linters, npm
# and PyPI tools; default .venv/tools and .venv/api-tools).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
. scripts/lib/rabbitmq.sh

step() { printf '\n==> %s\n' "$*"; }

. scripts/lib/postgres.sh

step "RabbitMQ and PostgreSQL"
ensure_rabbitmq
ensure_rabbitmq_tls
ensure_postgres
remove_test_queues

step "wrk (the benchmark's load generator; its smoke test runs it)"
if ! command -v wrk >/dev/null 2>&1; then
    apt-get install -y -qq wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk >/dev/null; }
fi

step "nameko venv"
scripts/nameko-venv.sh >/dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "container image (no Docker engine here) and Helm chart"
scripts/image-checks.sh
scripts/helm-checks.sh

step "openapi/openapi.json is current"
if ! cargo run --quiet --locked -- openapi | diff -u openapi/openapi.json - >/tmp/warren-openapi.diff; then
    cat /tmp/warren-openapi.diff
    echo "openapi/openapi.json is stale: regenerate it with: cargo run -- openapi > openapi/openapi.json" >&2
    exit 1
fi

step "doc tests"
cargo test --workspace --doc --locked

step "unit and end-to-end tests"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --test-threads 4 --no-fail-fast \
        -E 'not binary(faults) and not binary(cluster)'
else
    # Every crate's unit and integration tests but the root package's, then the root package's
    # suites one by one (tests/examples.rs runs the examples: built first, as nextest's build
    # does), the fault tests left for last.
    cargo test --workspace --locked --no-fail-fast --exclude warren
    cargo test --locked --no-fail-fast --bins
    cargo build --locked --examples
    for suite in tests/*.rs; do
        name=$(basename "$suite" .rs)
        case "$name" in faults | cluster) ;; *) cargo test --locked --no-fail-fast --test "$name" ;; esac
    done
fi

# The `otel` feature rebuilds only the warren crate (plus the OpenTelemetry crates once): its
# lints, and its one end-to-end test (spans exported to an OTLP/HTTP receiver in the test).
step "OpenTelemetry export (feature otel): clippy and tests/otel.rs"
cargo clippy --workspace --all-targets --locked --features warren/otel -- -D warnings
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --locked --features warren/otel --test otel
else
    cargo test --locked --features otel --test otel
fi

step "OpenAPI tools, generated clients, browser, schemathesis"
scripts/api-checks.sh

# Last, and alone: these restart the broker the other suites share.
step "faults: broker killed and stopped under load, services killed and stopped, gateway drained"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --locked --test faults --test-threads 1 --no-fail-fast
else
    cargo test --locked --test faults -- --test-threads 1
fi

# Then alone too: a three-node cluster beside the main broker, its nodes killed and stopped
# under load (scripts/lib/rabbitmq-cluster.sh), torn down after.
step "cluster: three RabbitMQ nodes, quorum queues, a node lost under load"
. scripts/lib/rabbitmq-cluster.sh
start_test_cluster
trap stop_test_cluster EXIT
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --locked --test cluster --test-threads 1 --no-fail-fast
else
    cargo test --locked --test cluster -- --test-threads 1
fi
stop_test_cluster
trap - EXIT
