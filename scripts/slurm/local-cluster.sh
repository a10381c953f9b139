#!/usr/bin/env bash
# local-cluster.sh — a throw-away single-node Slurm cluster on localhost, for the test suite
# (tests/test_slurm.sh) and for trying scripts/slurm/sdgen-array.sbatch by hand. docs/SCALE-OUT.md
# explains why the suite runs a real Slurm.
#
#   local-cluster.sh install      install Debian's slurm-wlm and munge when missing (apt-get, as root;
#                                 a no-op when they are there)
#   local-cluster.sh start DIR    start munged, slurmctld and slurmd with everything in DIR (an empty
#                                 folder): configuration, key, sockets, state, spool, logs, PID files.
#                                 Prints the line `export SLURM_CONF=DIR/slurm.conf`: every client
#                                 command (sbatch, squeue, scancel, ...) needs it.
#   local-cluster.sh stop DIR     stop the daemons DIR's PID files name (never by process name), wait
#                                 until they are gone
#
# Exit status: 0 ok; 77 the cluster cannot be had here (not root, packages missing, a daemon did not
# come up: the message says which and where its log is); 2 usage.
#
# Nothing outside DIR is used: munged runs as user munge with a private key and socket (the system's
# /etc/munge and any running munged are left alone), slurm.conf sets AuthInfo=socket=... to that socket,
# ProctrackType=proctrack/linuxproc and TaskPlugin=task/none need no cgroups or systemd, the ports are
# free ones picked at start, and MinJobAge=5 makes `sbatch --wait` return within seconds of the job's
# end (the default makes it return 30 s or more late).
set -uo pipefail

skip() { echo "local-cluster: SKIP: $*" >&2; exit 77; }
die() { echo "local-cluster: $*" >&2; exit 2; }

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

cmd_install() {
    local missing=()
    for p in slurm-wlm munge; do installed "$p" || missing+=("$p"); done
    [ ${#missing[@]} -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || skip "${missing[*]} not installed and not root (apt-get install ${missing[*]})"
    echo "local-cluster: installing ${missing[*]}" >&2
    apt-get update -qq || skip "apt-get update failed"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        skip "apt-get install ${missing[*]} failed"
}

# A TCP port nobody listens on (bash's /dev/tcp connect fails), from a range away from common services.
free_port() {
    local p tries=0
    while [ $tries -lt 200 ]; do
        p=$((20000 + RANDOM % 20000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then echo "$p"; return 0; fi
        tries=$((tries + 1))
    done
    return 1
}

# wait_for SECONDS COMMAND...: poll every 0.2 s until COMMAND succeeds
wait_for() {
    local n=$(($1 * 5)); shift
    while [ $n -gt 0 ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
        n=$((n - 1))
    done
    return 1
}

cmd_start() {
    local dir="$1"
    [ "$(id -u)" -eq 0 ] || skip "slurmd must run as root to start jobs (running as $(id -un))"
    for b in munged mungekey slurmctld slurmd sbatch scontrol; do
        command -v "$b" >/dev/null || skip "$b not found (run: $0 install)"
    done
    id munge >/dev/null 2>&1 || skip "no user munge (the munge package creates it)"
    mkdir -p "$dir" || die "cannot create $dir"
    dir="$(cd "$dir" && pwd)"
    local m="$dir/munge"
    mkdir -p "$m" "$dir/state" "$dir/spool" || die "cannot create folders in $dir"
    # munged insists on a key readable by its user only and on a socket folder that everyone can enter
    # (execute permission) but only munge can write.
    chmod 755 "$dir"
    chown munge:munge "$m" && chmod 711 "$m" || skip "cannot give $m to user munge"
    runuser -u munge -- mungekey --create --keyfile="$m/munge.key" >/dev/null 2>&1 ||
        skip "mungekey could not create a key in $m"
    runuser -u munge -- munged --socket="$m/munge.sock" --key-file="$m/munge.key" --pid-file="$m/munged.pid" \
        --log-file="$m/munged.log" --seed-file="$m/munged.seed" >/dev/null 2>&1 ||
        skip "munged did not start (log: $m/munged.log)"
    wait_for 10 test -S "$m/munge.sock" || skip "munged made no socket (log: $m/munged.log)"

    local host ctl_port d_port cpus mem
    host="$(hostname -s)"
    ctl_port="$(free_port)" && d_port="$(free_port)" || skip "no free TCP port"
    [ "$ctl_port" != "$d_port" ] || d_port=$((ctl_port + 1))
    cpus="$(nproc)"
    mem=$(( $(awk '/^MemTotal:/ {print $2}' /proc/meminfo) / 1024 / 2 ))
    cat >"$dir/slurm.conf" <<EOF
# Written by scripts/slurm/local-cluster.sh: a single node on localhost, everything in this folder.
ClusterName=sdgentest
SlurmctldHost=$host(127.0.0.1)
SlurmUser=root
SlurmdUser=root
SlurmctldPort=$ctl_port
SlurmdPort=$d_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$m/munge.sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
ReturnToService=2
MinJobAge=5
KillWait=10
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
    export SLURM_CONF="$dir/slurm.conf"
    # -i: ignore any old state (the folder is new anyway); both daemonize and write their PID files.
    slurmctld -i -f "$SLURM_CONF" >/dev/null 2>&1 || skip "slurmctld did not start (log: $dir/slurmctld.log)"
    slurmd -f "$SLURM_CONF" >/dev/null 2>&1 || skip "slurmd did not start (log: $dir/slurmd.log)"
    node_up() { sinfo -h -N -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; }
    wait_for 30 node_up || skip "the node did not come up within 30 s (logs: $dir/slurmctld.log, $dir/slurmd.log)"
    echo "export SLURM_CONF=$SLURM_CONF"
}

# stop_pid FILE [USER]: SIGTERM the process a PID file names, if it still runs, and wait for it.
stop_pid() {
    local f="$1" pid n
    [ -s "$f" ] || return 0
    pid="$(tr -dc 0-9 <"$f")"
    [ -n "$pid" ] || return 0
    kill -TERM "$pid" 2>/dev/null || return 0
    n=50
    while [ $n -gt 0 ] && kill -0 "$pid" 2>/dev/null; do sleep 0.2; n=$((n - 1)); done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
    return 0
}

cmd_stop() {
    local dir="$1"
    [ -d "$dir" ] || return 0
    stop_pid "$dir/slurmd.pid"
    stop_pid "$dir/slurmctld.pid"
    stop_pid "$dir/munge/munged.pid"
}

case "${1:-}" in
    install) cmd_install ;;
    start) [ $# -eq 2 ] || die "usage: $0 start DIR"; cmd_start "$2" ;;
    stop) [ $# -eq 2 ] || die "usage: $0 stop DIR"; cmd_stop "$2" ;;
    *) die "usage: $0 install | start DIR | stop DIR" ;;
esac
