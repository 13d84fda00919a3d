"""Acoustic environments: a synthetic room and a synthetic noise field, mixed at a drawn SNR.

An :class:`Environment` turns clean speech into what a device would record there. The registry maps names
(``quiet_home``, ``industrial_warehouse``) to environments; corpora and manifests refer to them by name.

Rendering, for clean speech ``x`` and a generator ``rng`` (every draw comes from ``rng``, in a fixed order):

1. a room impulse response: a direct path, then exponentially decaying Gaussian noise that falls by 60 dB
   in ``rt60_s`` seconds, at ``drr_db`` direct-to-reverberant energy ratio; ``speech = x * rir`` (FFT
   convolution, cut to the length of ``x``);
2. noise: broadband noise with power falling as ``f ** -slope`` above 100 Hz, machinery hum (mains fundamental, a motor
   fundamental, their harmonics, slow amplitude wobble) and impulsive clanks (decaying noise bursts with
   metallic ringing), each with its drawn share of the noise power;
3. ``snr_db`` drawn uniformly from ``snr_db``, rounded to 0.01 dB, and the noise scaled so that
   ``10 log10(mean(speech**2) / mean(noise**2)) == snr_db`` over the whole clip;
4. both scaled by one gain that puts the mixture's peak at a drawn level in [0.3, 0.9], so it fits 16-bit
   PCM without clipping (a common gain leaves the SNR unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import PredictnasError

_LN_1000 = np.log(1000.0)  # 60 dB of amplitude decay


@dataclass(frozen=True)
class Environment:
    """A room and a noise field. Ranges are ``(low, high)`` and drawn uniformly per rendering.

    Contract of :meth:`render`: the output has the input's length, is float32 with peak <= 0.9, and the
    returned SNR is the exact ratio of reverberant-speech power to added-noise power (see the module
    docstring); the same ``rng`` state gives the same output.
    """

    name: str
    description: str
    rt60_s: tuple[float, float]
    drr_db: tuple[float, float]  # direct-to-reverberant energy ratio of the room response
    snr_db: tuple[float, float]
    noise_slope: tuple[float, float]  # broadband power ~ f**-slope: 0 white, 1 pink, 2 brown
    hum_share: tuple[float, float] = (0.0, 0.0)  # of the noise power; 0 = no hum
    mains_hz: tuple[float, ...] = (50.0, 60.0)
    motor_hz: tuple[float, float] = (80.0, 200.0)
    impulse_share: tuple[float, float] = (0.0, 0.0)  # of the noise power; 0 = no clanks
    impulses_per_s: tuple[float, float] = (0.0, 0.0)

    def __post_init__(self) -> None:
        if self.hum_share[1] + self.impulse_share[1] >= 1.0:
            raise ValueError(f"{self.name}: hum and impulse shares must leave room for broadband noise")

    def render(self, clean: np.ndarray, sample_rate: int, rng: np.random.Generator) -> tuple[np.ndarray, float]:
        """Return ``(noisy, snr_db)``: ``clean`` as recorded in this environment."""
        speech, noise, snr_db = self.render_components(clean, sample_rate, rng)
        return (speech + noise).astype(np.float32), snr_db

    def render_components(self, clean: np.ndarray, sample_rate: int,
                          rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
        """Return ``(speech, noise, snr_db)`` with ``render``'s gain applied: ``noisy == speech + noise``."""
        x = np.asarray(clean, dtype=np.float64)
        if x.ndim != 1 or not np.any(x):
            raise ValueError("clean speech must be a non-silent 1-D signal")
        n = len(x)
        rir = room_impulse_response(sample_rate, _uniform(rng, self.rt60_s), _uniform(rng, self.drr_db), rng)
        speech = fft_convolve(x, rir)[:n]

        hum_share, impulse_share = _uniform(rng, self.hum_share), _uniform(rng, self.impulse_share)
        parts = [(1.0 - hum_share - impulse_share, colored_noise(n, sample_rate, _uniform(rng, self.noise_slope), rng))]
        if hum_share > 0:
            parts.append((hum_share, machinery_hum(n, sample_rate, self.mains_hz, self.motor_hz, rng)))
        if impulse_share > 0:
            clanks = impulsive_noise(n, sample_rate, _uniform(rng, self.impulses_per_s), rng)
            if np.any(clanks):  # a clip without clanks leaves their share to the other parts
                parts.append((impulse_share, clanks))
        total = sum(share for share, _ in parts)
        noise = sum(np.sqrt(share / total / np.mean(p * p)) * p for share, p in parts)

        snr_db = round(_uniform(rng, self.snr_db), 2)
        noise *= np.sqrt(np.mean(speech * speech) / (np.mean(noise * noise) * 10.0 ** (snr_db / 10.0)))
        gain = _uniform(rng, (0.3, 0.9)) / np.max(np.abs(speech + noise))
        return (speech * gain).astype(np.float32), (noise * gain).astype(np.float32), snr_db


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    low, high = bounds
    return float(low + (high - low) * rng.random())


def fft_convolve(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Full linear convolution of two 1-D signals through one real FFT of a power-of-two length."""
    size = len(x) + len(h) - 1
    n_fft = 1 << (size - 1).bit_length()
    return np.fft.irfft(np.fft.rfft(x, n_fft) * np.fft.rfft(h, n_fft), n_fft)[:size]


def room_impulse_response(sample_rate: int, rt60_s: float, drr_db: float,
                          rng: np.random.Generator) -> np.ndarray:
    """A unit direct path followed, after a 1-10 ms gap, by Gaussian noise decaying 60 dB in ``rt60_s``."""
    length = max(2, int(rt60_s * sample_rate))
    gap = max(1, int(rng.uniform(0.001, 0.010) * sample_rate))
    t = np.arange(length - gap) / sample_rate
    tail = rng.standard_normal(length - gap) * np.exp(-_LN_1000 * t / rt60_s)
    tail *= np.sqrt(10.0 ** (-drr_db / 10.0) / np.sum(tail * tail))
    return np.concatenate([[1.0], np.zeros(gap - 1), tail])


def colored_noise(n: int, sample_rate: int, slope: float, rng: np.random.Generator,
                  flat_below_hz: float = 100.0) -> np.ndarray:
    """Gaussian noise whose power spectrum falls as ``f ** -slope`` above ``flat_below_hz`` and is flat
    below it (room and machinery noise has no unbounded rumble), without DC."""
    n_fft = 1 << (n - 1).bit_length()  # shaped at a power-of-two length, which FFTs fastest, then cut
    spectrum = np.fft.rfft(rng.standard_normal(n_fft))
    f = np.maximum(np.fft.rfftfreq(n_fft, 1.0 / sample_rate), flat_below_hz)
    spectrum *= f ** (-slope / 2.0)
    spectrum[0] = 0.0
    return np.fft.irfft(spectrum, n_fft)[:n]


def machinery_hum(n: int, sample_rate: int, mains_hz: tuple[float, ...], motor_hz: tuple[float, float],
                  rng: np.random.Generator) -> np.ndarray:
    """Mains hum (a fundamental from ``mains_hz``) plus a motor tone, each with 8 harmonics decaying in
    amplitude (those above 0.45 of the sample rate dropped), random phases and a slow amplitude wobble."""
    t = np.arange(n) / sample_rate
    mains = mains_hz[rng.integers(len(mains_hz))] * rng.uniform(0.998, 1.002)
    motor = _uniform(rng, motor_hz)
    k = np.arange(1, 9)
    tones = np.zeros(n)
    for fundamental, amps in ((mains, k ** -1.0), (motor, 0.5 * k ** -1.5)):
        coefs = amps * rng.lognormal(0.0, 0.3, len(k)) * np.exp(1j * rng.uniform(0, 2 * np.pi, len(k)))
        # Harmonic h is the h-th power of the fundamental's phasor: products, not 8 evaluations of sin.
        phasor = np.exp(2j * np.pi * fundamental * t)
        power = phasor.copy()
        for h, coef in zip(k, coefs):
            if h * fundamental >= 0.45 * sample_rate:
                break
            tones += (coef * power).imag
            power *= phasor
    wobble = 1.0 + rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * rng.uniform(0.3, 3.0) * t + rng.uniform(0, 6.3))
    return tones * wobble


def impulsive_noise(n: int, sample_rate: int, rate_per_s: float, rng: np.random.Generator) -> np.ndarray:
    """Clanks at Poisson times: a 5-30 ms noise burst plus two or three metallic resonances ringing for
    50-250 ms, with amplitudes spread over 20 dB. All zeros when no clank falls in the clip."""
    out = np.zeros(n)
    count = rng.poisson(rate_per_s * n / sample_rate)
    length = int(0.4 * sample_rate)
    t = np.arange(length) / sample_rate
    top = min(4000.0, 0.4 * sample_rate)
    for start in rng.integers(0, n, size=count):
        burst = rng.standard_normal(length) * np.exp(-t / rng.uniform(0.005, 0.03))
        modes = rng.integers(2, 4)
        ring = (rng.uniform(0.2, 1.0, modes) @ np.sin(2 * np.pi * rng.uniform(400.0, top, modes)[:, None] * t)
                * np.exp(-t / rng.uniform(0.05, 0.25)))
        clank = (burst + ring) * 10.0 ** (rng.uniform(-20.0, 0.0) / 20.0)
        stop = min(n, start + length)
        out[start:stop] += clank[: stop - start]
    return out


ENVIRONMENTS: dict[str, Environment] = {}


def register_environment(environment: Environment) -> Environment:
    ENVIRONMENTS[environment.name] = environment
    return environment


def get_environment(name: str) -> Environment:
    if name not in ENVIRONMENTS:
        raise PredictnasError(f"unknown environment {name!r}; known: {', '.join(sorted(ENVIRONMENTS))}")
    return ENVIRONMENTS[name]


QUIET_HOME = register_environment(Environment(
    name="quiet_home",
    description="living room: short reverb (RT60 0.2-0.4 s), light pink-ish room noise, SNR 25-40 dB",
    rt60_s=(0.2, 0.4), drr_db=(3.0, 10.0), snr_db=(25.0, 40.0), noise_slope=(0.8, 1.6),
))
INDUSTRIAL_WAREHOUSE = register_environment(Environment(
    name="industrial_warehouse",
    description="warehouse hall: long reverb (RT60 1-2 s), 50/60 Hz mains and motor hum with harmonics, "
                "broadband machinery noise, clanks; SNR 0-10 dB",
    rt60_s=(1.0, 2.0), drr_db=(-3.0, 3.0), snr_db=(0.0, 10.0), noise_slope=(0.5, 1.5),
    hum_share=(0.3, 0.5), impulse_share=(0.1, 0.3), impulses_per_s=(0.3, 1.5),
))
