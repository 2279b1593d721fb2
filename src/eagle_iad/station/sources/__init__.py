"""The built-in station sources, one module each (importing this package registers them)."""

from eagle_iad.station.sources import camera as camera
from eagle_iad.station.sources import folder as folder
