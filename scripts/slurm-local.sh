#!/usr/bin/env bash
# A real one-node Slurm on this machine, for trying `pipeline submit` and for
# tests that need sbatch/srun: Debian's slurm-wlm and munge, run as root
# without systemd or cgroups (see ../shared/SLURM.md for what was checked).
#
#   scripts/slurm-local.sh start    # install if needed, configure, start; waits for the node
#   scripts/slurm-local.sh stop
#   scripts/slurm-local.sh status
set -euo pipefail
cmd="${1:-status}"
log() { printf '[slurm] %s\n' "$*" >&2; }
SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"

stop() {
  for pid in /run/slurmd.pid /run/slurmctld.pid; do
    [[ -f $pid ]] && $SUDO kill "$(cat "$pid")" 2>/dev/null || true
  done
  $SUDO pkill -x munged 2>/dev/null || true
}

case "$cmd" in
  stop) stop; log "stopped"; exit 0 ;;
  status) sinfo 2>&1 || true; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  log "installing slurm-wlm and munge"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends slurm-wlm munge >/dev/null
fi

host="$(hostname -s)"
cpus="$(nproc)"
mem_mib=$(( $(awk '/MemTotal/ {print int($2 / 1024)}' /proc/meminfo) - 1024 ))
$SUDO mkdir -p /etc/munge /var/spool/slurmctld /var/spool/slurmd /var/log/slurm /run/munge
if [[ ! -s /etc/munge/munge.key ]]; then
  $SUDO dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
fi
$SUDO chown munge:munge /etc/munge/munge.key /run/munge 2>/dev/null || true
$SUDO chmod 400 /etc/munge/munge.key
conf="$(cat <<CONF
# Written by scripts/slurm-local.sh: one node, root, no cgroups.
ClusterName=local
SlurmctldHost=$host
SlurmUser=root
AuthType=auth/munge
# A requeued job waits this long before it starts again (default 120 s);
# short here so the time-limit test resumes quickly.
AuthInfo=cred_expire=10
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=$host CPUs=$cpus RealMemory=$mem_mib State=UNKNOWN
PartitionName=local Nodes=$host Default=YES MaxTime=INFINITE State=UP
CONF
)"
printf '%s\n' "$conf" | $SUDO tee /etc/slurm/slurm.conf >/dev/null
# A cgroup.conf makes slurmd want cgroups, which these containers lack.
$SUDO rm -f /etc/slurm/cgroup.conf

stop
$SUDO munged --force 2>/dev/null
# -c: start without the jobs a previous run left queued (a requeued or
# dependent job would take the node again, and a test waiting for it to be
# idle would wait in vain).
$SUDO slurmctld -c
$SUDO slurmd
for _ in $(seq 1 30); do
  if sinfo -h -o '%t' 2>/dev/null | grep -qx idle; then
    log "node $host idle: $cpus CPUs, $mem_mib MiB"
    exit 0
  fi
  sleep 1
done
log "the node did not come up; see /var/log/slurm/"
sinfo || true
exit 1
