"""Transcripts as CTC character targets: normalisation, encoding, decoding and greedy CTC search.

The vocabulary has exactly 29 symbols, the ``vocab_size`` of :class:`predictnas.space.SpaceConfig`::

    0 = CTC blank, 1 = space, 2 = apostrophe, 3..28 = a..z

Every transcript goes through :func:`normalize` before it is encoded or scored, so references and
hypotheses are compared in the same alphabet.
"""

from __future__ import annotations

import re
import string
import unicodedata
from typing import Sequence

import numpy as np
import torch

BLANK = 0
SYMBOLS: tuple[str, ...] = ("<blank>", " ", "'") + tuple(string.ascii_lowercase)

_OUTSIDE = re.compile(r"[^a-z' ]+")
# Typographic apostrophes are the same symbol as the ASCII one in transcripts ("don’t" is "don't").
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "`": "'"})


def normalize(text: str) -> str:
    """Lowercase, fold accents (é -> e), replace every other character outside the vocabulary by a
    space, collapse whitespace and strip. Idempotent: ``normalize(normalize(t)) == normalize(t)``.

    Digits and punctuation become word breaks, not words: "room 101." -> "room"; a corpus that needs
    spoken numbers must write them out.
    """
    text = text.translate(_APOSTROPHES).lower()
    if not text.isascii():
        text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    return " ".join(_OUTSIDE.sub(" ", text).split())


class CharTokenizer:
    """Maps normalised text to CTC target ids and CTC outputs back to text.

    Contract: ``decode(encode(t)) == normalize(t)`` for every string ``t``; id 0 is the blank and is
    never produced by :meth:`encode`.
    """

    symbols: tuple[str, ...] = SYMBOLS
    blank: int = BLANK

    def __init__(self) -> None:
        # Byte -> id lookup table, so encoding is one vectorized gather instead of a dict lookup per char.
        self._byte_to_id = np.full(256, -1, dtype=np.int64)
        for i, s in enumerate(self.symbols[1:], start=1):
            self._byte_to_id[ord(s)] = i
        self._id_to_char = np.array([""] + list(self.symbols[1:]), dtype=object)

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    @staticmethod
    def normalize(text: str) -> str:
        return normalize(text)

    def encode(self, text: str) -> list[int]:
        """Ids of ``normalize(text)``; an empty list for a transcript with no letters."""
        raw = np.frombuffer(normalize(text).encode("ascii"), dtype=np.uint8)
        return self._byte_to_id[raw].tolist()

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        """Text of a sequence of ids, blanks dropped and whitespace collapsed (no CTC repeat collapse)."""
        ids = _as_numpy(ids).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.vocab_size}); got {ids.min()}..{ids.max()}")
        return " ".join("".join(self._id_to_char[ids]).split())

    def greedy_ctc_decode(self, logits_or_ids: torch.Tensor | np.ndarray,
                          lengths: Sequence[int] | torch.Tensor | np.ndarray | None = None) -> list[str]:
        """Best-path CTC decoding of a batch: argmax per frame, merge repeats, drop blanks.

        ``logits_or_ids`` is ``(B, T, V)`` scores (logits or log-probabilities) or ``(B, T)`` ids;
        ``lengths`` gives the valid frames of each row (all ``T`` when omitted). Returns ``B`` strings.
        """
        x = logits_or_ids
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(x)
        x = x.detach()
        if x.dim() == 3:
            x = x.argmax(dim=-1)
        if x.dim() != 2:
            raise ValueError(f"expected (B, T, V) scores or (B, T) ids; got shape {tuple(logits_or_ids.shape)}")
        ids = x.to(torch.int64).cpu()
        b, t = ids.shape
        lengths = torch.full((b,), t) if lengths is None else torch.as_tensor(lengths).cpu().reshape(-1)
        if lengths.numel() != b:
            raise ValueError(f"{lengths.numel()} lengths for a batch of {b}")
        valid = torch.arange(t).unsqueeze(0) < lengths.unsqueeze(1)
        new = torch.ones_like(valid)
        new[:, 1:] = ids[:, 1:] != ids[:, :-1]  # a repeat is merged unless a blank separates it
        keep = (valid & new & (ids != self.blank)).numpy()
        ids_np = ids.numpy()
        return [self.decode(ids_np[r][keep[r]]) for r in range(b)]


def _as_numpy(ids: Sequence[int] | np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(ids, torch.Tensor):
        return ids.detach().cpu().numpy().astype(np.int64, copy=False)
    return np.asarray(ids, dtype=np.int64)
