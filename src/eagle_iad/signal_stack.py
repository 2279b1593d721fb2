"""A thread's alternate signal stack, kept against a native library that replaces it and frees it later.

Why: Python runs its signal handlers' C part on the thread's alternate stack (``SA_ONSTACK``), and so does
faulthandler's crash report. OpenVINO's CPU plugin, as a ``Core`` loads it, makes a buffer of its own the calling
thread's alternate stack, and frees it when that ``Core`` goes, putting the old one back only on the thread that
lets go of it last. A graph compiled on one thread and released on another (a model cache emptied by a request,
the garbage collector) leaves the first thread's alternate stack pointing at freed memory: the next SIGTERM or
Ctrl-C it takes is a bare segmentation fault, with no report (faulthandler runs on that stack too). A test run
ended so, at a test that sent its own process SIGTERM, hundreds of tests after the one that compiled a graph; a
service with the OpenVINO runtime would crash instead of stopping. :func:`keeps_signal_stack` puts the thread's
own stack back as soon as the library returns: the plugin's buffer is then no thread's stack, and freeing it
harms nothing.

Linux only (glibc and musl lay ``stack_t`` out as pointer, flags, size; the BSDs and macOS as pointer, size, flags);
elsewhere it does nothing (OpenVINO's plugin swaps the stack on Linux).
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator
from typing import Any


class _Stack(ctypes.Structure):
    """Linux's ``stack_t`` (glibc and musl alike: pointer, flags, size)."""

    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


def _sigaltstack() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).sigaltstack
    except (OSError, TypeError, AttributeError):  # no C library by that name (Windows), or no sigaltstack in it
        return None
    function.argtypes = [ctypes.POINTER(_Stack), ctypes.POINTER(_Stack)]
    function.restype = ctypes.c_int
    return function


#: libc's ``sigaltstack``, typed; None where there is none.
_SIGALTSTACK = _sigaltstack()


def signal_stack() -> tuple[int, int, int] | None:
    """The calling thread's alternate signal stack as ``(address, flags, size)``; None where it cannot be read."""
    if _SIGALTSTACK is None:
        return None
    current = _Stack()
    if _SIGALTSTACK(None, ctypes.byref(current)) != 0:
        return None
    return int(current.ss_sp or 0), int(current.ss_flags), int(current.ss_size)


@contextlib.contextmanager
def keeps_signal_stack() -> Iterator[None]:
    """Run the block, then give the calling thread back the alternate signal stack it had before (see the
    module's doc: a library that replaced it may free its own later, from another thread)."""
    if _SIGALTSTACK is None:
        yield
        return
    before = _Stack()
    if _SIGALTSTACK(None, ctypes.byref(before)) != 0:
        yield
        return
    try:
        yield
    finally:
        after = _Stack()
        changed = _SIGALTSTACK(None, ctypes.byref(after)) != 0 or (after.ss_sp, after.ss_size) != (
            before.ss_sp,
            before.ss_size,
        )
        if changed:
            restored = _Stack(before.ss_sp, before.ss_flags & ~1, before.ss_size)  # SS_ONSTACK is not a setting
            _SIGALTSTACK(ctypes.byref(restored), None)
