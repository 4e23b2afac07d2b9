"""citybrain: real-time traffic-signal control engine."""
__version__ = "0.1.0"
