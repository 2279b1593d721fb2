"""The built-in station sinks, one module each (importing this package registers them)."""

from eagle_iad.station.sinks import folder as folder
from eagle_iad.station.sinks import mqtt as mqtt
from eagle_iad.station.sinks import opcua as opcua
from eagle_iad.station.sinks import webhook as webhook
