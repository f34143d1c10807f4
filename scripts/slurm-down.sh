#!/usr/bin/env bash
# Stop the daemons that scripts/slurm-up.sh started, by their pid files (never by name), in
# reverse start order. Leaves configs, state, logs and the database in place.
set -euo pipefail

STATE=${SLURM_STATE_DIR:-/var/lib/saga-slurm}
RUN=$STATE/run

stop() { # name pidfile process-name
  local pid i
  # Only a live process whose name matches (guards against a recycled pid).
  if [ ! -s "$2" ] || ! pid=$(cat "$2") || ! kill -0 "$pid" 2>/dev/null \
     || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != "$3" ]; then
    echo "down: $1 not running"; rm -f "$2"; return 0
  fi
  kill -TERM "$pid"
  for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then echo "down: $1 ($pid) ignored TERM for 30s, sending KILL"; kill -KILL "$pid"; fi
  rm -f "$2"
  echo "down: stopped $1 ($pid)"
}

stop slurmd "$RUN/slurmd.pid" slurmd
stop slurmctld "$RUN/slurmctld.pid" slurmctld
stop slurmdbd "$RUN/slurmdbd.pid" slurmdbd
stop mariadb "$RUN/mariadb.pid" mariadbd # only present when up.sh started its own MariaDB
stop munged "$RUN/munged.pid" munged # symlink to /run/munge/munged.pid
echo "slurm down (state kept in $STATE)"
