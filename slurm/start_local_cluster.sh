#!/usr/bin/env bash
# Start a throw-away SLURM cluster on this host (munged + slurmctld + 1..N slurmd) without
# systemd or cgroups. All state lives under $LOCAL_SLURM_BASE; nothing in /etc is touched.
# Used by the tests (tests/conftest.py, fixture `slurm_cluster`); stop it with stop_local_cluster.sh.
# Needs Debian's slurm-wlm (munge, slurmctld, slurmd, slurm-client): `make slurm` installs it as root.
# Env knobs: LOCAL_SLURM_BASE (${TMPDIR:-/tmp}/local-slurm)   LOCAL_SLURM_NODES (1; >1 = fake nodes n1..nN)
#            LOCAL_SLURM_CPUS (nproc, per node)   LOCAL_SLURM_CTLD_PORT (6817)   LOCAL_SLURM_SLURMD_PORT (6818)
#            LOCAL_SLURM_CRED_EXPIRE (10 s; also the wait before a requeued job may restart)
#            LOCAL_SLURM_MAX_ARRAY_SIZE (SLURM's default, 1001: array task ids stay below it)
# Prints "export SLURM_CONF=..." on success. Re-running stops the previous instance (pid files) and
# starts from a clean state.
set -euo pipefail

BASE=${LOCAL_SLURM_BASE:-${TMPDIR:-/tmp}/local-slurm}
NNODES=${LOCAL_SLURM_NODES:-1}
NCPU=${LOCAL_SLURM_CPUS:-$(nproc)}
CTLD_PORT=${LOCAL_SLURM_CTLD_PORT:-6817}
SLURMD_PORT=${LOCAL_SLURM_SLURMD_PORT:-6818}
CRED_EXPIRE=${LOCAL_SLURM_CRED_EXPIRE:-10}
TIMEOUT=${LOCAL_SLURM_TIMEOUT:-60}
MAX_ARRAY_SIZE=${LOCAL_SLURM_MAX_ARRAY_SIZE:-1001}
HOST=$(hostname -s)
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
t_start=$(date +%s.%N)

# 0. stop an earlier instance of *this* cluster (by its pid files), then wipe its state
if [ -d "$BASE" ]; then
    LOCAL_SLURM_BASE="$BASE" bash "$HERE/stop_local_cluster.sh" || true
    rm -rf "$BASE"
fi

# refuse to start if a port we need is already listening (e.g. daemons whose pid files were deleted)
port_busy() { awk -v p="$(printf ':%04X' "$1")" 'NR>1 && $4=="0A" && substr($2, length($2)-4)==p {f=1} END{exit !f}' /proc/net/tcp /proc/net/tcp6; }
for p in "$CTLD_PORT" "$SLURMD_PORT" $( [ "$NNODES" -gt 1 ] && seq $((SLURMD_PORT + 101)) $((SLURMD_PORT + 100 + NNODES)) ); do
    if port_busy "$p"; then echo "port $p is already in use; set LOCAL_SLURM_CTLD_PORT/LOCAL_SLURM_SLURMD_PORT" >&2; exit 1; fi
done

ADDR=$(getent hosts "$HOST" | awk '{print $1; exit}')
ADDR=${ADDR:-127.0.0.1}
# RealMemory a bit under MemTotal (MiB) so slurmd does not drain the node for "Low RealMemory"
MEM_MB=$(awk -v n="$NNODES" '/MemTotal/ {printf "%d", $2/1024*0.95/n}' /proc/meminfo)

mkdir -p "$BASE"/{etc,munge,msock,log,run,state/ctld,state/d}
chmod 700 "$BASE/munge"   # key dir: private
chmod 755 "$BASE/msock"   # socket dir: munged insists on o+x

# 1. munge: private key, daemon bound to a private socket
if command -v mungekey >/dev/null; then
    mungekey --create --keyfile="$BASE/munge/munge.key" --force
else
    dd if=/dev/urandom of="$BASE/munge/munge.key" bs=1 count=1024 status=none
fi
chmod 400 "$BASE/munge/munge.key"
MUNGE_SOCK="$BASE/msock/munge.socket.2"
munged --key-file="$BASE/munge/munge.key" --socket="$MUNGE_SOCK" \
       --pid-file="$BASE/run/munged.pid" --log-file="$BASE/log/munged.log" \
       --seed-file="$BASE/munge/munged.seed"
for _ in $(seq 50); do [ -S "$MUNGE_SOCK" ] && break; sleep 0.1; done
munge -n -S "$MUNGE_SOCK" | unmunge -S "$MUNGE_SOCK" >/dev/null

# 2. slurm.conf
if [ "$NNODES" -eq 1 ]; then
    NODES=("$HOST")
    NODE_LINES="NodeName=${HOST} NodeAddr=${ADDR} CPUs=${NCPU} Sockets=1 CoresPerSocket=${NCPU} ThreadsPerCore=1 RealMemory=${MEM_MB} State=UNKNOWN"
    PIDF="${BASE}/run/slurmd.pid"; SPOOL="${BASE}/state/d"; DLOG="${BASE}/log/slurmd.log"
else   # fake nodes n1..nN, one slurmd each on its own port (Debian builds with multiple-slurmd)
    NODES=(); NODE_LINES=""
    for i in $(seq "$NNODES"); do
        NODES+=("n$i")
        NODE_LINES+="NodeName=n$i NodeHostname=${HOST} NodeAddr=${ADDR} Port=$((SLURMD_PORT + 100 + i)) CPUs=${NCPU} Sockets=1 CoresPerSocket=${NCPU} ThreadsPerCore=1 RealMemory=${MEM_MB} State=UNKNOWN"$'\n'
    done
    PIDF="${BASE}/run/slurmd-%n.pid"; SPOOL="${BASE}/state/d/%n"; DLOG="${BASE}/log/slurmd-%n.log"
fi
CONF="$BASE/etc/slurm.conf"
cat > "$CONF" <<EOF
ClusterName=local
SlurmctldHost=${HOST}(${ADDR})
SlurmctldPort=${CTLD_PORT}
SlurmdPort=${SLURMD_PORT}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# cred_expire is also how long a requeued job must wait before it may start again (default 120 s)
AuthInfo=socket=${MUNGE_SOCK},cred_expire=${CRED_EXPIRE}
StateSaveLocation=${BASE}/state/ctld
SlurmdSpoolDir=${SPOOL}
SlurmctldPidFile=${BASE}/run/slurmctld.pid
SlurmdPidFile=${PIDF}
SlurmctldLogFile=${BASE}/log/slurmctld.log
SlurmdLogFile=${DLOG}
SlurmctldDebug=info
SlurmdDebug=info
# no systemd, no cgroups, no accounting
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
MailProg=/bin/true
# scheduling: per-CPU allocation; periodic passes every 2 s (defaults 60 s / 30 s)
SchedulerType=sched/backfill
SchedulerParameters=sched_interval=2,bf_interval=2
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
JobRequeue=1
MaxArraySize=${MAX_ARRAY_SIZE}
# short timers for tests
KillWait=5
MinJobAge=600
InactiveLimit=0
Waittime=0
MessageTimeout=10
SlurmdTimeout=300
SlurmctldTimeout=120
# the node may claim more CPUs than the hardware has (for concurrency in tests)
SlurmdParameters=config_overrides
${NODE_LINES}
PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP
EOF
export SLURM_CONF="$CONF"

# 3. daemons (they fork into the background and write their pid files)
slurmctld -f "$CONF" -c
for n in "${NODES[@]}"; do slurmd -f "$CONF" -N "$n"; done

# 4. wait until every node is idle
deadline=$(( $(date +%s) + TIMEOUT ))
while :; do
    states=$(sinfo -h -N -o %t 2>/dev/null | sort -u | tr '\n' ' ' || true)
    [ "$states" = "idle " ] && [ "$(sinfo -h -N -o %N | wc -l)" -eq "$NNODES" ] && break
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "nodes did not become idle (states: '$states'); see $BASE/log" >&2
        exit 1
    fi
    sleep 0.2
done
for pf in "$BASE"/run/*.pid; do   # the daemons that answered must be ours
    [ -d "/proc/$(cat "$pf")" ] || { echo "daemon from $pf died; see $BASE/log" >&2; exit 1; }
done
echo "# slurm up in $(awk -v a="$t_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s; nodes idle: ${NODES[*]}"
echo "export SLURM_CONF=$CONF"
