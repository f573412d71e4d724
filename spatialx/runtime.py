"""Process-wide memory settings for network runs (a network method applies them when it is built).

A network forward allocates and frees gigabytes of short-lived activations. Two allocator behaviours decide what
that costs on Linux, and both are set here before torch allocates anything (classical methods, whose numpy
temporaries are faulted in afresh under a fixed threshold, measured 10-30 % slower with them, run without):

* glibc raises its mmap threshold to the size of every large block freed (up to 32 MiB), so later tensors below it
  come from the heap, which fragments and does not shrink: peak RSS crept by ~430 MB over the tiles of a 1024 px
  LE-Mamba run. A fixed threshold (:data:`MMAP_THRESHOLD`) keeps large tensors in their own mappings, returned to
  the system when freed (measured no slower).
* torch backs large CPU tensors with transparent huge pages when ``THP_MEM_ALLOC_ENABLE`` is set: fresh 4 KiB pages
  fault one by one (3-4x slower fresh allocations measured here).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

#: Allocations from this size up get their own mapping (glibc's ``M_MMAP_THRESHOLD``).
MMAP_THRESHOLD = 4 << 20
_M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter number


def configure_memory() -> None:
    """Apply the settings above to this process (only what the platform has; never raises)."""
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): its allocator's own behaviour stands
        pass


def use_threads(threads: int) -> None:
    """Run this process's compute on ``threads`` cores: the OpenMP/MKL/numba pools (unless the environment already
    says otherwise; they read it when first loaded, so call this before importing torch) and torch's intra-op
    threads (numba's kernels follow torch's count, :mod:`spatialx.models.scan_cpu`)."""
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(variable, str(threads))
    import torch

    torch.set_num_threads(threads)
