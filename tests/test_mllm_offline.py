"""Loading an MLLM by hub id without a network: at once, one line, naming the id and the way out.

Before: huggingface_hub retried five times (ten warning lines, about 25 s) whether or not EAGLE_OFFLINE
was set, then the CLI printed transformers' two-line message with a literal ``\\n``.
"""

from __future__ import annotations

import logging
import socket
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eagle_iad.cli import main
from eagle_iad.errors import ConfigError

pytest.importorskip("transformers")

from eagle_iad.mllm import load_backend
from eagle_iad.mllm.hf import hub_unreachable, quiet_hub_retries

#: Not on the hub, and so in nobody's cache.
MISSING_ID = "eagle-iad-tests/no-such-mllm"
PROXIES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")


@pytest.fixture
def no_offline_variables(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """A user's shell: none of the offline switches (conftest sets HF_HUB_OFFLINE, read at import)."""
    from huggingface_hub import constants

    for name in ("EAGLE_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", *PROXIES):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return monkeypatch


def _closed_port() -> int:
    """A loopback port nothing listens on (connections are refused at once)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_eagle_offline_fails_at_once_in_one_line(
    no_offline_variables: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    no_offline_variables.setenv("EAGLE_OFFLINE", "1")
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(image)
    start = time.perf_counter()
    code = main(["inspect", str(image), "--mllm", f"hf:{MISSING_ID}", "--condition", "baseline"])
    elapsed = time.perf_counter() - start
    err = capsys.readouterr().err
    assert code == 2
    assert elapsed < 8, f"EAGLE_OFFLINE must not wait for the network ({elapsed:.1f} s)"
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("eagle: error: "), err  # no retry lines before it
    assert "\\n" not in err  # transformers' newline, printed escaped before
    assert MISSING_ID in err and "EAGLE_OFFLINE is set" in err and "hf:/path/to/model" in err


def test_unreachable_hub_fails_fast_with_the_fix_named(no_offline_variables: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    no_offline_variables.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load_backend(f"hf:{MISSING_ID}")
    elapsed = time.perf_counter() - start
    message = str(caught.value)
    assert elapsed < 8, f"an unreachable hub must fail at once, not after retries ({elapsed:.1f} s)"
    assert "\n" not in message and MISSING_ID in message and "cannot be reached" in message
    assert "EAGLE_OFFLINE=1" in message and "hf:/path/to/model" in message


def test_hub_probe(no_offline_variables: pytest.MonkeyPatch) -> None:
    reason = hub_unreachable(f"http://127.0.0.1:{_closed_port()}", timeout_s=2)
    assert reason is not None and "cannot be reached" in reason
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        assert hub_unreachable(f"http://127.0.0.1:{server.getsockname()[1]}", timeout_s=2) is None
    no_offline_variables.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    assert hub_unreachable(f"http://127.0.0.1:{_closed_port()}", timeout_s=2) is None  # only the proxy can tell


def test_hub_retry_warnings_collapse_to_one_line() -> None:
    logger = logging.getLogger("huggingface_hub.utils._http")
    seen: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    try:
        with quiet_hub_retries():
            for attempt in range(1, 6):
                logger.warning("'[Errno -2] Name or service not known' thrown while requesting HEAD https://x/y")
                logger.warning(f"Retrying in {2**attempt}s [Retry {attempt}/5].")
        logger.warning("after the load: untouched")
    finally:
        logger.removeHandler(handler)
    assert seen == ["'[Errno -2] Name or service not known' thrown while requesting HEAD https://x/y",
                    "after the load: untouched"]  # fmt: skip
