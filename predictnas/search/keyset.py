"""A growing set of 64-bit row keys with vectorized insert, so no candidate is scored twice."""

from __future__ import annotations

import numpy as np

FIBONACCI = np.uint64(0x9E3779B97F4A7C15)  # odd, so multiplying by it is a bijection of uint64
EMPTY = np.uint64(0)
MAX_LOAD = 0.5


class KeySet:
    """A set of ``uint64`` keys (such as :meth:`SearchSpace.row_keys`), added to a batch at a time.

    An open-addressing hash table in one numpy array, with linear probing and at most half full. The
    table stores ``h = key * FIBONACCI`` (a bijection, so sets of ``h`` are sets of keys) at home slot
    ``h >> (64 - bits)``: its top bits, which every bit of the key reaches. A batch is sorted by ``h``
    first, which both puts repeated keys side by side (in-batch dedup) and makes the probes walk the
    table in order: an insert costs about 0.1 us per key (0.25 us counting the table's regrowths) with
    tens of millions of keys held. Slot value 0 marks empty; the key 0 (``h = 0``) is tracked apart.
    """

    def __init__(self, capacity: int = 1 << 16):
        self._bits = max(int(np.ceil(np.log2(max(capacity, 2) / MAX_LOAD))), 4)
        self._table = np.zeros(1 << self._bits, dtype=np.uint64)
        self._size = 0
        self._has_zero = False

    def __len__(self) -> int:
        return self._size

    def add(self, keys: np.ndarray) -> np.ndarray:
        """Insert ``keys``; return a mask of the keys that were new (for repeats in the batch, one of them)."""
        h = np.asarray(keys, dtype=np.uint64) * FIBONACCI
        order = np.argsort(h)
        ordered = h[order]
        new_in_order = np.ones(len(h), dtype=bool)  # so far: first of each run of equal keys
        new_in_order[1:] = ordered[1:] != ordered[:-1]
        if len(h) and ordered[0] == EMPTY:  # the key 0 sorts first
            new_in_order[0] = not self._has_zero
            self._has_zero = True
        candidates = np.flatnonzero(new_in_order & (ordered != EMPTY))
        self._reserve(self._size + len(candidates))
        new_in_order[candidates] = self._insert(ordered[candidates])
        new = np.empty(len(h), dtype=bool)
        new[order] = new_in_order
        self._size += int(new_in_order.sum())
        return new

    def __contains__(self, key: int) -> bool:
        return bool(self.contains(np.array([key], dtype=np.uint64))[0])

    def contains(self, keys: np.ndarray) -> np.ndarray:
        h = np.asarray(keys, dtype=np.uint64) * FIBONACCI
        found = np.zeros(len(h), dtype=bool)
        found[h == EMPTY] = self._has_zero
        pending = np.flatnonzero(h != EMPTY)
        slots = self._home(h[pending]).astype(np.int64)
        while len(pending):
            current = self._table.take(slots)
            hit = current == h[pending]
            found[pending[hit]] = True
            go_on = ~hit & (current != EMPTY)
            pending, slots = pending[go_on], (slots[go_on] + 1) & (len(self._table) - 1)
        return found

    # ---- internals -----------------------------------------------------------------------------------

    def _home(self, h: np.ndarray) -> np.ndarray:
        return h >> np.uint64(64 - self._bits)

    def _insert(self, h: np.ndarray) -> np.ndarray:
        """Insert distinct, sorted, nonzero values; True for those not already present.

        Every pending value advances one slot per round, so values at the same slot share a home and,
        the batch being sorted, sit side by side: the first of each run claims an empty slot and the rest
        probe on. No two writes race for a slot.
        """
        inserted = np.zeros(len(h), dtype=bool)
        pending = np.arange(len(h))
        slots = self._home(h).astype(np.int64)
        table, last = self._table, len(self._table) - 1
        while len(pending):
            want = h[pending]
            current = table.take(slots)
            empty = current == EMPTY
            claim = empty.copy()
            claim[1:] &= slots[1:] != slots[:-1]  # equal slots are adjacent: the first one claims
            table[slots[claim]] = want[claim]
            inserted[pending[claim]] = True
            go_on = ~claim & (current != want)  # claimed, or already present: done
            pending, slots = pending[go_on], (slots[go_on] + 1) & last
        return inserted

    def _reserve(self, size: int) -> None:
        """Grow the table (doubling) until ``size`` values keep it at most half full, and re-place them.

        Every temporary is the size of the values, not of the table, and the arithmetic is in place: fresh
        memory costs page faults, which dominated the rebuild (2.8-4.1 s -> 1.0 s over 24 M inserts).
        """
        if size <= MAX_LOAD * len(self._table):
            return
        values = self._table[self._table != EMPTY]
        values.sort(kind="stable")  # the table is nearly sorted already (by home slot): timsort's best case
        self._table = None  # freed before the larger table is allocated
        while size > MAX_LOAD * (1 << self._bits):
            self._bits += 1
        # Linear probing of sorted values into an empty table has a closed form: each value lands at its
        # home or just after the previous value, pos[i] = max(home[i], pos[i-1] + 1), a running maximum.
        position = self._home(values).view(np.int64)  # homes are below 2**63
        order = np.arange(len(values))
        position -= order
        np.maximum.accumulate(position, out=position)
        position += order
        del order
        self._table = np.zeros(1 << self._bits, dtype=np.uint64)
        # Positions increase, so those pushed past the end are a suffix; they wrap around to the start
        # through the ordinary insert.
        inside = int(np.searchsorted(position, len(self._table)))
        self._table[position[:inside]] = values[:inside]
        self._insert(values[inside:])
