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
from datetime import UTC, datetime
from typing import Any

from eagle_iad.errors import EagleError
from eagle_iad.history.backend import Lease
from eagle_iad.registry import PLUGINS_ENV
from eagle_iad.service.context import ServiceState
from eagle_iad.station.config import StationConfig
from eagle_iad.station.outbox import StationTables, station_lock
from eagle_iad.station.parts import SINKS, SOURCES
from eagle_iad.station.runner import Running, StationBusyError, StationManager
from eagle_iad.station.status import forget_owed

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


def unloaded_kinds(spec: Mapping[str, Any]) -> list[str]:
    """The source and sink kinds ``spec`` names that no part registers in this process, in its order: a plugin's
    (loaded when the station was created, not loaded now), or a typo no check of the time refused."""
    source, sinks = spec.get("source"), spec.get("sinks")
    named: list[tuple[Any, tuple[str, ...]]] = [(source.get("kind"), SOURCES.names())] if isinstance(source, Mapping) \
        else []  # fmt: skip
    named += [(sink.get("kind"), SINKS.names()) for sink in sinks if isinstance(sink, Mapping)] if \
        isinstance(sinks, list) else []  # fmt: skip
    return list(dict.fromkeys(kind for kind, known in named if isinstance(kind, str) and kind not in known))


def not_started_hint(name: str, spec: Mapping[str, Any]) -> str:
    """What to do about a kept station that did not start: it lives in the history, not in a file the user can
    edit, so the line says how to change it in place (its records, outbox and name stay), as a command. A station
    naming a source or sink kind not registered here is told to load its plugin (the usual cause: a service
    restarted without ``EAGLE_PLUGINS``), not to change a spec that was right."""
    unloaded = unloaded_kinds(spec)
    if unloaded:
        kinds = ", ".join(repr(kind) for kind in unloaded)
        return (
            f"; it was created through /v1/stations and is kept in the history: restart the service with the "
            f"plugin module that registers {kinds} in {PLUGINS_ENV} (on every replica that may run it), or remove "
            f"it with DELETE /v1/stations/{name}"
        )
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
        f'"sinks", null removes a field), or remove it with DELETE /v1/stations/{name}'
    )


def forget_owed_quietly(state: ServiceState, name: str) -> None:
    """Station ``name`` was deleted: the place of an image it owed its history goes with it (a station created
    again under that name must not store a place of another run's image)."""
    try:
        forget_owed(state.settings.state_dir, name)
    except OSError as exc:
        LOG.warning("station %r: its owed filing could not be removed (%s)", name, exc)


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
        #: logged once per reason, not at every sync. Kept in the shared ``station_faults`` table too (see
        #: :meth:`failed`), so a replica that does not hold the lock lists a station that runs nowhere as such.
        self.not_started: dict[str, str] = {}
        #: Kept stations another process held the lock of at this replica's last look, with who (as the database
        #: names the lock's session, at the first look that found it there): a claim of one of these is a takeover,
        #: said as a WARNING naming the old holder (:meth:`_took_over`), where a start of a station nobody ran is not.
        self.elsewhere: dict[str, str] = {}

    def failed(self, name: str, why: str) -> None:
        """``name`` could not be started here: said here and in the shared table, for every replica's listing."""
        self.not_started[name] = why
        try:
            StationTables(self.state.store).set_fault(name, why, datetime.now(UTC).isoformat())
        except Exception as exc:  # the history away: this replica's listing says it still
            LOG.warning("station %r: could not keep why it was not started in the history (%s)", name, exc)

    def started(self, name: str) -> None:
        """``name`` runs here (this replica holds its lock): no replica lists it as not started any more (a clear
        that fails here is done again at the next sync: :meth:`_clear_stale_faults`)."""
        had = self.not_started.pop(name, None)
        try:
            StationTables(self.state.store).clear_fault(name)
        except Exception as exc:
            if had is not None:
                LOG.warning("station %r: could not clear why it was not started in the history (%s)", name, exc)

    def why_not_started(self, name: str, faults: Mapping[str, str] | None = None) -> str | None:
        """Why ``name`` (kept, not run by this replica) was not started: this replica's try, or the last one's of
        any replica (``faults``: the shared table, read once for a listing); ``None``: it runs elsewhere."""
        if name in self.not_started:
            return self.not_started[name]
        if faults is None:
            faults = StationTables(self.state.store).faults()
        return faults.get(name)

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
                self.manager.remove(running.name, self.state.settings.shutdown_grace_s,
                                    "was stopped here (its lock in the history was lost)")  # fmt: skip
                self.release(running.name)
                LOG.warning("station %r: its lock in the history was lost (a database restart?); stopped here, "
                            "to be started again by whichever replica takes the lock", running.name)  # fmt: skip
            elif running.name not in specs:  # deleted through another replica
                self.manager.remove(running.name, self.state.settings.shutdown_grace_s, forget=True)
                self.release(running.name)
                forget_owed_quietly(self.state, running.name)
                LOG.info("station %r was deleted through another replica; stopped here", running.name)
            elif running.spec != specs[running.name][0]:  # changed through another replica: restarted in place
                self._restart(running, *specs[running.name])
            else:
                running.user_paused = specs[running.name][1]
        for gone in set(self.not_started) - set(specs):
            self.not_started.pop(gone, None)
            forget_owed_quietly(self.state, gone)
        for name, (spec, paused) in specs.items():
            if self.manager.get(name) is not None or self.stopping:
                continue
            if not self.claim(name):
                self.not_started.pop(name, None)  # another replica holds it (and may run it)
                if name not in self.elsewhere:
                    self.elsewhere[name] = self._holder(name)
                continue
            holder = self.elsewhere.pop(name, None)
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
                self.failed(name, why)
            else:
                self.started(name)
                if holder is not None:
                    self._took_over(name, holder)
        for gone in set(self.elsewhere) - set(specs):
            del self.elsewhere[gone]
        self._clear_stale_faults(specs)

    def _holder(self, name: str) -> str:
        """Who holds ``name``'s lock, as the database says (``another replica`` where it cannot say)."""
        try:
            who = self.state.store.backend.lock_holder(station_lock(name))
        except Exception:  # the history away a moment: the takeover line says less
            who = None
        return who or "another replica"

    def _took_over(self, name: str, holder: str) -> None:
        """This replica started ``name``, which ``holder`` ran at the last look: a failover, which an operator must
        know of (a replica stopped or died, or the database dropped its lock), so a WARNING even at
        ``--log-level warning``, in one line naming the station and the old holder."""
        LOG.warning("took over station %r from %s: its lock there ended (that replica stopped or died, or the "
                    "database dropped its session); it runs here now", name, holder)  # fmt: skip

    def _clear_stale_faults(self, specs: Mapping[str, Any]) -> None:
        """Clear the ``station_faults`` rows of the kept stations that run here (this replica holds their locks):
        stale, as a clear that failed when one started (the history away a moment: :meth:`started` goes on) would
        keep every other replica answering 409 ``station_not_started`` for a station that runs. At every sync:
        one read of the table, a write only where such a row is there; a failure is said and tried at the next."""
        running = {run.name for run in self.manager.all() if run.spec is not None and run.name in specs}
        if not running:
            return
        tables = StationTables(self.state.store)
        try:
            for name in sorted(running & set(tables.faults())):
                tables.clear_fault(name)
                LOG.info("station %r runs here: its stale 'not started' in the history is cleared", name)
        except Exception as exc:  # the history away: the next sync tries again
            LOG.warning("stations: could not clear a stale 'not started' of a station running here (%s); trying "
                        "again at the next look at the table", exc)  # fmt: skip

    def _restart(self, running: Running, spec: dict[str, Any], paused: bool) -> None:
        """Start ``running`` again with ``spec`` (changed through another replica), in place: its lock held all the
        while, so no replica takes the station between the stop and the start. A spec that does not start here
        (its model, a sink's start-up check) leaves it running as it was, that spec written back to the table;
        an old run still finishing an image leaves it as it was until the next sync."""
        name, grace = running.name, self.state.settings.shutdown_grace_s
        try:
            live = [sink.sink for sink in running.runner.config.sinks]  # connected now: not to be pushed off
            runner = self.manager.prepare(self.configure(spec), owns=self.holds(name), live=live)
        except Exception as exc:
            why = f"{type(exc).__name__}: {exc}" if not isinstance(exc, EagleError) else str(exc)
            LOG.error("station %r: the change made through another replica does not start here (%s); it runs on as "
                      "it was, and its spec is written back to the table", name, why)  # fmt: skip
            if running.spec is not None:
                StationTables(self.state.store).update_spec(name, running.spec)
            return
        try:
            self.manager.replace(name, runner, spec=spec, paused=paused, grace_s=grace)
        except StationBusyError:
            runner.close()
            LOG.warning("station %r was changed through another replica; its run here is still finishing an image, "
                        "so it runs on as it was until the next look at the table", name)  # fmt: skip
            return
        except Exception as exc:  # stopped, and the change failed to start: started again as it was
            LOG.error("station %r: the change made through another replica failed to start (%s); started again as "
                      "it was, and its spec written back to the table", name, exc)  # fmt: skip
            old = running.spec
            if old is not None:
                StationTables(self.state.store).update_spec(name, old)
                try:
                    self.manager.add(self.configure(old), spec=old, paused=paused, owns=self.holds(name))
                except Exception as again:
                    self.release(name)
                    self.failed(name, f"{type(again).__name__}: {again}")
            return
        LOG.info("station %r was changed through another replica; started again with the change", name)

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
