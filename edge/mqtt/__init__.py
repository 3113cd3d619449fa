"""MQTT contract v1: topics, the daemon's link to the broker, and subscriber helpers."""
