#!/usr/bin/env bash
# Stop the private Dovecot that benches/dovecot/setup.sh DIR started.
#   benches/dovecot/stop.sh DIR
# Uses DIR's own pid file, so a system Dovecot is never touched. Exits 0 if
# nothing was running.
set -euo pipefail

[ $# -eq 1 ] || { echo "usage: $0 DIR" >&2; exit 2; }
[ -d "$1" ] || { echo "dovecot-bench stop: $1: no such directory" >&2; exit 1; }
dir=$(cd "$1" && pwd)
pidfile=$dir/run/master.pid

[ -s "$pidfile" ] || { echo "dovecot-bench stop: not running ($pidfile absent)"; exit 0; }
pid=$(cat "$pidfile")
# A stale pid file (after a reboot or kill -9) may name an unrelated process:
# only signal it if it is a dovecot master.
if ! kill -0 "$pid" 2>/dev/null || [ "$(cat "/proc/$pid/comm" 2>/dev/null)" != dovecot ]; then
    echo "dovecot-bench stop: not running (stale pid file)"
    rm -f "$pidfile"
    exit 0
fi

# SIGTERM to the master ends all its children; this is what `doveadm stop` does.
kill -TERM "$pid"
for _ in $(seq 1 100); do   # up to 20 s
    kill -0 "$pid" 2>/dev/null || { echo "dovecot-bench stop: stopped (pid $pid)"; exit 0; }
    sleep 0.2
done
echo "dovecot-bench stop: pid $pid ignored SIGTERM for 20s; killing" >&2
kill -KILL "$pid" 2>/dev/null || true
exit 1
