"""How much of the machine something other than the bench used while it measured (a shared box)."""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent not idle since boot (/proc/stat)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in fields[:8])
    return (user + nice + system + irq + softirq + steal) / _TICK


def tree_cpu_seconds(roots: list[int]) -> float:
    """CPU seconds (user + system) of the processes `roots` and all their descendants, alive now."""
    parent: dict[int, int] = {}
    cpu: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid = int(entry.name)
        parent[pid] = int(fields[1])
        cpu[pid] = (int(fields[11]) + int(fields[12])) / _TICK
    wanted = set(roots)
    grew = True
    while grew:
        more = {pid for pid, ppid in parent.items() if ppid in wanted and pid not in wanted}
        wanted |= more
        grew = bool(more)
    return sum(cpu.get(pid, 0.0) for pid in wanted)


def _own_seconds() -> float:
    """This process and its waited-for children (the wrk runs)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + children.ru_utime + children.ru_stime


@dataclass
class Interference:
    seconds: float = 0.0  # wall time measured
    other_cpu_s: float = 0.0  # busy CPU of processes that are not the bench's
    share: float = 0.0  # other_cpu_s / (seconds x cores)

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in vars(self).items()}


@contextmanager
def interference(roots: Callable[[], list[int]], cores: int) -> Iterator[Interference]:
    """Measure, over the block, the CPU used by everything except `roots` (trees), us and wrk.

    `roots` are the servers and the bench's PostgreSQL (their descendants are counted as ours).
    A process of ours that exits inside the block takes its CPU with it and is counted as other.
    """
    result = Interference()
    started, busy, ours, own = (
        time.perf_counter(),
        machine_busy_seconds(),
        tree_cpu_seconds(roots()),
        _own_seconds(),
    )
    try:
        yield result
    finally:
        result.seconds = time.perf_counter() - started
        ours_used = tree_cpu_seconds(roots()) - ours + _own_seconds() - own
        result.other_cpu_s = max(0.0, machine_busy_seconds() - busy - ours_used)
        result.share = result.other_cpu_s / (result.seconds * cores) if result.seconds else 0.0
