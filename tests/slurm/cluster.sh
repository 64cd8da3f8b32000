#!/usr/bin/env bash
# A real one-node Slurm cluster on localhost, for tests: Debian's slurmctld + slurmd with
# a private munged, all started as plain background processes (no systemd, no cgroups).
#
#   tests/slurm/cluster.sh up     [DIR]   install when missing, configure, start, wait until idle
#   tests/slurm/cluster.sh down   [DIR]   stop the daemons it started (by PID)
#   tests/slurm/cluster.sh status [DIR]   exit 0 when the node answers
#   tests/slurm/cluster.sh env    [DIR]   print the export line clients need
#
# DIR (default $INSECTML_SLURM_DIR or /tmp/insectml-slurm-$USER) holds slurm.conf, the
# munge key and socket, state, spool, pid and log files. Every daemon and client reads
# the configuration from $SLURM_CONF, so nothing is written under /etc.
set -euo pipefail

usage() { sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'; }
die() { printf 'cluster.sh: error: %s\n' "$*" >&2; exit 1; }
say() { printf 'cluster.sh: %s\n' "$*" >&2; }

cmd="${1:-}"
[[ "$cmd" == "-h" || "$cmd" == "--help" || -z "$cmd" ]] && { usage; exit 0; }
dir="${2:-${INSECTML_SLURM_DIR:-/tmp/insectml-slurm-$(id -un)}}"
mkdir -p "$dir"
dir="$(cd "$dir" && pwd)"
export SLURM_CONF="$dir/slurm.conf"
host="$(hostname -s)"

alive() {  # a PID that exists and is not a zombie
  local state
  [[ -r "/proc/$1/stat" ]] || return 1
  state="$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" || return 1
  [[ -n "$state" && "$state" != "Z" && "$state" != "X" ]]
}

pid_of() { [[ -s "$dir/$1.pid" ]] && cat "$dir/$1.pid"; }

node_state() { sinfo -h -n "$host" -o %t 2>/dev/null | head -1; }

free_port() {
  python3 - <<'EOF'
import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()
EOF
}

install() {
  command -v slurmctld >/dev/null && command -v slurmd >/dev/null && command -v munged >/dev/null \
    && command -v sinfo >/dev/null && return 0
  [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null \
    || die "Slurm is not installed; install Debian's slurmctld slurmd slurm-client munge (apt-get) and run again"
  say "installing slurmctld slurmd slurm-client munge with apt-get"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      slurmctld slurmd slurm-client munge >/dev/null; } || die "apt-get could not install Slurm"
}

write_config() {
  local cpus mem_mb ctld_port d_port
  cpus="$(nproc)"
  # Memory Slurm may hand out: most of what is available now, capped, so jobs fit.
  mem_mb="$(awk '/MemAvailable/ {printf "%d", $2 / 1024 * 0.8}' /proc/meminfo)"
  (( mem_mb > 16384 )) && mem_mb=16384
  if [[ -s "$dir/ports" ]]; then read -r ctld_port d_port <"$dir/ports"
  else ctld_port="$(free_port)"; d_port="$(free_port)"; echo "$ctld_port $d_port" >"$dir/ports"; fi
  mkdir -p "$dir/state" "$dir/spool" "$dir/log" "$dir/munge"
  chmod 755 "$dir/munge"  # munged refuses a socket folder others can write to
  cat >"$SLURM_CONF" <<EOF
# Written by tests/slurm/cluster.sh for a one-node test cluster on $host.
ClusterName=insectml-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$d_port
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# A private munged on its own socket, not the system one.
AuthInfo=socket=$dir/munge/munge.socket.2
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
# No cgroups in a container: track processes by parent PID, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
# Enforce --mem by polling job memory (no cgroups): over the limit, the job is killed.
JobAcctGatherType=jobacct_gather/linux
JobAcctGatherFrequency=1
JobAcctGatherParams=OverMemoryKill
# No slurmdbd: finished jobs go to a text log that 'sacct -c' reads.
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.log
# Keep finished jobs visible to squeue/scontrol for a while (Nextflow polls them).
MinJobAge=300
KillWait=5
OverTimeLimit=0
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
# One "gpu" resource backed by /dev/null (gres.conf; without a File slurmd reports none
# and the node is INVAL): no GPU exists here, but jobs asking for --gres=gpu:1 are
# scheduled, so GPU routing can be tested.
GresTypes=gpu
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb Gres=gpu:1 State=UNKNOWN
# DefMemPerCPU: without it a job asks for the whole node's memory and jobs run one at a time.
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP DefMemPerCPU=$((mem_mb / cpus))
PartitionName=long Nodes=$host Default=NO MaxTime=INFINITE State=UP DefMemPerCPU=$((mem_mb / cpus))
PartitionName=gpu Nodes=$host Default=NO MaxTime=INFINITE State=UP DefMemPerCPU=$((mem_mb / cpus))
EOF
  echo "NodeName=$host Name=gpu File=/dev/null" >"$dir/gres.conf"
}

start_munged() {
  local pid; pid="$(pid_of munged || true)"
  [[ -n "$pid" ]] && alive "$pid" && return 0
  [[ -s "$dir/munge/munge.key" ]] || {
    dd if=/dev/urandom of="$dir/munge/munge.key" bs=1024 count=1 status=none
    chmod 600 "$dir/munge/munge.key"
  }
  rm -f "$dir/munge/munge.socket.2" "$dir/munge/munge.socket.2.lock"
  # --force: munged refuses to run as root otherwise (a test cluster runs as the caller).
  munged --force --socket="$dir/munge/munge.socket.2" --key-file="$dir/munge/munge.key" \
    --pid-file="$dir/munged.pid" --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    || die "munged did not start; see $dir/log/munged.log"
}

cmd_up() {
  local t0=$SECONDS
  if cmd_status 2>/dev/null; then say "already up ($dir)"; echo "export SLURM_CONF=$SLURM_CONF"; return 0; fi
  install
  cmd_down 2>/dev/null || true
  write_config
  start_munged
  rm -rf "$dir/state"/* "$dir/spool"/*
  # -c: a clean start, no jobs or node state from an earlier cluster in this folder.
  slurmctld -c -f "$SLURM_CONF" || die "slurmctld did not start; see $dir/log/slurmctld.log"
  slurmd -f "$SLURM_CONF" || die "slurmd did not start; see $dir/log/slurmd.log"
  local state=""
  for _ in $(seq 1 120); do
    state="$(node_state)"
    case "$state" in
      idle) break ;;
      down*|drain*|drng*) scontrol update nodename="$host" state=resume >/dev/null 2>&1 || true ;;
    esac
    sleep 0.25
  done
  [[ "$state" == "idle" ]] || die "node $host is '${state:-unreachable}', not idle, after 30 s; see $dir/log/"
  say "up in $((SECONDS - t0)) s: one node ($host, $(nproc) CPUs, gres gpu:1), partitions debug (default), long, gpu"
  echo "export SLURM_CONF=$SLURM_CONF"
}

cmd_down() {
  local name pid
  for name in slurmd slurmctld munged; do
    pid="$(pid_of "$name" || true)"
    [[ -n "$pid" ]] || continue
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      for _ in $(seq 1 40); do alive "$pid" || break; sleep 0.25; done
      alive "$pid" && { kill -KILL "$pid" 2>/dev/null || true; sleep 0.5; }
      alive "$pid" && die "$name (pid $pid) did not stop"
    fi
    rm -f "$dir/$name.pid"
  done
  say "down ($dir)"
}

cmd_status() {
  [[ -f "$SLURM_CONF" ]] || return 1
  local pid
  for name in munged slurmctld slurmd; do
    pid="$(pid_of "$name" || true)"; [[ -n "$pid" ]] && alive "$pid" || return 1
  done
  case "$(node_state)" in idle|mix|alloc|comp) return 0 ;; *) return 1 ;; esac
}

case "$cmd" in
  up) cmd_up ;;
  down) cmd_down ;;
  status) if cmd_status; then say "up ($dir)"; else say "down ($dir)"; exit 1; fi ;;
  env) echo "export SLURM_CONF=$SLURM_CONF" ;;
  *) usage >&2; die "unknown command '$cmd' (up, down, status, env)" ;;
esac
