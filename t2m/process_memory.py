"""Process memory probes (resident set size): t2m's one way to say how much memory a process used.

Linux's ``/proc/self/status`` ``VmHWM`` first, because ``getrusage``'s ``ru_maxrss`` survives fork + exec
(a spawned worker would report its parent's peak); ``getrusage`` elsewhere (KB on Linux, bytes on macOS).
"""

from __future__ import annotations

import os
import resource
import sys


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, in MiB, rounded to 0.1."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024 if sys.platform == "darwin" else 1024), 1)


def current_rss_mb() -> float | None:
    """Resident memory of this process now, in MiB; None where /proc is missing and psutil is not installed."""
    try:
        with open("/proc/self/statm") as handle:
            return round(int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20, 1)
    except (OSError, ValueError, IndexError):
        try:
            import psutil

            return round(psutil.Process().memory_info().rss / 2**20, 1)
        except ImportError:
            return None
