"""The contract every JSON artifact of a run follows: a format tag, an atomic save, a load that fails with
one clear line, and a content hash that other artifacts record.

``top.json`` (:class:`~predictnas.bundle.Bundle`), ``verify.json``
(:class:`~predictnas.verification.Verification`), ``predictor.json``
(:class:`~predictnas.predictor.AccuracyPredictor`), ``finetune.json``
(:class:`~predictnas.predictor.calibrate.FinetuneCalibration`) and the latency tables
(:class:`~predictnas.latency.table.LatencyTable`) are artifacts.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, ClassVar

from .errors import PredictnasError, one_line
from .io import read_json, write_json


def content_hash(document: Any) -> str:
    """16 hex digits of the SHA-256 of ``document`` as canonical JSON: what artifacts record of each other."""
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()[:16]


class Artifact:
    """Base of a JSON artifact.

    A subclass sets ``FORMAT`` (the tag it writes), ``KIND`` (how messages name it) and optionally
    ``READS`` (older tags it still loads; ``None`` for files from before the tag) and ``HINT`` (appended
    to the wrong-format message), and implements ``to_dict()`` (the whole document, ``"format"``
    included) and ``from_dict(data, source)``. ``from_dict`` may raise ``KeyError``, ``TypeError`` or
    ``ValueError`` on a malformed document: :meth:`parse` turns them into one ``PredictnasError`` line
    that names the file. Saving is atomic (a reader never sees half a file).
    """

    FORMAT: ClassVar[str]
    KIND: ClassVar[str]
    READS: ClassVar[tuple[str | None, ...]] = ()
    HINT: ClassVar[str] = ""

    def to_dict(self) -> dict:
        raise NotImplementedError

    @classmethod
    def from_dict(cls, data: dict, source: str):
        raise NotImplementedError

    def save(self, path: str | Path) -> None:
        write_json(path, self.to_dict())

    @property
    def content_hash(self) -> str:
        return content_hash(self.to_dict())

    @classmethod
    def load(cls, path: str | Path):
        return cls.parse(read_json(path), str(path))

    @classmethod
    def parse(cls, data: Any, source: str):
        """The artifact in ``data`` (a parsed document), or one line saying what is wrong with it."""
        if not isinstance(data, dict) or data.get("format") not in (cls.FORMAT, *cls.READS):
            raise PredictnasError(f"{source}: not a predictnas {cls.KIND} (expected format {cls.FORMAT!r}){cls.HINT}")
        try:
            return cls.from_dict(data, source)
        except PredictnasError:
            raise
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            what = f"missing field {e}" if isinstance(e, KeyError) else one_line(e, 200)
            raise PredictnasError(f"{source}: malformed {cls.KIND} ({what})") from None
