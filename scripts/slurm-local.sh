#!/usr/bin/env bash
# A one-node SLURM cluster on this machine, for the SLURM executor's tests (and for trying
# `[executor] kind = "slurm"` without a cluster).
#
#   scripts/slurm-local.sh start    install slurm-wlm + munge with apt if missing, write
#                                   /etc/slurm/slurm.conf for this machine, start munged,
#                                   slurmctld and slurmd; wait until the node is idle
#   scripts/slurm-local.sh stop     stop the three daemons
#   scripts/slurm-local.sh status   say whether the cluster answers
#
# Idempotent: `start` on a running cluster only checks that it answers. Needs root (apt, the
# daemons). No systemd needed: munged runs as the munge user, slurmctld and slurmd daemonise.
# The settings below are the ones that work in a container: NodeAddr=127.0.0.1 and the node
# name from `hostname -s` at start time (container hostnames change), proctrack/linuxproc and
# task/none (the cgroup plugins fail in containers), cons_tres with CR_CPU, RealMemory at 90%
# of the machine's, fast scheduling (bf_interval=1, sched_interval=2, cred_expire=10: without
# them freed CPUs and requeued jobs wait 30-120 s), and jobcomp/filetxt so that `sacct -c`
# reports end states and exit codes without slurmdbd.
set -euo pipefail

CONF_DIR=/etc/slurm
CONF=$CONF_DIR/slurm.conf
STATE=/var/spool/slurmctld
SPOOL=/var/spool/slurmd
LOGS=/var/log/slurm
JOBCOMP=$LOGS/jobcomp.log

say() { echo "slurm-local: $*" >&2; }

answers() { timeout 5 sinfo -h >/dev/null 2>&1; }

install() {
  if command -v sbatch >/dev/null && command -v slurmctld >/dev/null \
     && command -v slurmd >/dev/null && command -v munged >/dev/null; then
    return
  fi
  [ "$(id -u)" = 0 ] || { say "slurm-wlm is not installed and this is not root: run as root"; exit 1; }
  say "installing slurm-wlm and munge (apt)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq slurm-wlm munge >/dev/null
}

write_conf() {
  local node cpus mem_mb
  node=$(hostname -s)
  cpus=$(nproc --all)
  mem_mb=$(awk '/MemTotal/ { printf "%d", $2 / 1024 * 0.9 }' /proc/meminfo)
  mkdir -p "$CONF_DIR" "$STATE" "$SPOOL" "$LOGS"
  cat >"$CONF" <<EOF
# Written by scripts/slurm-local.sh: a one-node cluster for tests.
ClusterName=lemo-local
SlurmctldHost=$node(127.0.0.1)
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=cred_expire=10
StateSaveLocation=$STATE
SlurmdSpoolDir=$SPOOL
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
SchedulerParameters=bf_interval=1,sched_interval=2
ReturnToService=2
MinJobAge=300
KillWait=5
InactiveLimit=0
SlurmctldTimeout=30
SlurmdTimeout=30
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$JOBCOMP
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=$node Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if pgrep -x munged >/dev/null; then return; fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge /etc/munge
  [ -s /etc/munge/munge.key ] || { dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null; }
  chown -R munge:munge /run/munge /var/log/munge /var/lib/munge /etc/munge
  chmod 0700 /etc/munge /var/log/munge /var/lib/munge
  chmod 0400 /etc/munge/munge.key
  chmod 0755 /run/munge
  su -s /bin/sh munge -c /usr/sbin/munged
}

start() {
  if answers && [ -f "$CONF" ] && grep -q "NodeName=$(hostname -s) " "$CONF"; then
    say "already running"
    return
  fi
  install
  stop_daemons quiet
  write_conf
  start_munge
  slurmctld
  slurmd
  local node
  node=$(hostname -s)
  for _ in $(seq 1 60); do
    if answers; then
      # A node that was down in an earlier life of the cluster comes back here.
      scontrol update NodeName="$node" State=RESUME >/dev/null 2>&1 || true
      if sinfo -h -n "$node" -o %t 2>/dev/null | grep -qE '^(idle|mix|alloc)'; then
        say "running: node $node, $(nproc --all) CPUs, partition debug"
        return
      fi
    fi
    sleep 1
  done
  say "the cluster did not come up; logs in $LOGS"
  exit 1
}

# Stops a daemon by the process id in its pid file (never by name).
stop_pid() {
  local name=$1 pidfile=$2 quiet=${3:-} pid
  [ -s "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" || true
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    [ -n "$quiet" ] || say "stopped $name ($pid)"
  fi
  rm -f "$pidfile"
}

stop_daemons() {
  stop_pid slurmd /run/slurmd.pid "${1:-}"
  stop_pid slurmctld /run/slurmctld.pid "${1:-}"
}

stop() {
  stop_daemons
  stop_pid munged /run/munge/munged.pid
}

case "${1:-start}" in
  start) start ;;
  stop) stop ;;
  status) if answers; then sinfo; else say "not running"; exit 1; fi ;;
  *) echo "usage: $0 [start|stop|status]" >&2; exit 2 ;;
esac
