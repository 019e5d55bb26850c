"""``return_freed_memory``: after it, a large freed block goes back to the system at once (glibc, Linux)."""

import subprocess
import sys
import textwrap

import pytest

# In a fresh process, blocks of 48, 24 and 24 MB allocated, touched and freed one after the other: glibc
# serves the first two with their own pages and raises its threshold on freeing them, so by default the third
# comes from the heap, whose pages stay. Prints the resident memory (MB) the third left behind.
PROBE = textwrap.dedent(
    """
    import ctypes, sys
    from xcalab.runtime import return_freed_memory
    if sys.argv[1] == "on":
        assert return_freed_memory()
    libc = ctypes.CDLL("libc.so.6")
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    def rss():
        for line in open("/proc/self/status"):
            if line.startswith("VmRSS"):
                return int(line.split()[1]) / 1024
    for size in (48 << 20, 24 << 20, 24 << 20):
        before = rss()
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)
    print(rss() - before)
    """
)


def left_behind(mode: str) -> float:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(done.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (Linux)")
def test_a_freed_block_goes_back_to_the_system():
    # glibc's default keeps the third block's 24 MB; with the fixed threshold they are returned.
    assert left_behind("off") > 20
    assert left_behind("on") < 4
