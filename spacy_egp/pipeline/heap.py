"""Bounded memory in long trainings: glibc's mmap threshold, fixed once training starts.

Training allocates and frees band-sized numpy arrays (T tokens x W widths x K
labels, megabytes each, a different size every batch) next to a transformer's
torch tensors. glibc serves a block of at least its mmap threshold with mmap
and gives it back to the OS when freed, but it raises that threshold to the
size of every such block freed (up to 32 MiB). From then on these blocks come
from the heap, whose free pieces of ever-changing sizes are not given back:
a CLUENER training of EGP on me5s-zh-char (`benchmark compare cluener --tok2vec
me5s`) grew to 24 GB of RSS within about 1,000 steps and was killed by the OOM
killer. With the threshold fixed (what MALLOC_MMAP_THRESHOLD_ does) the same
training's RSS stays flat (README, "Memory in long trainings").
"""

import ctypes
import os
import sys

# glibc's mallopt parameter M_MMAP_THRESHOLD (malloc.h), and its default value, now fixed
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024
# what a user sets to choose the threshold (or keep glibc's dynamic one) themselves
USER_SETTING = "MALLOC_MMAP_THRESHOLD_"

_fixed = False


def fix_mmap_threshold() -> bool:
    """Fix glibc's mmap threshold at 128 KiB, once per process, unless the user set MALLOC_MMAP_THRESHOLD_.

    RETURNS (bool): Whether the threshold is fixed by this call (False on a
        second call, without glibc, or when the user chose a setting).
    """
    global _fixed
    if _fixed or not sys.platform.startswith("linux") or USER_SETTING in os.environ:
        return False
    _fixed = True
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library with mallopt in this process
        return False
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
