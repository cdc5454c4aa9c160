# shellcheck shell=bash
# A three-node RabbitMQ cluster beside the main broker, for the cluster tests: nodes
# rabbit1@localhost, rabbit2@localhost and rabbit3@localhost on AMQP ports 5701-5703 and
# distribution ports 25701-25703, each with its data and logs in $WARREN_CLUSTER_DIR/rmq-N
# (default /var/tmp/warren-cluster), owned by the rabbitmq user (the server drops to it; a
# root-owned directory makes it fail without a word). Nodes 2 and 3 join rabbit1; the main broker
# on 5672 never joins. Every node shares the main broker's Erlang cookie (the rabbitmq user's).
#
#   start_test_cluster    starts the three nodes (from scratch) and clusters them
#   stop_test_cluster     kills them and removes their directories
#   cluster_node_pid N    the OS pid of node N (for kill -9)
#   start_cluster_node N  starts node N again, keeping its data (after a kill)

WARREN_CLUSTER_DIR=${WARREN_CLUSTER_DIR:-/var/tmp/warren-cluster}
export WARREN_CLUSTER_URLS="amqp://guest:guest@127.0.0.1:5701/%2f,amqp://guest:guest@127.0.0.1:5702/%2f,amqp://guest:guest@127.0.0.1:5703/%2f"

cluster_node_dir() { echo "$WARREN_CLUSTER_DIR/rmq-$1"; }

# start_cluster_node N: starts node N on its ports with its directory (made when missing), and
# waits until it runs.
start_cluster_node() {
    local n=$1 dir
    dir=$(cluster_node_dir "$n")
    mkdir -p "$dir"
    [ -f "$dir/enabled_plugins" ] || echo "[]." >"$dir/enabled_plugins"
    # guest may connect from 127.0.0.1 only, as on the main broker.
    printf 'listeners.tcp.default = 127.0.0.1:570%s\nloopback_users.guest = true\n' "$n" \
        >"$dir/rabbitmq.conf"
    chown -R rabbitmq:rabbitmq "$dir"
    env RABBITMQ_NODENAME="rabbit$n@localhost" RABBITMQ_NODE_PORT="570$n" \
        RABBITMQ_DIST_PORT="2570$n" RABBITMQ_MNESIA_BASE="$dir/mnesia" \
        RABBITMQ_LOG_BASE="$dir/log" RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq" rabbitmq-server -detached >/dev/null 2>&1 || true
    # await_startup fails at once while the node has not registered with epmd yet: retried.
    local deadline=$((SECONDS + 60))
    until rabbitmqctl -n "rabbit$n@localhost" -q await_startup >/dev/null 2>&1; do
        if ((SECONDS > deadline)); then
            echo "rabbitmq cluster: node rabbit$n did not start within 60 s (see $dir/log)" >&2
            return 1
        fi
        sleep 0.5
    done
}

# cluster_node_pid N: the OS pid of node N's Erlang VM.
cluster_node_pid() {
    rabbitmqctl -n "rabbit$1@localhost" -q eval 'list_to_integer(os:getpid()).' 2>/dev/null
}

start_test_cluster() {
    stop_test_cluster
    local n
    for n in 1 2 3; do
        start_cluster_node "$n" || return 1
    done
    for n in 2 3; do
        rabbitmqctl -n "rabbit$n@localhost" -q stop_app >/dev/null &&
            rabbitmqctl -n "rabbit$n@localhost" -q join_cluster rabbit1@localhost >/dev/null &&
            rabbitmqctl -n "rabbit$n@localhost" -q start_app >/dev/null || {
            echo "rabbitmq cluster: rabbit$n could not join rabbit1" >&2
            return 1
        }
    done
    echo "rabbitmq cluster: rabbit1-3@localhost up on 127.0.0.1:5701-5703"
}

stop_test_cluster() {
    local n pid
    for n in 1 2 3; do
        pid=$(cluster_node_pid "$n" || true)
        [ -n "$pid" ] && kill -9 "$pid" 2>/dev/null
    done
    # The nodes' epmd registrations go with their VMs; their directories go here.
    rm -rf "$WARREN_CLUSTER_DIR"
}
