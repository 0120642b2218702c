"""keep_freed_memory: blocks of a training step's size come from the heap and stay there."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

#: In a fresh interpreter: where a 16 MB tensor's memory comes from (glibc's mallinfo2:
#: bytes in mmapped blocks), then the page faults of allocating, filling and freeing four
#: such tensors again once the heap has grown to that.
PROBE = textwrap.dedent("""
    import ctypes, resource, sys
    import torch
    from laxai_trainer.host_memory import keep_freed_memory

    class MallInfo2(ctypes.Structure):
        _fields_ = [(name, ctypes.c_size_t) for name in
                    ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
                     "fordblks", "keepcost")]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = MallInfo2
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    before = libc.mallinfo2().hblkhd
    block = torch.empty(16 << 20, dtype=torch.uint8)
    mmapped = libc.mallinfo2().hblkhd - before
    del block

    def step():
        blocks = [torch.empty(16 << 20, dtype=torch.uint8).fill_(1) for _ in range(4)]
        del blocks

    for _ in range(3):  # the heap grows to the step's size
        step()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(5):
        step()
    print(kept, mmapped, resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults)
""")


def probe(mode: str) -> tuple[str, int, int]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}  # the source tree, as pytest's
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True, env=env).stdout
    kept, mmapped, faults = out.split()
    return kept, int(mmapped), int(faults)


@pytest.fixture(scope="module")
def glibc() -> None:
    import ctypes

    if not hasattr(ctypes.CDLL(None), "mallinfo2"):
        pytest.skip("needs glibc 2.33+ (mallinfo2)")


def test_step_sized_blocks_come_from_the_heap_and_are_reused(glibc) -> None:
    kept, mmapped, faults = probe("keep")
    assert kept == "True"
    assert mmapped == 0  # from the heap, not a fresh mmap
    assert faults < 100  # 5 rounds of 64 MB reused: no page faulted in again (16,000 without reuse)


def test_without_it_glibc_maps_a_fresh_block(glibc) -> None:
    _, mmapped, _ = probe("default")
    assert mmapped >= 16 << 20  # what keep_freed_memory changes: a fresh mmap, unmapped on free
