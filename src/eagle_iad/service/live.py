"""The history as it grows: ``GET /v1/inspections/events`` streams each new inspection as it is stored.

Why a feed: a shift watches History while others (and the line's stations) inspect; without one, the
page shows what was there when it was opened. The feed polls the history's storage number rather than
hooking the writers, so an inspection stored by any writer (an upload, a station, another process on
the same history file) is seen, and a reconnecting client resumes from its ``Last-Event-ID`` (the
storage number) with nothing lost or repeated. Each event is small (who, what, when); the page fetches
the records it shows.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable

from starlette.concurrency import run_in_threadpool

from eagle_iad.service.context import ServiceState

#: How often the feed looks for new inspections (seconds): a person watching sees them within this.
POLL_S = 1.0
#: A comment line this often keeps proxies from closing a quiet feed and lets a gone client be noticed.
HEARTBEAT_S = 15.0
#: Events read per look: a burst (a station's backlog) is sent in pieces, in order.
BATCH = 100
#: The comment a feed ends with once its caller's key was revoked (or its role no longer reads).
ACCESS_ENDED = b": access ended: the key was revoked or its role no longer allows this feed\n\n"


def after_from(last_event_id: str | None, state: ServiceState) -> int:
    """Where a feed starts: after the client's ``Last-Event-ID`` when it resumes, else after the newest now."""
    value = (last_event_id or "").strip()
    newest = state.store.last_seq()
    if value.isascii() and value.isdigit() and len(value) <= 18:
        return min(int(value), newest)  # an id from another history file (replaced, another instance): from now
    return newest


async def inspection_events(
    state: ServiceState, after: int, category: str | None, allowed: Callable[[], bool] | None = None
) -> AsyncIterator[bytes]:
    """``text/event-stream`` frames: one ``inspection`` event per stored inspection after ``after``.

    Ends when the service stops (so a stop is not held up by open feeds); the client reconnects to the
    next service with its ``Last-Event-ID``. ``allowed`` (:func:`eagle_iad.service.access.still_allowed`)
    is asked before each look: once it says no (the key was revoked) the feed ends, sending nothing more;
    the client's reconnection is then refused (401).
    """
    # The opening frame carries the position too, so a client that saw no event yet resumes from here.
    yield f"retry: 2000\nid: {after}\n: feed open\n\n".encode()
    quiet_since = time.monotonic()
    while not state.stopping.is_set():
        if allowed is not None and not await run_in_threadpool(allowed):
            yield ACCESS_ENDED
            return
        rows = await run_in_threadpool(state.store.since, after, category, BATCH)
        for seq, row in rows:
            data = {"seq": seq, "id": row.id, "time": row.time, "category": row.category,
                    "image_name": row.image_name, "decision": row.decision, "station": row.station}  # fmt: skip
            yield f"id: {seq}\nevent: inspection\ndata: {json.dumps(data)}\n\n".encode()
            after = seq
        if rows:
            quiet_since = time.monotonic()
            if len(rows) == BATCH:
                continue  # more are waiting: no pause
        elif time.monotonic() - quiet_since >= HEARTBEAT_S:
            yield f"id: {after}\n: still here\n\n".encode()
            quiet_since = time.monotonic()
        await asyncio.sleep(POLL_S)
