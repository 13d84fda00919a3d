"""Acoustic features: per-utterance normalised log-mel filterbanks, and SpecAugment for training.

Frame rate: one frame every ``hop_ms`` (100 frames per second at the default 10 ms hop), centred on
the hop, so a waveform of ``n`` samples gives ``1 + n // hop_length`` frames (see
:meth:`FeatureConfig.num_frames`). The sample rate is part of the experiment: features computed at
8 kHz and 16 kHz are not interchangeable, and :func:`predictnas.data.manifest.read_audio` refuses audio
at another rate unless asked to resample.
"""

from __future__ import annotations

import functools
import math
import warnings
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch
import torchaudio
from torch import nn

from ..errors import PredictnasError

MIN_N_FFT = 512
STD_FLOOR = 1e-2  # in nats of log mel power


@dataclass(frozen=True)
class FeatureConfig:
    """How waveforms become features. Part of the experiment: it is hashed into feature caches.

    ``n_fft=None`` picks the smallest power of two that holds the window and is at least 512: the
    zero-padded FFT gives every one of 80 mel filters at least two FFT bins even at 8 kHz (at 256
    points some low filters would rest on one bin). ``f_max=None`` is the Nyquist frequency.
    """

    sample_rate: int = 16000
    n_mels: int = 80
    win_ms: float = 25.0
    hop_ms: float = 10.0
    f_min: float = 20.0
    f_max: float | None = None
    n_fft: int | None = None
    log_floor: float = 1e-6  # added to the mel power before the log: silence gives a finite floor
    # Production audio captured at this rate (e.g. 8000 from a telephony front-end) and brought back up to
    # ``sample_rate``: the band above capture_rate / 2 is lost, as it is for the deployed model.
    capture_rate: int | None = None

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.n_mels <= 0 or self.win_ms <= 0 or self.hop_ms <= 0:
            raise PredictnasError(f"feature config: sample_rate, n_mels, win_ms and hop_ms must be positive "
                                  f"(got {self.sample_rate}, {self.n_mels}, {self.win_ms}, {self.hop_ms})")
        if not 0 <= self.f_min < self.upper_freq <= self.sample_rate / 2:
            raise PredictnasError(f"feature config: need 0 <= f_min < f_max <= {self.sample_rate / 2:g} Hz "
                                  f"(got f_min={self.f_min:g}, f_max={self.upper_freq:g})")
        if self.fft_size < self.win_length:
            raise PredictnasError(f"feature config: n_fft={self.fft_size} is shorter than the "
                                  f"{self.win_length}-sample window")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torchaudio warns about empty filters; the error below says more
            empty = int((_filterbank(self).amax(dim=0) == 0).sum())
        if empty:
            raise PredictnasError(f"feature config: {empty} of {self.n_mels} mel filters contain no FFT bin at "
                                  f"{self.sample_rate} Hz with n_fft={self.fft_size}; use fewer mels or a larger n_fft")

    @property
    def win_length(self) -> int:
        return round(self.sample_rate * self.win_ms / 1000)

    @property
    def hop_length(self) -> int:
        return round(self.sample_rate * self.hop_ms / 1000)

    @property
    def fft_size(self) -> int:
        if self.n_fft is not None:
            return self.n_fft
        return max(MIN_N_FFT, 1 << (self.win_length - 1).bit_length())

    @property
    def upper_freq(self) -> float:
        return self.sample_rate / 2 if self.f_max is None else self.f_max

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        """Frames of a waveform of ``num_samples`` samples: ``1 + num_samples // hop_length``."""
        return 1 + num_samples // self.hop_length

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if d["capture_rate"] is None:
            del d["capture_rate"]  # so configs (and feature caches) from before the option keep their hash
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "FeatureConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PredictnasError(f"feature config: unknown keys {', '.join(unknown)}")
        return cls(**d)


def _filterbank(config: FeatureConfig) -> torch.Tensor:
    return torchaudio.functional.melscale_fbanks(
        config.fft_size // 2 + 1, config.f_min, config.upper_freq, config.n_mels, config.sample_rate,
        norm=None, mel_scale="htk")


@functools.lru_cache(maxsize=8)
def _mel_transform(config: FeatureConfig) -> torchaudio.transforms.MelSpectrogram:
    # Zero ("constant") padding at the edges rather than reflection: reflection fails on clips shorter
    # than half an FFT and invents signal that was never recorded.
    return torchaudio.transforms.MelSpectrogram(
        sample_rate=config.sample_rate, n_fft=config.fft_size, win_length=config.win_length,
        hop_length=config.hop_length, f_min=config.f_min, f_max=config.upper_freq, n_mels=config.n_mels,
        power=2.0, center=True, pad_mode="constant", mel_scale="htk", norm=None)


def log_mel(waveform: torch.Tensor, config: FeatureConfig = FeatureConfig()) -> torch.Tensor:
    """Log-mel features ``(frames, n_mels)`` float32 of a mono waveform ``(samples,)`` at ``config.sample_rate``.

    Each mel channel is normalised over the utterance's own frames to mean 0 and standard deviation 1
    (per-utterance CMVN), so models need no global feature statistics and a deployed model needs none
    either. A channel (nearly) constant over the utterance, such as digital silence, becomes ~0.
    """
    if waveform.dim() != 1:
        raise ValueError(f"expected a mono waveform (samples,), got shape {tuple(waveform.shape)}")
    with torch.no_grad():
        mel = _mel_transform(config)(waveform.to(torch.float32))  # (n_mels, frames)
        feats = torch.log(mel + config.log_floor).T
        mean = feats.mean(dim=0, keepdim=True)
        std = feats.std(dim=0, unbiased=False, keepdim=True)
        # The floor keeps a channel that is constant but for float rounding (digital silence, the empty
        # band of upsampled audio) near 0 instead of blowing its rounding noise up to unit variance;
        # real speech channels vary by nats, far above it.
        return ((feats - mean) / std.clamp_min(STD_FLOOR)).contiguous()


class SpecAugment(nn.Module):
    """SpecAugment masking of a padded feature batch; active only in training mode (identity in eval).

    Per utterance: ``freq_masks`` frequency bands of width uniform in ``[0, freq_width]`` bins and
    ``time_masks`` time spans of width uniform in ``[0, time_width_ratio * length]`` frames, where
    ``length`` is that utterance's own valid frame count, so masks scale with the utterance and never
    fall in the padding. Masked values are set to 0, the mean of the normalised features.

    The masks are drawn here rather than with ``torchaudio.transforms.FrequencyMasking/TimeMasking``
    because those draw from the global RNG only and see the padded length, not each utterance's.
    Deterministic: given a generator (at construction or per call) it alone decides the masks,
    otherwise the global torch seed does.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 15, time_masks: int = 2,
                 time_width_ratio: float = 0.05, generator: torch.Generator | None = None):
        super().__init__()
        self.freq_masks, self.freq_width = freq_masks, freq_width
        self.time_masks, self.time_width_ratio = time_masks, time_width_ratio
        self.generator = generator

    def forward(self, features: torch.Tensor, lengths: torch.Tensor | None = None,
                generator: torch.Generator | None = None) -> torch.Tensor:
        """Mask ``features`` ``(B, T, F)`` (``lengths`` ``(B,)`` valid frames); returns a new tensor.

        ``generator``, when given, overrides the module's own for this call (a per-step seed).
        """
        if not self.training:
            return features
        generator = self.generator if generator is None else generator
        b, t, f = features.shape
        lengths = torch.full((b,), t) if lengths is None else lengths.to("cpu", torch.int64)
        keep = torch.ones(b, t, f, dtype=torch.bool)
        bins = torch.arange(f)
        for _ in range(self.freq_masks):
            widest = torch.full((b,), float(min(self.freq_width, f)))
            start, stop = self._spans(torch.full((b,), f), widest, generator)
            keep &= ~((bins >= start[:, None]) & (bins < stop[:, None]))[:, None, :]
        frames = torch.arange(t)
        for _ in range(self.time_masks):
            start, stop = self._spans(lengths, self.time_width_ratio * lengths.to(torch.float32), generator)
            keep &= ~((frames >= start[:, None]) & (frames < stop[:, None]))[:, :, None]
        return features * keep.to(features.device, features.dtype)

    @staticmethod
    def _spans(extent: torch.Tensor, max_width: torch.Tensor,
               generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """One random span ``[start, stop)`` per row inside ``[0, extent)``, its width uniform in
        ``0..floor(max_width)``."""
        u = torch.rand(2, extent.numel(), generator=generator)
        width = torch.floor(u[0] * (torch.floor(max_width) + 1)).to(torch.int64).clamp(max=extent)
        start = torch.floor(u[1] * (extent - width + 1).to(torch.float32)).to(torch.int64)
        return start, start + width

    def extra_repr(self) -> str:
        return (f"freq_masks={self.freq_masks}, freq_width={self.freq_width}, time_masks={self.time_masks}, "
                f"time_width_ratio={self.time_width_ratio}")


def seconds_to_frames(seconds: float, config: FeatureConfig) -> int:
    """Frames of ``seconds`` of audio (the same count :func:`log_mel` gives)."""
    return config.num_frames(math.floor(seconds * config.sample_rate))
