"""Readings of the host (edge.system) from fake /proc and cgroup files."""

from __future__ import annotations

from edge.system import available_memory_bytes

MEMINFO = "MemTotal:       24576000 kB\nMemFree:         1000000 kB\nMemAvailable:   20000000 kB\n"


def test_available_memory_is_memavailable_capped_by_the_cgroups_room(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    cgroups = tmp_path / "cgroup"
    cgroups.write_text("0::/system.slice/edge.service\n")
    unit = tmp_path / "root" / "system.slice" / "edge.service"
    unit.mkdir(parents=True)
    (unit / "memory.max").write_text("4294967296\n")  # MemoryMax=4G
    (unit / "memory.current").write_text("1073741824\n")
    readings = {"meminfo": meminfo, "cgroups": cgroups, "cgroup_root": tmp_path / "root"}
    assert available_memory_bytes(**readings) == 3 << 30  # the unit's room, not the host's
    (unit / "memory.max").write_text("max\n")
    assert available_memory_bytes(**readings) == 20_000_000 * 1024
    cgroups.write_text("")  # cgroup v1 only, or none
    assert available_memory_bytes(**readings) == 20_000_000 * 1024
    meminfo.unlink()
    assert available_memory_bytes(**readings) is None


def test_a_cgroup_v1_memory_limit_counts_too(tmp_path):
    """cgroup v1 (Docker on older hosts): the memory controller's own hierarchy; a container
    may see its group at the mount's root instead of the listed path."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(MEMINFO)
    cgroups = tmp_path / "cgroup"
    cgroups.write_text("5:cpu,cpuacct:/docker/abc\n4:memory:/docker/abc\n0::/\n")
    memory = tmp_path / "root" / "memory"
    memory.mkdir(parents=True)
    (memory / "memory.limit_in_bytes").write_text(str(2 << 30))  # seen at the mount's root
    (memory / "memory.usage_in_bytes").write_text(str(1 << 29))
    readings = {"meminfo": meminfo, "cgroups": cgroups, "cgroup_root": tmp_path / "root"}
    assert available_memory_bytes(**readings) == (2 << 30) - (1 << 29)
    (memory / "memory.limit_in_bytes").write_text("9223372036854771712")  # no limit
    assert available_memory_bytes(**readings) == 20_000_000 * 1024


def test_this_machine_has_some_memory_available():
    available = available_memory_bytes()
    assert available is not None and available > 0


def fake_topology(root, siblings: dict[int, str]):
    for cpu, listed in siblings.items():
        folder = root / f"cpu{cpu}" / "topology"
        folder.mkdir(parents=True)
        (folder / "thread_siblings_list").write_text(listed + "\n")
    return root


def test_physical_cores_count_hyper_threads_of_one_core_once(tmp_path, monkeypatch):
    """`threads = 0` becomes this count, given to ONNX Runtime explicitly (so it pins
    nothing): one a core, as its own default, among the CPUs this process may use."""
    import os

    from edge import system

    topology = fake_topology(tmp_path, {0: "0,2", 1: "1,3", 2: "0,2", 3: "1,3"})
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    assert system.physical_cores(topology) == 2
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2})  # a cpuset of one core
    assert system.physical_cores(topology) == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 4})  # cpu4 unreadable
    assert system.physical_cores(topology) == 3


def test_a_session_left_to_choose_gets_its_threads_explicitly(monkeypatch):
    from edge import ort_session

    monkeypatch.setattr(ort_session, "physical_cores", lambda: 6)
    assert ort_session.intra_op_threads(0) == 6
    assert ort_session.intra_op_threads(3) == 3
