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

# rabbitmq_tls_files DIR: a private CA and a server certificate for localhost / 127.0.0.1 in DIR
# (ca.pem, server.pem, server.key), made once with openssl and readable by the broker.
rabbitmq_tls_files() {
    local dir=$1
    [ -s "$dir/server.pem" ] && [ -s "$dir/ca.pem" ] && return 0
    mkdir -p "$dir"
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=Warren test CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.pem" 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
        "keyUsage=digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$dir/server.ext"
    openssl x509 -req -days 3650 -in "$dir/server.csr" -CA "$dir/ca.pem" -CAkey "$dir/ca.key" \
        -CAcreateserial -extfile "$dir/server.ext" -out "$dir/server.pem" 2>/dev/null
    chmod 0644 "$dir"/*.pem "$dir/server.key"
    chmod 0755 "$dir"
}

# ensure_rabbitmq_tls: an amqps:// listener on 127.0.0.1:5671 of the local broker (for the
# amqps test), with certificates from a private CA under WARREN_TLS_DIR (default
# /var/tmp/warren-tls). Adds /etc/rabbitmq/conf.d/90-warren-tls.conf and restarts the broker
# once when the listener is missing; exports AMQPS_TEST_URL and AMQPS_TEST_CA for the tests.
ensure_rabbitmq_tls() {
    local dir=${WARREN_TLS_DIR:-/var/tmp/warren-tls}
    export AMQPS_TEST_URL="amqps://guest:guest@localhost:5671/%2f"
    export AMQPS_TEST_CA="$dir/ca.pem"
    if (exec 3<>/dev/tcp/127.0.0.1/5671) 2>/dev/null && [ -s "$dir/ca.pem" ]; then
        echo "rabbitmq: amqps listener up on 127.0.0.1:5671"
        return 0
    fi
    case "${AMQP_URL:-}" in
        "" | *@127.0.0.1[:/]* | *@localhost[:/]* | amqp://127.0.0.1* | amqp://localhost*) ;;
        *) echo "rabbitmq: AMQP_URL names another broker; not adding a TLS listener"; return 0 ;;
    esac
    rabbitmq_tls_files "$dir"
    mkdir -p /etc/rabbitmq/conf.d
    cat >/etc/rabbitmq/conf.d/90-warren-tls.conf <<CONF
# Added by Warren's test script: an amqps:// listener for the TLS test.
listeners.ssl.local = 127.0.0.1:5671
ssl_options.cacertfile = $dir/ca.pem
ssl_options.certfile = $dir/server.pem
ssl_options.keyfile = $dir/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
    echo "rabbitmq: restarting once to add an amqps listener on 127.0.0.1:5671"
    rabbitmqctl -q stop >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 60))
    while rabbitmq_port_open; do
        ((SECONDS > deadline)) && { echo "rabbitmq: did not stop" >&2; return 1; }
        sleep 1
    done
    ensure_rabbitmq
    deadline=$((SECONDS + 60))
    until (exec 3<>/dev/tcp/127.0.0.1/5671) 2>/dev/null; do
        if ((SECONDS > deadline)); then
            echo "rabbitmq: no amqps listener on 127.0.0.1:5671 (see the broker's log)" >&2
            return 1
        fi
        sleep 1
    done
    echo "rabbitmq: amqps listener up on 127.0.0.1:5671"
}
