"""A thread's alternate signal stack, kept (eagle_iad/signal_stack.py): a library that replaces it with a buffer it
frees later, from another thread, turned the next SIGTERM into a bare segmentation fault."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import wait_s

import eagle_iad
from eagle_iad.signal_stack import _SIGALTSTACK, _Stack, keeps_signal_stack, signal_stack

pytestmark = pytest.mark.skipif(_SIGALTSTACK is None, reason="no sigaltstack in this C library (not Linux)")


def test_the_stack_a_block_replaced_is_put_back_and_one_it_kept_is_left() -> None:
    before = signal_stack()
    assert before is not None
    buffer = ctypes.create_string_buffer(65536)
    with keeps_signal_stack():  # as OpenVINO's plugin does: its own buffer, made the thread's stack
        assert _SIGALTSTACK(ctypes.byref(_Stack(ctypes.addressof(buffer), 0, 65536)), None) == 0
        assert signal_stack() == (ctypes.addressof(buffer), 0, 65536)
    assert signal_stack() == before
    with keeps_signal_stack():
        pass
    assert signal_stack() == before
    with pytest.raises(ValueError, match="inside"), keeps_signal_stack():  # put back however the block ends
        assert _SIGALTSTACK(ctypes.byref(_Stack(ctypes.addressof(buffer), 0, 65536)), None) == 0
        raise ValueError("inside")
    assert signal_stack() == before


def test_a_graph_compiled_on_one_thread_and_freed_on_another_leaves_sigterm_handled(tmp_path: Path) -> None:
    """The crash itself, in a process of its own: a graph compiled by OpenVINO on the main thread and released on
    another, then SIGTERM to the main thread, whose Python handler must run (it was a segmentation fault: the
    plugin had made its buffer the main thread's stack, and freed it from the other thread)."""
    pytest.importorskip("openvino", reason="the deploy extra is not installed")
    onnx = pytest.importorskip("onnx", reason="the deploy extra is not installed")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "relu",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])  # fmt: skip
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), tmp_path / "r.onnx")
    code = textwrap.dedent(f"""
        import faulthandler, gc, signal, threading, time
        faulthandler.enable()
        from eagle_iad.expert.runtime import compile_openvino
        held = [compile_openvino({str(tmp_path / "r.onnx")!r})]
        def release():
            held.clear()
            gc.collect()
        other = threading.Thread(target=release)
        other.start()
        other.join()
        junk = [bytearray(20000) for _ in range(2000)]  # the freed buffer reused
        signal.signal(signal.SIGTERM, lambda *_: print("handled", flush=True))
        signal.pthread_kill(threading.main_thread().ident, signal.SIGTERM)
        time.sleep(0.2)
        print("went on", flush=True)
    """)
    env = {**os.environ, "PYTHONPATH": str(Path(eagle_iad.__file__).parents[1])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=wait_s(120), env=env)
    assert (done.returncode, done.stdout) == (0, "handled\nwent on\n"), done.stderr[-2000:]
