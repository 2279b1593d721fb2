"""Which replica runs which station, when replicas share one history (docs/PLANT.md).

Why: a station created through ``/v1/stations`` is kept in the history's ``stations`` table, and every
replica sharing that history starts with the same table. Two replicas watching one hot folder would
inspect each file twice and deliver two verdicts. So each station runs where its lock is held
(``station:<name>`` in the database, dropped by the server when the holder dies): a replica starts the
stations whose lock it gets, and every :data:`SYNC_INTERVAL_S` it looks at the table again, taking over
the stations of a replica that died, and following pauses and deletions made through another replica.
With one service on its own SQLite file the lock is the process's own, so it runs every station, as before.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from eagle_iad.errors import EagleError
from eagle_iad.history.backend import Lease
from eagle_iad.service.context import ServiceState
from eagle_iad.station.config import StationConfig
from eagle_iad.station.outbox import StationTables, station_lock
from eagle_iad.station.runner import StationManager

#: Seconds between a replica's looks at the shared station table: the most a dead replica's stations wait
#: for another to take them over, and a pause or deletion through another replica to take effect.
SYNC_INTERVAL_S = 5.0

LOG = logging.getLogger("eagle_iad.station")


def upgrade_patch(spec: Mapping[str, Any]) -> dict[str, Any] | None:
    """The ``PATCH /v1/stations/{name}`` body that makes a kept station valid again after a check added since it
    was created, or ``None`` when no such check refuses it. Known: a webhook with an ``http://`` url and
    ``verify_tls = false`` or a ``ca_file``, accepted by earlier versions and refused now (over plain HTTP they
    did nothing, so removing them changes nothing but lets the station start)."""
    sinks = spec.get("sinks")
    if not isinstance(sinks, list):
        return None
    patches: list[dict[str, Any]] = []
    for sink in sinks:
        plain = isinstance(sink, dict) and sink.get("kind") == "webhook" and str(sink.get("url", "")).startswith(
            "http://")  # fmt: skip
        drop: dict[str, Any] = {}
        if plain and isinstance(sink, dict):
            if "verify_tls" in sink and sink["verify_tls"] is not True:
                drop["verify_tls"] = None
            if sink.get("ca_file") is not None:
                drop["ca_file"] = None
        patches.append(drop)
    while patches and not patches[-1]:
        patches.pop()
    return {"sinks": patches} if patches else None


def not_started_hint(name: str, spec: Mapping[str, Any]) -> str:
    """What to do about a kept station that did not start: it lives in the history, not in a file the user can
    edit, so the line says how to change it in place (its records, outbox and name stay), as a command."""
    patch = upgrade_patch(spec)
    if patch is not None:
        body = json.dumps(patch)
        return (
            f"; it was created through /v1/stations and is kept in the history: fix it there, keeping its "
            f"records and undelivered verdicts, with curl -X PATCH http://<service>/v1/stations/{name} "
            f"-H 'Authorization: Bearer <engineer key>' -H 'Content-Type: application/json' -d '{body}'"
        )
    return (
        f"; it was created through /v1/stations and is kept in the history: fix it there with "
        f"PATCH /v1/stations/{name} (a JSON object of the fields to change; each sink by its position in "
        '"sinks", null removes a field), or remove it with DELETE /v1/stations/{name}'
    )


class StationOwnership:
    """The stations of the ``stations`` table this replica holds, and the loop that keeps them in step."""

    def __init__(
        self, state: ServiceState, manager: StationManager, configure: Callable[[dict[str, Any]], StationConfig]
    ) -> None:
        self.state = state
        self.manager = manager
        self.configure = configure
        self._leases: dict[str, Lease] = {}
        self._lock = threading.Lock()
        #: Held by :meth:`sync` and by the routes that change stations (create, pause, resume, delete), so a
        #: sync never acts on a table it read before such a change.
        self.changing = threading.RLock()
        self._thread: threading.Thread | None = None
        #: Kept stations this replica claimed but could not start (a newer check refuses their spec, a folder
        #: gone), with why and what fixes it: shown by ``GET /v1/stations`` as ``error: not started: <why>``, and
        #: logged once per reason, not at every sync.
        self.not_started: dict[str, str] = {}

    def claim(self, name: str) -> bool:
        """Hold ``name``'s lock (``False``: another replica runs it)."""
        lease = self.state.store.backend.try_lock(station_lock(name))
        if lease is None:
            return False
        with self._lock:
            old = self._leases.pop(name, None)
            self._leases[name] = lease
        if old is not None:
            old.release()
        return True

    def holds(self, name: str) -> Callable[[], bool] | None:
        """Whether this replica still holds ``name``'s lock, asked by its station before each image (``None``
        with one service on its own history: no other process can take it)."""
        if not self.state.store.shared:
            return None

        def held() -> bool:
            with self._lock:
                lease = self._leases.get(name)
            return lease is not None and lease.held()

        return held

    def release(self, name: str) -> None:
        with self._lock:
            lease = self._leases.pop(name, None)
        if lease is not None:
            lease.release()

    def sync(self) -> None:
        """Start the table's stations this replica can claim; stop those deleted, follow pauses, elsewhere."""
        with self.changing:
            self._sync()

    def _sync(self) -> None:
        specs = {name: (spec, paused) for name, spec, paused in StationTables(self.state.store).specs()}
        for running in self.manager.all():
            if running.spec is None:
                continue  # from a stations file: not the table's
            with self._lock:
                lease = self._leases.get(running.name)
            if lease is not None and not lease.held():  # the database dropped our lock: another may run it now
                self.manager.remove(running.name, self.state.settings.shutdown_grace_s)
                self.release(running.name)
                LOG.warning("station %r: its lock in the history was lost (a database restart?); stopped here, "
                            "to be started again by whichever replica takes the lock", running.name)  # fmt: skip
            elif running.name not in specs:  # deleted through another replica
                self.manager.remove(running.name, self.state.settings.shutdown_grace_s)
                self.release(running.name)
                LOG.info("station %r was deleted through another replica; stopped here", running.name)
            elif running.spec != specs[running.name][0]:  # changed through another replica: started again below
                self.manager.remove(running.name, self.state.settings.shutdown_grace_s)
                self.release(running.name)
                LOG.info("station %r was changed through another replica; starting it again", running.name)
            else:
                running.user_paused = specs[running.name][1]
        for gone in set(self.not_started) - set(specs):
            self.not_started.pop(gone, None)
        for name, (spec, paused) in specs.items():
            if self.manager.get(name) is not None or self.stopping:
                continue
            if not self.claim(name):
                self.not_started.pop(name, None)  # another replica holds it (and may run it)
                continue
            try:
                self.manager.add(self.configure(spec), spec=spec, paused=paused, owns=self.holds(name))
            except Exception as exc:  # a folder gone, a category deleted: the service runs, the log says why
                self.release(name)
                why = f"{exc}{not_started_hint(name, spec)}" if isinstance(exc, EagleError) else \
                    f"{type(exc).__name__}: {exc}"  # fmt: skip
                if self.not_started.get(name) != why:  # once per reason, not at every sync of a shared history
                    if isinstance(exc, EagleError):
                        LOG.error("station %r was not started: %s", name, why)
                    else:
                        LOG.exception("station %r was not started", name)
                self.not_started[name] = why
            else:
                self.not_started.pop(name, None)

    def start(self) -> None:
        """One sync now; with a shared history, one every :data:`SYNC_INTERVAL_S` until the service stops."""
        self.sync()
        if not self.state.store.shared:
            return
        self._thread = threading.Thread(target=self._loop, name="eagle-station-ownership", daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self.state.stopping.wait(SYNC_INTERVAL_S):
            try:
                self.sync()
            except Exception as exc:  # the history unreachable for a while: try again at the next turn
                LOG.warning("stations: could not look at the shared station table (%s); retrying", exc)

    @property
    def stopping(self) -> bool:
        return self.state.stopping.is_set()

    def stop_loop(self) -> None:
        """At the stop, before the stations stop: no sync may start a station after that."""
        if self._thread is not None:
            self._thread.join(SYNC_INTERVAL_S + 60)

    def close(self) -> None:
        """At the stop, after the stations have stopped: the locks go, so another replica takes them over."""
        self.stop_loop()
        with self._lock:
            leases, self._leases = list(self._leases.values()), {}
        for lease in leases:
            lease.release()
