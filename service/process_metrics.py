"""What ``/metrics`` says about the process itself and its build, read at scrape time: the
names the Prometheus client libraries use (``process_*``), so existing dashboards and alert
rules work, and ``pixhook_build_info`` (constant 1, labelled with the version) so a deploy
shows up as a change of label."""

from __future__ import annotations

import os
import platform
import resource
import time
from pathlib import Path
from typing import Final

from service import __version__

#: When this process started (close enough: when this module was first imported).
STARTED_AT: Final = time.time()
_PAGE_BYTES: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def build_labels() -> dict[str, str]:
    return {"version": __version__, "python": platform.python_version()}


def process_readings() -> dict[str, float]:
    """CPU seconds, resident memory, open file descriptors (and their limit), start time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    readings = {"process_cpu_seconds_total": usage.ru_utime + usage.ru_stime,
                "process_start_time_seconds": STARTED_AT,
                "process_max_fds": float(resource.getrlimit(resource.RLIMIT_NOFILE)[0])}
    try:  # Linux: the current RSS (getrusage gives only the peak)
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        readings["process_resident_memory_bytes"] = float(pages * _PAGE_BYTES)
        readings["process_open_fds"] = float(len(os.listdir("/proc/self/fd")))
    except (OSError, IndexError, ValueError):
        readings["process_resident_memory_bytes"] = float(usage.ru_maxrss * 1024)
    return readings
