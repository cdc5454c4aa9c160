# shellcheck shell=bash
# ensure_rabbitmq: make sure a RabbitMQ answers on 127.0.0.1:5672 — install it with apt-get when it
# is missing, start it with `rabbitmq-server -detached` when it is stopped, and wait until it is up.
# A broker given in AMQP_URL on another host is left alone.

rabbitmq_port_open() {
    (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null
}

ensure_rabbitmq() {
    case "${AMQP_URL:-}" in
        "" | *@127.0.0.1[:/]* | *@localhost[:/]* | amqp://127.0.0.1* | amqp://localhost*) ;;
        *) echo "rabbitmq: using AMQP_URL as given; not managing a local broker"; return 0 ;;
    esac
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
        echo "rabbitmq: not installed; installing rabbitmq-server with apt-get"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq
        apt-get install -y -qq rabbitmq-server >/dev/null
    fi
    if ! rabbitmq_port_open; then
        echo "rabbitmq: not answering on 127.0.0.1:5672; starting it"
        rabbitmq-server -detached || true
    fi
    # await_startup returns once the broker's applications run (or fails after its timeout).
    local deadline=$((SECONDS + 120))
    until rabbitmq_port_open && timeout 30 rabbitmqctl -q await_startup >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "rabbitmq: did not come up within 120 s" >&2
            return 1
        fi
        sleep 1
    done
    echo "rabbitmq: up on 127.0.0.1:5672"
}

# remove_test_queues: delete the queues a crashed test run may have left behind: service and
# event queues of test services (tests name them t_<what>_<random>; they are durable, as
# nameko's are), and dead-letter queues of gateways' registry subscriptions from older runs.
remove_test_queues() {
    local queue
    local leftovers
    leftovers=$(rabbitmqctl -q list_queues name 2>/dev/null \
        | grep -E '^(rpc|evt)-.*t_[a-z]+_[0-9a-f]{8}|^evt-warren-service_descriptor--gateway\.on_descriptor-.*\.dead-letter$' || true)
    for queue in $leftovers; do
        rabbitmqctl -q delete_queue "$queue" >/dev/null 2>&1 || true
    done
    [ -z "$leftovers" ] || echo "rabbitmq: removed $(wc -w <<<"$leftovers") queues left by earlier test runs"
}
