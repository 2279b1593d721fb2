"""The inspection history's database: which one (a URL), its schema and its migrations.

``sqlite:///path`` is the embedded default (one ``eagle serve``); ``postgresql://...`` lets several
replicas share one history (docs/PLANT.md). Each backend is one module registered by its URL scheme.
"""

from eagle_iad.history import postgresql as postgresql  # registers postgresql://
from eagle_iad.history import sqlite as sqlite  # registers sqlite:///
from eagle_iad.history.backend import BACKENDS, HistoryBackend, history_backend, history_url, open_backend

__all__ = ["BACKENDS", "HistoryBackend", "history_backend", "history_url", "open_backend"]
