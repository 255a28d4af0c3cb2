#!/usr/bin/env bash
# start-slurm.sh: bring up a throwaway single-node SLURM cluster on this
# machine (Debian bookworm, run as root, no systemd needed), for the tests
# (tests/test_slurm.py starts it and always runs stop-slurm.sh afterwards).
#
# Exit status 3: this machine cannot host the test cluster (not root, no
# apt-get, the packages cannot be installed, or a real SLURM configuration is
# already in /etc/slurm); the tests skip on it (fail when CI=true). Any other
# non-zero status is a broken set-up.
#
# Idempotent: installs missing packages, (re)writes the configs, starts only
# the daemons that are not already running, then waits until the node is idle.
# All traffic is on 127.0.0.1. State, logs, sockets and pid files live under
# $SLURM_CI_DIR. The only things written outside it are the Debian packages and
# the symlinks /etc/slurm/slurm.conf (+ slurmdbd.conf). The symlinks are needed
# because the snakemake slurm-jobstep plugin strips SLURM_CONF from the
# environment of the inner `srun`, so clients must find the default path.
#
# Settings (environment variables):
#   SLURM_CI_DIR      state dir                    (default /tmp/fmnist-initopt-slurm)
#   SLURM_ACCOUNTING  dbd  = slurmdbd + MariaDB, so `sacct` works (default)
#                     none = no database; sacct fails, so the snakemake
#                            profile needs `slurm-status-command: squeue`
#   SLURM_PARTITION   partition name               (default main)
#   SLURM_CPUS        CPUs advertised for the node (default nproc; may exceed it)
#   SLURM_MEM_MB      RealMemory of the node       (default 80% of MemTotal)
#   SLURM_FAKE_GPUS   N>0: advertise N fake "gpu" GRES (char-device clones of
#                     /dev/null under $SLURM_CI_DIR/fakegpu; sets CUDA_VISIBLE_DEVICES)
#   SLURM_DB_PORT     MariaDB TCP port on 127.0.0.1 (default 3306)
#   SLURM_REQUEUE_DELAY seconds a requeued job waits before it may start again
#                     (slurm.conf AuthInfo cred_expire, also the job-step
#                     credential lifetime; SLURM's default 120; here 10)
set -euo pipefail

T0=$(date +%s.%N)
D=${SLURM_CI_DIR:-/tmp/fmnist-initopt-slurm}
ACCT=${SLURM_ACCOUNTING:-dbd}
PART=${SLURM_PARTITION:-main}
NCPU=${SLURM_CPUS:-$(nproc)}
MEM=${SLURM_MEM_MB:-$(($(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 * 8 / 10))}
FAKE_GPUS=${SLURM_FAKE_GPUS:-0}
DB_PORT=${SLURM_DB_PORT:-3306}
REQUEUE_DELAY=${SLURM_REQUEUE_DELAY:-10}
H=$(hostname -s)
CONF=$D/etc/slurm.conf
DBDCONF=$D/etc/slurmdbd.conf
export SLURM_CONF=$CONF

log() { printf '[start-slurm %6.1fs] %s\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*"; }
die() { log "ERROR: $*"; exit 1; }
unsupported() { log "UNSUPPORTED: $*"; exit 3; }

case $ACCT in dbd | none) ;; *) die "SLURM_ACCOUNTING must be dbd or none" ;; esac
[ "$(id -u)" = 0 ] || unsupported "must run as root"

# ---------------------------------------------------------------- packages
pkgs=(munge slurmctld slurmd slurm-client)
if [ "$ACCT" = dbd ]; then pkgs+=(slurmdbd mariadb-server); fi
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing: ${missing[*]}"
    # keep the packages' postinst scripts from starting system services
    made_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        made_policy=1
    fi
    export DEBIAN_FRONTEND=noninteractive
    installed=0
    if command -v apt-get >/dev/null && apt-get update -qq &&
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$D.apt.log" 2>&1; then
        installed=1
    fi
    if [ $made_policy = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi
    [ $installed = 1 ] || unsupported "could not apt-get install ${missing[*]} (see $D.apt.log)"
    log "packages installed"
fi
for b in munged slurmctld slurmd sbatch; do command -v $b >/dev/null || die "$b not found"; done

# ---------------------------------------------------------------- layout
mkdir -p "$D"/{etc,log,run,munge,spool/ctld,spool/d}
chmod 755 "$D" "$D/run" # munged needs execute permission for all on the socket dir
chmod 700 "$D/munge"

# pid helpers: a pid file only counts if the process still runs that binary
pid_alive() { # name pidfile
    local pid
    pid=$(cat "$2" 2>/dev/null) || return 1
    [ -n "$pid" ] && [ -r /proc/$pid/cmdline ] && tr '\0' ' ' </proc/$pid/cmdline | grep -q "$1"
}
wait_for() { # seconds description command...
    local n=$1 what=$2 i
    shift 2
    for ((i = 0; i < n * 4; i++)); do
        if "$@" >/dev/null 2>&1; then return 0; fi
        sleep 0.25
    done
    die "timed out after ${n}s waiting for $what (logs in $D/log)"
}

# ---------------------------------------------------------------- configs
write_if_changed() { # path mode; content on stdin
    local tmp
    tmp=$(mktemp "$1.XXXX")
    cat >"$tmp"
    chmod "$2" "$tmp"
    if cmp -s "$tmp" "$1"; then rm -f "$tmp"; else mv "$tmp" "$1"; fi
}

GRES_LINE="" NODE_GRES=""
if [ "$FAKE_GPUS" -gt 0 ]; then
    # AccountingStorageTRES: sacct's AllocTRES then shows the GPUs a job was given
    GRES_LINE="GresTypes=gpu
AccountingStorageTRES=gres/gpu"
    NODE_GRES="Gres=gpu:$FAKE_GPUS"
    # slurmd drops file-less GPUs ("Removing file-less GPU"), and wants a
    # character device: clone /dev/null (char 1,3) once per fake GPU.
    mkdir -p "$D/fakegpu"
    for ((i = 0; i < FAKE_GPUS; i++)); do
        [ -c "$D/fakegpu/gpu$i" ] || mknod "$D/fakegpu/gpu$i" c 1 3
    done
    write_if_changed "$D/etc/gres.conf" 644 <<EOF
NodeName=$H Name=gpu File=$D/fakegpu/gpu[0-$((FAKE_GPUS - 1))]
EOF
else
    rm -f "$D/etc/gres.conf"
fi

if [ "$ACCT" = dbd ]; then
    ACCT_LINES="AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=6819
AccountingStoragePass=$D/run/munge.socket"
else
    ACCT_LINES="AccountingStorageType=accounting_storage/none"
fi

write_if_changed "$CONF" 644 <<EOF
# generated by start-slurm.sh
ClusterName=ci
SlurmctldHost=$H(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
# cred_expire: how long a requeued job is held (reason BeginTime) before it may start again
AuthInfo=socket=$D/run/munge.socket,cred_expire=$REQUEUE_DELAY
StateSaveLocation=$D/spool/ctld
SlurmdSpoolDir=$D/spool/d
SlurmctldPidFile=$D/run/slurmctld.pid
SlurmdPidFile=$D/run/slurmd.pid
SlurmctldLogFile=$D/log/slurmctld.log
SlurmdLogFile=$D/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# no cgroups in this VM/container: plain process tracking, no task binding
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=256
SchedulerType=sched/backfill
# a job that becomes eligible without an event (a requeued job after cred_expire) waits for the next
# scheduling pass: every 2 s here instead of SLURM's 60 s (main loop) and 30 s (backfill)
SchedulerParameters=sched_interval=2,bf_interval=2
$ACCT_LINES
# keep sbatch --comment (the snakemake plugin puts the rule and wildcards there) for sacct
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
MpiDefault=none
# trust the CPU/memory numbers below even if they exceed the hardware
SlurmdParameters=config_overrides
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
# keep finished jobs visible to squeue for 5 min (snakemake squeue status mode)
MinJobAge=300
KillWait=5
Waittime=0
$GRES_LINE
NodeName=$H NodeAddr=127.0.0.1 CPUs=$NCPU RealMemory=$MEM $NODE_GRES State=UNKNOWN
PartitionName=$PART Nodes=$H Default=YES MaxTime=INFINITE State=UP
EOF

if [ "$ACCT" = dbd ]; then
    write_if_changed "$DBDCONF" 600 <<EOF
# generated by start-slurm.sh
AuthType=auth/munge
AuthInfo=socket=$D/run/munge.socket
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=6819
SlurmUser=root
LogFile=$D/log/slurmdbd.log
PidFile=$D/run/slurmdbd.pid
DebugLevel=info
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=slurm
StoragePass=slurmci
StorageLoc=slurm_acct_db
EOF
fi

# clients (sbatch/srun/squeue/sacct, also inside jobs) read the default path
link_conf() { # target linkname
    mkdir -p /etc/slurm
    # a real cluster's configuration is never replaced
    if [ -e "$2" ] && [ "$(readlink "$2")" != "$1" ]; then
        unsupported "$2 exists and is not this test cluster's: refusing to replace it"
    fi
    ln -sfn "$1" "$2"
}
link_conf "$CONF" /etc/slurm/slurm.conf
if [ "$ACCT" = dbd ]; then link_conf "$DBDCONF" /etc/slurm/slurmdbd.conf; fi

# ---------------------------------------------------------------- munge
if ! pid_alive munged "$D/run/munged.pid"; then
    if [ ! -s "$D/munge/munge.key" ]; then
        if command -v mungekey >/dev/null; then
            mungekey --create --keyfile="$D/munge/munge.key"
        else
            dd if=/dev/urandom bs=1 count=1024 of="$D/munge/munge.key" 2>/dev/null
        fi
    fi
    chmod 400 "$D/munge/munge.key"
    rm -f "$D/run/munge.socket" "$D/run/munge.socket.lock"
    munged --socket="$D/run/munge.socket" --key-file="$D/munge/munge.key" \
        --log-file="$D/log/munged.log" --pid-file="$D/run/munged.pid" \
        --seed-file="$D/munge/munged.seed" </dev/null >/dev/null 2>&1
    log "munged started (pid $(cat "$D/run/munged.pid"))"
fi
wait_for 10 munged bash -c "munge -n --socket='$D/run/munge.socket' | unmunge --socket='$D/run/munge.socket'"

# ---------------------------------------------------------------- database
if [ "$ACCT" = dbd ]; then
    SQL=(mariadb --no-defaults --socket="$D/run/mysqld.sock" -u root)
    if ! pid_alive mariadbd "$D/run/mariadbd.pid"; then
        if [ ! -d "$D/db/data/mysql" ]; then
            mkdir -p "$D/db"
            mariadb-install-db --no-defaults --user=root --datadir="$D/db/data" \
                --auth-root-authentication-method=socket --skip-test-db \
                >"$D/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed"
        fi
        setsid mariadbd --no-defaults --user=root --datadir="$D/db/data" \
            --socket="$D/run/mysqld.sock" --pid-file="$D/run/mariadbd.pid" \
            --bind-address=127.0.0.1 --port="$DB_PORT" --skip-name-resolve \
            --log-error="$D/log/mariadbd.log" \
            --innodb-buffer-pool-size=64M --innodb-lock-wait-timeout=900 \
            </dev/null >/dev/null 2>&1 &
        wait_for 60 mariadbd "${SQL[@]}" -e 'SELECT 1'
        log "mariadbd started (pid $(cat "$D/run/mariadbd.pid"))"
    fi
    wait_for 60 mariadbd "${SQL[@]}" -e 'SELECT 1'
    "${SQL[@]}" -e "
        CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurmci';
        CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurmci';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';
        GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
        FLUSH PRIVILEGES;"
    if ! pid_alive slurmdbd "$D/run/slurmdbd.pid"; then
        slurmdbd </dev/null >/dev/null 2>&1
        log "slurmdbd started (pid $(cat "$D/run/slurmdbd.pid" 2>/dev/null))"
    fi
    wait_for 60 slurmdbd sacctmgr -n list cluster
fi

# ---------------------------------------------------------------- slurm
if ! pid_alive slurmctld "$D/run/slurmctld.pid"; then
    slurmctld -f "$CONF" </dev/null >/dev/null 2>&1
    log "slurmctld started (pid $(cat "$D/run/slurmctld.pid" 2>/dev/null))"
else
    scontrol reconfigure >/dev/null 2>&1 || true
fi
wait_for 60 slurmctld bash -c "scontrol ping | grep -q 'is UP'"

if ! pid_alive slurmd "$D/run/slurmd.pid"; then
    slurmd -f "$CONF" -N "$H" </dev/null >/dev/null 2>&1
    wait_for 10 "slurmd pid file" test -s "$D/run/slurmd.pid"
    log "slurmd started (pid $(cat "$D/run/slurmd.pid"))"
fi

node_ready() {
    local st
    st=$(sinfo -h -N -n "$H" -o %t 2>/dev/null | head -1)
    case $st in
    idle | mix | alloc) return 0 ;;
    down* | drain* | drng*) scontrol update NodeName="$H" State=RESUME >/dev/null 2>&1 || true ;;
    esac
    return 1
}
wait_for 60 "node $H to become idle" node_ready

if [ "$ACCT" = dbd ]; then
    # the cluster registers itself with slurmdbd; wait so sacct sees new jobs
    wait_for 30 "cluster registration" bash -c "sacctmgr -n -P list cluster format=cluster | grep -qx ci"
fi

log "cluster up: $(sinfo -h -o '%P %a %D %t %N' | tr '\n' ' ') accounting=$ACCT"
