#!/usr/bin/env bash
# Starts the Debian PostgreSQL 15 cluster for the store tests, idempotently.
#
# Creates the cluster if missing, starts it, ensures role `corral` (password
# `corral`) and database `corral_test` owned by it, then prints the URL to
# export as CORRAL_TEST_POSTGRES_URL. The role may create databases, because
# the tests give each test a fresh database of its own.
#
#   export CORRAL_TEST_POSTGRES_URL="$(.ci/postgres.sh)"
set -euo pipefail

version="${PG_VERSION:-15}"
cluster="${PG_CLUSTER:-main}"
port="${PG_PORT:-5432}"

if ! pg_lsclusters --no-header | awk '{print $1" "$2}' | grep -qx "$version $cluster"; then
    pg_createcluster --port "$port" "$version" "$cluster" >&2
fi
if ! pg_lsclusters --no-header | awk -v v="$version" -v c="$cluster" \
        '$1 == v && $2 == c {print $4}' | grep -q online; then
    pg_ctlcluster "$version" "$cluster" start >&2
fi

psql_admin() {
    if [ "$(id -u)" -eq 0 ]; then
        su postgres -c "psql --port $port -v ON_ERROR_STOP=1 -qtA $(printf '%q ' "$@")"
    else
        psql --port "$port" -v ON_ERROR_STOP=1 -qtA "$@"
    fi
}

for _ in $(seq 1 50); do
    psql_admin -c 'select 1' >/dev/null 2>&1 && break
    sleep 0.2
done

if [ "$(psql_admin -c "select 1 from pg_roles where rolname = 'corral'")" != 1 ]; then
    psql_admin -c "create role corral login createdb password 'corral'" >&2
fi
if [ "$(psql_admin -c "select 1 from pg_database where datname = 'corral_test'")" != 1 ]; then
    psql_admin -c "create database corral_test owner corral" >&2
fi

echo "postgresql+psycopg://corral:corral@127.0.0.1:${port}/corral_test"
