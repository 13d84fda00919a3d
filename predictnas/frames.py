"""How many frames each part of a model sees: one counter for the latency table's keys, the closed-form
costs and the CTC feasibility checks.

The front-end halves the frame rate twice (two stride-2 convolutions, 4x in all); the optional
mid-encoder downsampling halves it once more. A stride-2 layer with same-length padding keeps
ceil(n / 2) frames, as the model's ``halve_lengths`` does.
"""

from __future__ import annotations

from dataclasses import dataclass


def halve(frames):
    """Frames after a stride-2 layer with same-length padding: ceil(n / 2) (ints or integer arrays)."""
    return (frames + 1) // 2


@dataclass(frozen=True)
class Frames:
    """Frame counts of one input at each rate of the model."""

    input: int  # feature frames into the front-end
    encoder: int  # after the front-end's 4x subsampling
    reduced: int  # after the optional mid-encoder downsampling

    @property
    def first(self) -> int:
        """After the front-end's first stride-2 convolution."""
        return halve(self.input)

    @classmethod
    def of(cls, input_frames: int) -> "Frames":
        encoder = halve(halve(input_frames))
        return cls(input_frames, encoder, halve(encoder))
