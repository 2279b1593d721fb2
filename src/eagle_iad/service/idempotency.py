"""Exactly-once uploads: an ``Idempotency-Key`` names one upload, and the history stores one record per key.

Why: a console reloaded while an image is being inspected sends the image again (its queue cannot know
whether the first request arrived), and a client retrying after a dropped connection does the same.
Without a key each try is a record, and the dashboard, the threshold tuner and the reject rate count the
part twice. With one, the service answers a repeat with the record the first try made, as Stripe's API
and the IETF draft "The Idempotency-Key HTTP Header Field" do:

- a key already stored with the same request answers with the stored record (header
  ``Idempotent-Replayed: true``), without inspecting or counting again;
- a key stored with a different request (another image, category, question) is refused with 422: a
  client bug that must not silently return another image's verdict;
- a key whose first request is still running waits for it, then answers as above (or, if the first
  failed and stored nothing, runs itself): a reload mid-inspection gets the one record.

The key, a fingerprint of the request and the record id are written in the record's own transaction
(``idempotency`` table, schema 5), so a record and its key are stored together or not at all.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from eagle_iad.mllm.serving import ApiError

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"

#: Longest key accepted: a UUID is 36 characters; Stripe allows 255.
MAX_KEY_CHARS = 255
_KEY = re.compile(rf"[\x21-\x7e]{{1,{MAX_KEY_CHARS}}}")


def check_key(value: str | None) -> str | None:
    """The header's key (``None`` without one), or a 400 naming what a key may be."""
    if value is None:
        return None
    if not _KEY.fullmatch(value):
        raise ApiError(
            400,
            f"{HEADER} must be 1 to {MAX_KEY_CHARS} visible ASCII characters (e.g. a UUID), not {value[:40]!r}",
            code="bad_idempotency_key",
        )
    return value


def fingerprint(category: str, data: bytes, question: str | None, attention: bool) -> str:
    """What a repeat must send again under the same key: the image's bytes and what was asked of it."""
    digest = hashlib.sha256()
    image = hashlib.sha256(data).digest()
    for part in (category.encode(), image, (question or "").encode(), b"1" if attention else b"0"):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


def reused_error(key: str) -> ApiError:
    return ApiError(
        422,
        f"{HEADER} {key[:40]!r} was already used for another request (a different image, category or "
        "question); send a new key with each upload",
        code="idempotency_key_reused",
    )


class InFlight:
    """Keys whose first request is running in this process; a repeat waits for it instead of running too."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Event] = {}

    @asynccontextmanager
    async def claim(self, key: str) -> AsyncIterator[None]:
        """Hold ``key`` while the block runs; waits (without a time limit of its own: the first request's
        inspection has the service's) while another request holds it."""
        while (running := self._running.get(key)) is not None:
            await running.wait()
        event = self._running[key] = asyncio.Event()
        try:
            yield
        finally:
            del self._running[key]
            event.set()

    def running(self, key: str) -> bool:
        return key in self._running
