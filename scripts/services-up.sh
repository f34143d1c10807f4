#!/usr/bin/env bash
# Start the local databases the tests use, if they are installed but stopped:
# PostgreSQL on 127.0.0.1:5432 (trust, database `test`). Idempotent, seconds.
set -euo pipefail
log() { printf '[services] %s\n' "$*"; }

if ! command -v pg_ctlcluster >/dev/null; then
  log "installing PostgreSQL"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >/dev/null
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  version="$(ls /etc/postgresql | sort -n | tail -1)"
  log "starting PostgreSQL $version"
  pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  for _ in $(seq 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
if pg_isready -q -h 127.0.0.1 -p 5432; then
  # The tests connect as postgres to database `test` without a password (trust on loopback).
  if ! psql -h 127.0.0.1 -U postgres -d test -Atc 'select 1' >/dev/null 2>&1; then
    su postgres -c "psql -Atc 'create database test'" >/dev/null 2>&1 || true
  fi
  log "PostgreSQL ready on 127.0.0.1:5432"
else
  log "PostgreSQL did not start: its tests will skip"
fi
