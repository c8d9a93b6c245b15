#!/usr/bin/env bash
# Install and start a one-node SLURM cluster on this machine (for tests/test_slurm.py).
#
# Idempotent: skips apt when the daemons are installed, rewrites slurm.conf, creates the
# munge key if missing, purges the controller state (hermetic runs), (re)starts munged,
# slurmctld and slurmd, and waits until `sinfo` shows the node idle. Needs root.
#
#   sudo .ci/slurm.sh            # then: sinfo; pytest tests/test_slurm.py
#   .ci/slurm.sh stop            # cancel jobs, stop the daemons
#
# Notes: killing slurmd leaves jobs running, so `stop` runs scancel first; `sbatch --wait`
# is slow, poll squeue instead.
set -euo pipefail

CONF_DIR=/etc/slurm
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOG=/var/log/slurm
HOST=$(hostname -s)

log() { echo "slurm.sh: $*" >&2; }

stop_daemons() {
    if command -v scancel >/dev/null && command -v squeue >/dev/null; then
        # with a slurm.conf but no controller running, scancel retries for minutes: cap it
        timeout 15 scancel --full --user "$(id -un)" 2>/dev/null || true
        timeout 15 scancel --full 2>/dev/null || true
    fi
    for name in slurmd slurmctld; do
        if [ -f "/run/$name.pid" ]; then
            kill "$(cat "/run/$name.pid")" 2>/dev/null || true
            rm -f "/run/$name.pid"
        fi
    done
    sleep 1
}

if [ "${1:-}" = "stop" ]; then
    stop_daemons
    exit 0
fi

if [ "$(id -u)" != 0 ]; then
    log "must run as root"; exit 1
fi

if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null || ! command -v sinfo >/dev/null \
    || ! command -v munged >/dev/null; then
    log "installing slurmctld slurmd slurm-client munge"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >/dev/null
    apt-get install -y -q --no-install-recommends slurmctld slurmd slurm-client munge >/dev/null
fi

CPUS=$(nproc)
MEM_MB=$(free -m | awk '/^Mem:/ {print $2}')
REAL_MB=$(( MEM_MB > 2048 ? MEM_MB - 1024 : MEM_MB * 3 / 4 ))  # leave a margin for the OS

mkdir -p "$CONF_DIR" "$SPOOL" "$LOG" /run/munge /var/log/munge /var/lib/munge /etc/munge
rm -rf "$STATE"; mkdir -p "$STATE"
chown slurm:slurm "$STATE" "$LOG" 2>/dev/null || true

cat > "$CONF_DIR/slurm.conf" <<EOF
# one-node cluster written by .ci/slurm.sh
ClusterName=pixer-ci
SlurmctldHost=$HOST(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG/slurmctld.log
SlurmdLogFile=$LOG/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
MpiDefault=none
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
MinJobAge=5
KillWait=5
Waittime=0
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS RealMemory=$REAL_MB State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
# Debian's packages read /etc/slurm; some builds look in /etc/slurm-llnl.
[ -d /etc/slurm-llnl ] && cp "$CONF_DIR/slurm.conf" /etc/slurm-llnl/slurm.conf

# munge: key once, daemon as user munge.
if [ ! -s /etc/munge/munge.key ]; then
    if command -v mungekey >/dev/null; then mungekey --create --keyfile=/etc/munge/munge.key --force
    else dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; fi
fi
chown -R munge:munge /etc/munge /run/munge /var/log/munge /var/lib/munge
chmod 0700 /etc/munge; chmod 0400 /etc/munge/munge.key; chmod 0755 /run/munge
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    pkill_pid=$(cat /run/munge/munged.pid 2>/dev/null || true)
    [ -n "$pkill_pid" ] && kill "$pkill_pid" 2>/dev/null || true
    su -s /bin/sh munge -c "munged --force" || runuser -u munge -- munged --force
    sleep 1
fi

stop_daemons
slurmctld
slurmd

log "waiting for $HOST to be idle"
for _ in $(seq 60); do
    state=$(sinfo -h -N -n "$HOST" -o %t 2>/dev/null | head -1 || true)
    if [ "$state" = "idle" ]; then
        log "node $HOST idle: CPUs=$CPUS RealMemory=${REAL_MB}MB"
        sinfo
        exit 0
    fi
    if [ "$state" = "down" ] || [ "$state" = "drain" ] || [ "$state" = "unk" ]; then
        scontrol update NodeName="$HOST" State=RESUME 2>/dev/null || true
    fi
    sleep 1
done
log "timed out: node state '${state:-?}'"
tail -n 20 "$LOG/slurmctld.log" "$LOG/slurmd.log" >&2 || true
exit 1
