"""Timing whole architectures end to end on the machine a latency table describes.

The table's estimate (module entries summed, then calibrated) is within ±10 % for most subnets, but a
search that scans millions of candidates and keeps those just under a budget keeps, among them, the ones
the table underestimates most: in a small-preset run both 40-ms picks timed 11-13 % above their estimates
while hand-designed models of the same size timed within -13 to +3 %. Timing a few dozen finalists
takes seconds each and replaces their estimates with measurements, taken with the table's own protocol,
input and normalization, so they are comparable with it and with what ``verify`` measures.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from ..errors import PredictnasError
from ..space import Arch
from .devices import get_device
from .protocol import PROTOCOLS, Measurement, ModelTimer
from .table import LatencyTable


def time_architectures(table: LatencyTable, archs: Sequence[Arch], progress: bool = False) -> list[Measurement]:
    """Each of ``archs`` (random weights) timed on this machine with ``table``'s protocol and reference
    input. Raises :class:`~.devices.DeviceMismatch` when this machine is not the one the table was built
    on: timings from here would not be the table's device's."""
    from tqdm import tqdm

    from .modules import subnet_graph  # torch and the exporter, only when something is timed

    table.check_device()
    protocols = PROTOCOLS.get(table.protocol.get("name", ""))
    if protocols is None:
        raise PredictnasError(f"{table.source}: timed with protocol {table.protocol.get('name')!r}, which this "
                              f"version does not know ({', '.join(PROTOCOLS)})")
    timer = ModelTimer(get_device(table.device["name"]), protocols, table.reference_ms)
    return [timer.time(subnet_graph(arch, table.space, table.frames.input))
            for arch in tqdm(archs, desc="timing finalists", unit="model", disable=not progress, file=sys.stderr,
                             dynamic_ncols=True)]
