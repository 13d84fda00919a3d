"""predictnas: hardware-aware neural architecture search for on-device speech recognition."""

__version__ = "0.1.0"
