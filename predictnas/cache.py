"""Where predictnas writes what it measures and synthesizes: a user cache folder, never the package.

``$PREDICTNAS_CACHE`` if set, else ``$XDG_CACHE_HOME/predictnas``, else ``~/.cache/predictnas``. It holds
the synthesized corpus and its feature caches (``corpus/``) and the latency tables measured on this
machine (``lut/``). Run directories are not here: they go under the working folder (``runs/<name>``).
"""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    explicit = os.environ.get("PREDICTNAS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "predictnas"


def corpus_root() -> Path:
    """Synthesized corpora, one folder per recipe, with their feature caches beside them."""
    return cache_dir() / "corpus"


def measured_tables() -> Path:
    """Latency tables measured on this machine (``build-lut`` writes here by default)."""
    return cache_dir() / "lut"
