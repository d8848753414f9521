"""Runs a command and writes, as JSON into OUT, its wall seconds and the peak
of the resident memory summed over its whole process tree (the command, its
worker processes, an MPI job's ranks), sampled every 20 ms from /proc: what a
node must hold for it, where /usr/bin/time reports one process's peak.

    peak_rss.py OUT.json COMMAND [ARG...]
"""

import json
import os
import subprocess
import sys
import time


def tree(pid):
    """`pid` and all its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for t in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{t}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


out, cmd = sys.argv[1], sys.argv[2:]
t0 = time.perf_counter()
child = subprocess.Popen(cmd)
peak = 0
while child.poll() is None:
    peak = max(peak, sum(rss_kib(p) for p in tree(child.pid)))
    time.sleep(0.02)
seconds = time.perf_counter() - t0
with open(out, "w") as f:
    json.dump({"seconds": seconds, "peak_rss_mib": peak / 1024, "exit": child.returncode}, f)
sys.exit(child.returncode)
