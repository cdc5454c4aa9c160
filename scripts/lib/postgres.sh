# shellcheck shell=bash
# ensure_postgres: make sure the local PostgreSQL answers on 127.0.0.1:5432 for the library's
# store tests — start the cluster with pg_ctlcluster when it is stopped, and wait until it is up.
# A server given in WARREN_TEST_POSTGRES_URL on another host is left alone.

postgres_port_open() {
    (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null
}

postgres_ready() {
    if command -v pg_isready >/dev/null 2>&1; then
        pg_isready -q -h 127.0.0.1 -p 5432
    else
        postgres_port_open
    fi
}

ensure_postgres() {
    case "${WARREN_TEST_POSTGRES_URL:-}" in
        "" | *@127.0.0.1[:/]* | *@localhost[:/]*) ;;
        *) echo "postgres: using WARREN_TEST_POSTGRES_URL as given; not managing a local server"; return 0 ;;
    esac
    if ! postgres_ready; then
        local version
        version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1)
        if [ -z "$version" ]; then
            echo "postgres: no cluster in /etc/postgresql and nothing on 127.0.0.1:5432" >&2
            return 1
        fi
        echo "postgres: not answering on 127.0.0.1:5432; starting cluster $version/main"
        pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    fi
    local deadline=$((SECONDS + 60))
    until postgres_ready; do
        if ((SECONDS > deadline)); then
            echo "postgres: did not come up within 60 s" >&2
            return 1
        fi
        sleep 1
    done
    echo "postgres: up on 127.0.0.1:5432"
}
