#!/usr/bin/env bash
# Warren's whole test suite, as CI runs it:
#   1. RabbitMQ up on 127.0.0.1:5672 (installed and started when needed),
#   2. the nameko venv for the interop tests (scripts/nameko-venv.sh, reused when current),
#   3. cargo fmt --check, cargo clippy --all-targets -D warnings, openapi/openapi.json current,
#   4. every unit, doc and end-to-end test (cargo nextest when installed, cargo test otherwise),
#   5. the OpenAPI tooling checks (scripts/api-checks.sh),
#   6. the fault tests, alone, since they restart the broker.
# Environment: AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/%2f), CARGO_TARGET_DIR,
# WARREN_VENV (where the nameko venv lives; default .venv/nameko).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=/dev/null
[ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
. scripts/lib/rabbitmq.sh

step() { printf '\n==> %s\n' "$*"; }

step "RabbitMQ"
ensure_rabbitmq
. scripts/lib/postgres.sh && ensure_postgres
remove_test_queues

step "nameko venv"
scripts/nameko-venv.sh >/dev/null

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "image (no Docker engine here) and Helm chart checks"; scripts/image-checks.sh; scripts/helm-checks.sh

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
    cargo nextest run --workspace --locked --test-threads 4 --no-fail-fast -E 'not binary(faults)'
else
    cargo test --workspace --locked --no-fail-fast --lib --bins
    for suite in tests/*.rs; do
        name=$(basename "$suite" .rs)
        [ "$name" = faults ] || cargo test --locked --no-fail-fast --test "$name"
    done
fi

step "OpenAPI tools, generated clients, browser, schemathesis"
scripts/api-checks.sh

# Last, and alone: these restart the broker the other suites share.
step "faults: broker restarted and killed under load, services and gateway stopped or killed"
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --locked --test faults --test-threads 1 --no-fail-fast
else
    cargo test --locked --test faults -- --test-threads 1
fi
