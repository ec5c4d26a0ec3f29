#!/usr/bin/env bash
# Stop the cluster started by start_local_cluster.sh: cancel its jobs, then end each slurmd, slurmctld
# and munged by the pid in its pid file (checked against /proc/<pid>/comm). No pkill/killall.
set -uo pipefail
BASE=${LOCAL_SLURM_BASE:-${TMPDIR:-/tmp}/local-slurm}
CONF="$BASE/etc/slurm.conf"
RUN="$BASE/run"

alive() {  # alive <pidfile> <comm>
    local pid
    [ -s "$1" ] || return 1
    pid=$(cat "$1")
    [ -r "/proc/$pid/comm" ] && [ "$(cat "/proc/$pid/comm")" = "$2" ]
}

# cancel this cluster's jobs first so that no slurmstepd outlives the daemons
if [ -f "$CONF" ] && alive "$RUN/slurmctld.pid" slurmctld; then
    export SLURM_CONF="$CONF"
    jobs=$(squeue -h -o %i 2>/dev/null || true)
    if [ -n "$jobs" ]; then
        # shellcheck disable=SC2086
        scancel --full $jobs 2>/dev/null || true
        for _ in $(seq 150); do                       # up to 30 s (KillWait=5 in our conf)
            [ -z "$(squeue -h -o %i 2>/dev/null)" ] && break
            sleep 0.2
        done
    fi
fi

# TERM all our daemons at once (each takes ~2 s to exit), wait, KILL any that hang
pids=()
for pf in "$RUN"/slurmd.pid "$RUN"/slurmd-*.pid "$RUN/slurmctld.pid" "$RUN/munged.pid"; do
    [ -e "$pf" ] || continue
    comm=$(basename "$pf" .pid); comm=${comm%%-*}      # slurmd-n1.pid -> slurmd
    if alive "$pf" "$comm"; then
        pid=$(cat "$pf"); kill -TERM "$pid"; pids+=("$pid"); echo "stopping $comm ($pid)"
    fi
    rm -f "$pf"
done
for _ in $(seq 100); do            # up to 10 s
    left=0
    for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && left=1; done
    [ "$left" = 0 ] && break
    sleep 0.1
done
for pid in "${pids[@]}"; do [ -d "/proc/$pid" ] && kill -KILL "$pid" 2>/dev/null; done

# job steps that outlived their slurmd (jobs that ignored the cancel under load): this cluster's
# slurmstepd processes (their environment holds our SLURM_CONF) and everything below them
steps=()
for d in /proc/[0-9]*; do
    [ "$(cat "$d/comm" 2>/dev/null)" = slurmstepd ] || continue
    tr '\0' '\n' < "$d/environ" 2>/dev/null | grep -qx "SLURM_CONF=$CONF" && steps+=("${d#/proc/}")
done
if [ ${#steps[@]} -gt 0 ]; then
    tree=("${steps[@]}")
    while read -r pid ppid; do                  # ps lists parents before children
        for t in "${tree[@]}"; do [ "$ppid" = "$t" ] && { tree+=("$pid"); break; }; done
    done < <(ps -eo pid=,ppid= --sort=start_time)
    echo "ending ${#tree[@]} leftover job processes (${#steps[@]} slurmstepd)"
    kill -KILL "${tree[@]}" 2>/dev/null
fi
exit 0
