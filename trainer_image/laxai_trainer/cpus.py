"""CPUs this process may run on, and the warning when num_workers asks for more.

num_workers keeps its meaning (DataLoader worker processes); a value above the CPUs the
trainer may use only adds processes that compete for them (the seed's 8 on a 2-core
laptop: 9 processes, 1.3-1.8 images/s), so the trainer says so in its log and status.
"""

from __future__ import annotations

import os


def available_cpus() -> int:
    """CPUs in this process's affinity mask (what a cgroup cpuset or taskset allows), else os.cpu_count()."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def workers_warning(num_workers: int, cpus: int) -> str | None:
    """A one-line warning when num_workers exceeds the CPUs available, else None."""
    if num_workers <= cpus:
        return None
    return (f"num_workers={num_workers} exceeds the {cpus} CPU(s) available: {num_workers + 1} processes share "
            f"them and loading slows down; set training_kwargs.num_workers to {max(cpus - 1, 0)} or less")
