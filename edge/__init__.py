"""Edge inference runtime: camera -> CNN -> MQTT on Jetson-class devices and plain CPUs."""

__version__ = "0.1.0"
