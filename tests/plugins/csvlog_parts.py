"""A station sink and a source added from outside (docs/STATIONS.md, "Adding a source or sink"), as a user writes
them: ``EAGLE_PLUGINS=csvlog_parts`` (with this folder on ``PYTHONPATH``) makes ``kind = "csvlog"`` (a sink) and
``kind = "zipdrop"`` (a hot folder) work in a stations file and in ``POST /v1/stations``.

Each fails as plugins do: a plain ``ValueError``/``NotImplementedError`` in ``__init__`` for a value its options
accept but it does not support, and a start-up look (``station_probe``) that refuses with a
:class:`StationConfigError` of its own wording, not naming the station. The station must say where.
"""

from __future__ import annotations

from eagle_iad.station.parts import REQUIRED, SINKS, SOURCES, Retry, StationConfigError
from eagle_iad.station.sources.folder import HotFolder

#: The separators the sink's option ``sep`` accepts; the MES reader behind it takes only some.
SEPARATORS = (",", ";", "\t")


class CsvLog:
    """One line per verdict (``key<sep>decision``) appended to ``path``."""

    kind = "csvlog"

    def __init__(self, options, name):
        self.name = name
        self.path = options.path("path", REQUIRED)
        self.sep = options.text("sep", ",", SEPARATORS)
        self.share = options.text("share", None)
        self.max_attempts = Retry.read(options).max_attempts
        if self.sep == ";":
            raise ValueError("csvlog: ';' separator not supported by the MES reader")

    def describe(self):
        return f"csvlog {self.path}"

    def station_probe(self):
        if self.share is not None and not str(self.path).startswith(self.share):
            raise StationConfigError(f"csvlog: {self.path} is not the MES share")
        return None

    def deliver(self, payload, key):
        with open(self.path, "a") as handle:
            handle.write(f"{key}{self.sep}{payload['record']['decision']}\n")

    def close(self):
        pass


class ZipDrop(HotFolder):
    """A hot folder of images, and of archives to unpack (``unpack = "zip"``; ``"tar"`` is not written yet)."""

    kind = "zipdrop"

    def __init__(self, options):
        self.unpack = options.text("unpack", "zip", ("zip", "tar"))
        self.share = options.text("share", None)
        if self.unpack == "tar":
            raise NotImplementedError("zipdrop: tar archives are not unpacked yet")
        super().__init__(options)

    def station_probe(self):
        if self.share is not None and not str(self.folder).startswith(self.share):
            raise StationConfigError(f"zipdrop: {self.folder} is not on the scanner's share")


SINKS.add("csvlog", CsvLog)
SOURCES.add("zipdrop", ZipDrop)
