"""This process's resident memory and CPU time, read by the capacity, transport and memory runs."""

from __future__ import annotations

import resource


def rss_mb() -> float:
    """Resident set size now, in MiB (from /proc; 0.0 where there is none)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def cpu_s() -> float:
    """CPU seconds this process has used so far, user and system, all threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
