"""How each station is doing, from its tables: throughput, backlog, latency, sinks, dead letters, warnings.

Read from the history file with a read-only connection, so ``eagle station status`` answers while
``eagle station run`` holds the state folder, and says the same after it stopped. The end-to-end
latency of an image is from when the station first saw it to when its last sink confirmed delivery
(to when its verdict was stored, for a station without sinks); the percentiles are over the last
1,000 images whose deliveries all ended.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from eagle_iad.history import open_backend
from eagle_iad.history.backend import Connection
from eagle_iad.history.sqlite import SqliteConnection, SqliteHistory
from eagle_iad.station.config import StationConfig

#: Images the latency percentiles are computed over (the most recent).
LATENCY_WINDOW = 1000
#: Seconds the images/s figure is averaged over.
RATE_WINDOW_S = 60.0


def open_read_only(database: Path | str) -> Connection:
    """A connection that reads the history: SQLite read-only (the running station keeps writing), or the
    shared database a history URL names."""
    backend = open_backend(database)
    if isinstance(backend, SqliteHistory):
        return SqliteConnection(sqlite3.connect(f"file:{backend.path}?mode=ro", uri=True))
    return backend.connect()


@dataclass(frozen=True)
class StationFacts:
    """What the figures need to know of a station besides its tables: from its running configuration, or
    (a station another replica runs) from the spec kept in the history."""

    name: str
    category: str
    source: str
    #: Images waiting in its source (``None``: not visible from this process).
    backlog: int | None
    #: ``(name, kind)`` of each sink.
    sinks: list[tuple[str, str]]
    backlog_limit: int
    deadline_s: float

    @classmethod
    def of(cls, config: StationConfig) -> StationFacts:
        return cls(config.name, config.category, config.source.describe(), config.source.backlog(),
                   [(s.sink.name, s.sink.kind) for s in config.sinks], config.backlog_limit,
                   config.deadline_s)  # fmt: skip


def station_status(db: Connection, config: StationConfig) -> dict[str, Any]:
    """One station's figures (the JSON ``eagle station status`` prints)."""
    return station_figures(db, StationFacts.of(config))


def station_figures(db: Connection, config: StationFacts) -> dict[str, Any]:
    """One station's figures from its tables and ``config``."""
    name = config.name
    now = time.time()

    def one(sql: str, *params: Any) -> Any:
        return db.execute(sql, params).fetchone()[0]

    inspected = int(one("SELECT COUNT(*) FROM station_intake WHERE station = ? AND state = 'done'", name))
    failed = int(one("SELECT COUNT(*) FROM station_intake WHERE station = ? AND state = 'failed'", name))
    recent = int(one("SELECT COUNT(*) FROM station_intake WHERE station = ? AND time >= ?", name, now - RATE_WINDOW_S))
    if config.sinks:
        rows = db.execute(
            "SELECT MAX(o.delivered) - i.appeared FROM station_intake i JOIN outbox o "
            "ON o.station = i.station AND o.record_id = i.record_id WHERE i.station = ? AND i.state = 'done' "
            "GROUP BY i.record_id, i.appeared HAVING SUM(CASE WHEN o.state <> 'delivered' THEN 1 ELSE 0 END) = 0 "
            "ORDER BY MAX(o.delivered) DESC LIMIT ?",
            (name, LATENCY_WINDOW),
        ).fetchall()
    else:
        rows = db.execute(
            "SELECT time - appeared FROM station_intake WHERE station = ? AND state = 'done' ORDER BY time DESC "
            "LIMIT ?", (name, LATENCY_WINDOW),
        ).fetchall()  # fmt: skip
    latencies = np.array([float(row[0]) for row in rows if row[0] is not None])
    latency = (
        {f"p{q}": round(float(np.percentile(latencies, q)), 3) for q in (50, 95, 99)} if latencies.size else None
    )
    sinks: dict[str, dict[str, Any]] = {}
    for sink_name, kind in config.sinks:
        counts = dict(db.execute("SELECT state, COUNT(*) FROM outbox WHERE station = ? AND sink = ? GROUP BY state",
                                 (name, sink_name)).fetchall())  # fmt: skip
        error = db.execute(
            "SELECT last_error FROM outbox WHERE station = ? AND sink = ? AND last_error IS NOT NULL "
            "ORDER BY seq DESC LIMIT 1", (name, sink_name),
        ).fetchone()  # fmt: skip
        sinks[sink_name] = {
            "kind": kind,
            "pending": int(counts.get("pending", 0)),
            "delivered": int(counts.get("delivered", 0)),
            "dead_letters": int(counts.get("dead", 0)),
            "last_error": None if error is None else error[0],
        }
    last = db.execute(
        "SELECT name, record_id, time FROM station_intake WHERE station = ? AND state = 'done' ORDER BY time DESC "
        "LIMIT 1", (name,),
    ).fetchone()  # fmt: skip
    last_verdict = None
    if last is not None:
        decision = db.execute("SELECT decision, score FROM inspections WHERE id = ?", (last[1],)).fetchone()
        last_verdict = {"image": last[0], "record_id": last[1], "time": last[2],
                        "decision": None if decision is None else decision[0],
                        "score": None if decision is None else decision[1]}  # fmt: skip
    backlog = config.backlog or 0
    warnings = []
    if config.backlog is None:
        warnings.append("backlog not visible here: the station runs on another replica (its figures are shared)")
    if backlog > config.backlog_limit:
        warnings.append(f"backlog {backlog} is over the limit {config.backlog_limit}")
    if latency is not None and latency["p95"] > config.deadline_s:
        warnings.append(f"p95 latency {latency['p95']:g} s is over the deadline {config.deadline_s:g} s")
    dead = sum(s["dead_letters"] for s in sinks.values())
    if dead:
        warnings.append(f"{dead} dead letter{'' if dead == 1 else 's'} (eagle station retry requeues them)")
    return {
        "station": name,
        "category": config.category,
        "source": config.source,
        "inspected": inspected,
        "failed": failed,
        "backlog": backlog,
        "images_per_s": round(recent / RATE_WINDOW_S, 3),
        "latency_s": latency,
        "last_verdict": last_verdict,
        "sinks": sinks,
        "warnings": warnings,
    }
