#!/usr/bin/env bash
# Makes sure RabbitMQ (127.0.0.1:5672, guest/guest) and PostgreSQL
# (127.0.0.1:5432, trust auth, database "test") answer, starting them - or on a
# bare Debian machine installing them with apt-get - when they do not.
# Tests that need a service fail without it; this script is what keeps a fresh
# machine green, so it never silently gives up: it exits non-zero instead.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() { # NAME PORT SECONDS
    local deadline=$((SECONDS + $3))
    until port_open "$2"; do
        if [ $SECONDS -ge $deadline ]; then
            echo "ERROR: $1 did not open 127.0.0.1:$2 within $3 s" >&2
            return 1
        fi
        sleep 0.5
    done
}

apt_install() {
    if ! command -v apt-get >/dev/null; then
        echo "ERROR: $* missing and this is not a Debian-like system; install it by hand." >&2
        exit 1
    fi
    if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq; _APT_UPDATED=1; fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
    if port_open 5432; then return 0; fi
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
        echo "PostgreSQL not installed: installing" >&2
        apt_install postgresql
    fi
    local ver
    ver=$(ls /etc/postgresql | sort -V | tail -n1)
    local hba="/etc/postgresql/$ver/main/pg_hba.conf"
    # Trust auth on loopback, as on the project's machines.
    if ! grep -q '^host all all 127.0.0.1/32 trust' "$hba"; then
        sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\nlocal all all trust' "$hba"
    fi
    echo "starting PostgreSQL $ver" >&2
    pg_ctlcluster --skip-systemctl-redirect "$ver" main start || true
    wait_port PostgreSQL 5432 60
    if ! psql -h 127.0.0.1 -U postgres -d postgres -tAc "select 1 from pg_database where datname='test'" | grep -q 1; then
        psql -h 127.0.0.1 -U postgres -d postgres -c 'create database test' >/dev/null
    fi
}

ensure_rabbitmq() {
    if port_open 5672; then return 0; fi
    if ! command -v rabbitmq-server >/dev/null; then
        echo "RabbitMQ not installed: installing" >&2
        apt_install rabbitmq-server
    fi
    echo "starting RabbitMQ" >&2
    rabbitmq-server -detached || true
    wait_port RabbitMQ 5672 120
    # The broker opens its port before it accepts work; wait for the app.
    local deadline=$((SECONDS + 60))
    until rabbitmqctl -q await_startup >/dev/null 2>&1; do
        [ $SECONDS -ge $deadline ] && { echo "ERROR: RabbitMQ did not finish starting" >&2; return 1; }
        sleep 1
    done
}

ensure_postgres
ensure_rabbitmq
echo "services: PostgreSQL 127.0.0.1:5432 and RabbitMQ 127.0.0.1:5672 are up" >&2
