"""Readings of the host: usable cores, and for the stats topic memory and thermal zones
(where readable)."""

from __future__ import annotations

import os
import resource
from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")


def usable_cores() -> int:
    """CPU cores this process may run on (a container's or taskset's limit, not the host's)."""
    return len(os.sched_getaffinity(0))


def memory_rss_mb() -> float:
    """Resident set size of this process in MiB (peak RSS where /proc is unavailable)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def temperatures_c(root: Path = THERMAL_ROOT) -> dict[str, float]:
    """{zone type: degrees C} for every readable thermal zone, e.g. Jetson's `cpu-thermal`,
    `gpu-thermal`; empty where the kernel exposes none (containers, most VMs)."""
    readings: dict[str, float] = {}
    for zone in sorted(root.glob("thermal_zone*")):
        try:
            kind = (zone / "type").read_text().strip().lower()
            readings[kind] = round(int((zone / "temp").read_text().strip()) / 1000, 1)
        except (OSError, ValueError):
            continue
    return readings
