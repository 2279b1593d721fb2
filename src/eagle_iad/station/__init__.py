"""Stations: images taken off a production line by themselves, verdicts delivered to the line's systems.

A station binds one source (a hot folder; more kinds register in :data:`parts.SOURCES`) to one fitted
category and a list of sinks (a folder, a webhook; :data:`parts.SINKS`). ``eagle station run
stations.toml`` runs several in one process (:mod:`config` reads the file, :mod:`runner` runs them);
every inspection goes through the service's own path and lands in the same history, and every
verdict is delivered at least once through a durable outbox (:mod:`outbox`). docs/STATIONS.md is the
manual.
"""
