#!/usr/bin/env bash
# stop-slurm.sh: stop the cluster that start-slurm.sh started, by the PIDs in
# its pid files (never by process name). Cancels jobs still on the cluster
# first, so no slurmstepd or job processes are left behind. Keeps the state dir
# (job ids, accounting DB, munge key) unless SLURM_CI_PURGE=1.
set -uo pipefail

D=${SLURM_CI_DIR:-/tmp/fmnist-initopt-slurm}
export SLURM_CONF=$D/etc/slurm.conf

log() { echo "[stop-slurm] $*"; }

pid_of() { # name pidfile -> pid if alive and running that binary
    local pid
    pid=$(cat "$2" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r /proc/$pid/cmdline ] && tr '\0' ' ' </proc/$pid/cmdline | grep -q "$1" && echo "$pid"
}

stop() { # name pidfile [seconds]
    local pid i
    pid=$(pid_of "$1" "$2") || { log "$1 not running"; return 0; }
    kill "$pid" 2>/dev/null
    for ((i = 0; i < ${3:-15} * 4; i++)); do
        kill -0 "$pid" 2>/dev/null || { log "$1 (pid $pid) stopped"; rm -f "$2"; return 0; }
        sleep 0.25
    done
    log "$1 (pid $pid) did not stop in ${3:-15}s, sending SIGKILL"
    kill -9 "$pid" 2>/dev/null
    rm -f "$2"
}

# 1. cancel whatever is still queued/running on this cluster
if pid_of slurmctld "$D/run/slurmctld.pid" >/dev/null; then
    jobs=$(squeue -h -t PD,R,CG,S -o %i 2>/dev/null | tr '\n' ' ')
    if [ -n "${jobs// /}" ]; then
        log "cancelling jobs: $jobs"
        scancel $jobs 2>/dev/null
        for ((i = 0; i < 60; i++)); do
            [ -z "$(squeue -h -t PD,R,CG,S -o %i 2>/dev/null)" ] && break
            sleep 0.25
        done
    fi
fi

# 2. daemons, in reverse start order
stop slurmd "$D/run/slurmd.pid"
stop slurmctld "$D/run/slurmctld.pid"
stop slurmdbd "$D/run/slurmdbd.pid"
stop mariadbd "$D/run/mariadbd.pid" 60
stop munged "$D/run/munged.pid"

# 3. drop the /etc/slurm symlinks that start-slurm.sh made (only if ours)
for f in slurm.conf slurmdbd.conf; do
    if [ -L /etc/slurm/$f ] && [ "$(readlink /etc/slurm/$f)" = "$D/etc/$f" ]; then
        rm -f /etc/slurm/$f
    fi
done

if [ "${SLURM_CI_PURGE:-0}" = 1 ]; then
    rm -rf "$D"
    log "removed $D"
fi
exit 0
