"""Readings of the host: usable cores, and for the stats topic memory and thermal zones
(where readable); the daemon's allocator setting."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import resource
import time
from pathlib import Path

THERMAL_ROOT = Path("/sys/class/thermal")
CGROUP_ROOT = Path("/sys/fs/cgroup")

#: glibc's mallopt parameter numbers (malloc.h).
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8

#: Allocations from this size up get their own mapping, returned to the kernel when freed.
MMAP_THRESHOLD_BYTES = 256 * 1024

log = logging.getLogger(__name__)


def tune_malloc(arenas: int = 2, mmap_threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Cap glibc's malloc arenas and fix its mmap threshold before the daemon starts threads.

    glibc gives each thread that allocates its own arena (up to 8 per core), and numpy's
    per-frame temporaries on every camera's capture, loop and frame threads then keep tens of
    MB each resident: measured here, 4 synthetic cameras went from 1.51x to 1.38x the peak RSS
    of one. glibc also raises its mmap threshold each time a large block is freed, so the
    frame-sized buffers that follow land in the arenas and stay resident after they are freed
    (each camera's start-up temporaries, sampled-frame copies): a fixed threshold returns them
    (4 cameras: 1.30x -> 1.24x of one). Equivalent to MALLOC_ARENA_MAX and
    MALLOC_MMAP_THRESHOLD_, which environment settings still override. Returns False where the
    C library is not glibc (nothing to do).
    """
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        libc = None
    mallopt = getattr(libc, "mallopt", None)
    if mallopt is None:
        return False
    for variable, parameter, value in (("MALLOC_ARENA_MAX", M_ARENA_MAX, arenas),
                                       ("MALLOC_MMAP_THRESHOLD_", M_MMAP_THRESHOLD,
                                        mmap_threshold)):
        if variable not in os.environ and mallopt(parameter, value) != 1:
            log.debug("mallopt(%d, %d) was refused", parameter, value)
            return False
    return True


def usable_cores() -> int:
    """CPU cores this process may run on (a container's or taskset's limit, not the host's)."""
    return len(os.sched_getaffinity(0))


def physical_cores(cpus: Path = Path("/sys/devices/system/cpu")) -> int:
    """Physical cores among those this process may run on: hyper-threads of one core count
    once (their `topology/thread_siblings_list` is the same). Every usable CPU counts where
    the topology is not readable."""
    usable = os.sched_getaffinity(0)
    cores: set[str] = set()
    for cpu in usable:
        try:
            siblings = (cpus / f"cpu{cpu}" / "topology" / "thread_siblings_list").read_text()
        except OSError:
            return len(usable)
        cores.add(siblings.strip())
    return max(1, len(cores))


def available_memory_bytes(meminfo: Path = Path("/proc/meminfo"),
                           cgroups: Path = Path("/proc/self/cgroup"),
                           cgroup_root: Path = CGROUP_ROOT) -> int | None:
    """Memory this process could still take: the kernel's MemAvailable, capped by its memory
    cgroup's limit less what the cgroup uses (a container's, or a systemd unit's MemoryMax);
    None where neither is readable."""
    available = None
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except (OSError, ValueError, IndexError):
        pass
    room = _cgroup_room(cgroups, cgroup_root)
    if room is not None:
        available = room if available is None else min(available, room)
    return available


#: (folder under the cgroup root, limit file, usage file) of cgroup v2 and of v1's memory
#: controller; v2's limit reads "max" when there is none, v1's a huge number.
_CGROUP_MEMORY_FILES = {"v2": ("", "memory.max", "memory.current"),
                        "v1": ("memory", "memory.limit_in_bytes", "memory.usage_in_bytes")}


def _cgroup_room(cgroups: Path, root: Path) -> int | None:
    """Bytes this process's memory cgroup may still grow by, or None (no limit, not readable).
    A container may see its own group at the mount's root rather than at the listed path."""
    try:
        lines = cgroups.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        hierarchy, controllers, path = [*line.split(":", 2), "", ""][:3]
        version = ("v2" if hierarchy == "0" and not controllers else
                   "v1" if "memory" in controllers.split(",") else None)
        if version is None:
            continue
        mount, limit_file, usage_file = _CGROUP_MEMORY_FILES[version]
        for folder in (root / mount / path.strip().lstrip("/"), root / mount):
            try:
                limit = (folder / limit_file).read_text().strip()
                if limit == "max":
                    break
                return max(0, int(limit) - int((folder / usage_file).read_text()))
            except (OSError, ValueError):
                continue
    return None


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


def cpu_busy_elsewhere(seconds: float, stat: Path = Path("/proc/stat")) -> float | None:
    """CPUs kept busy by other processes over the next `seconds` (sampled now: 1.0 is one
    core's worth), this process's own CPU time left out; None where /proc/stat is not
    readable. Unlike the load average it sees a program started a moment ago, and forgets
    one that ended a moment ago."""
    def busy_and_total() -> tuple[float, float] | None:
        try:
            fields = [float(v) for v in stat.read_text().splitlines()[0].split()[1:9]]
        except (OSError, ValueError, IndexError):
            return None
        idle = fields[3] + fields[4]  # idle and iowait
        return sum(fields) - idle, sum(fields)

    before, own_before, began = busy_and_total(), _own_cpu_s(), time.monotonic()
    time.sleep(seconds)
    after, own_after, elapsed = busy_and_total(), _own_cpu_s(), time.monotonic() - began
    if before is None or after is None or elapsed <= 0:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    busy_s = (after[0] - before[0]) / ticks - (own_after - own_before)
    return max(0.0, busy_s / elapsed)


def _own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system
