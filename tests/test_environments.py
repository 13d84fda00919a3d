"""Acoustic environments: the render contract, the rooms' reverberation and the noise fields."""

import time

import numpy as np
import pytest

from predictnas.data.environments import (ENVIRONMENTS, fft_convolve, get_environment, impulsive_noise,
                                          machinery_hum, room_impulse_response)
from predictnas.errors import PredictnasError


def speech_like(sample_rate: int, seconds: float = 2.5) -> np.ndarray:
    """Voiced bursts with silence around them: enough structure for power and reverb checks."""
    rng = np.random.default_rng(0)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    envelope = ((t > 0.3) & (t < seconds - 0.6)) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t))
    voiced = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 20))
    return (0.2 * envelope * (voiced + 0.3 * rng.standard_normal(len(t)))).astype(np.float32)


def decay_time(rir: np.ndarray, sample_rate: int, drop_db: float = 30.0) -> float:
    """Seconds for the backward-integrated energy of the reverberant tail to fall by ``drop_db``, x 60/drop."""
    tail = rir[1:] ** 2
    edc = 10 * np.log10(np.cumsum(tail[::-1])[::-1] / tail.sum())
    return np.argmax(edc < -drop_db) / sample_rate * 60.0 / drop_db


def test_registry():
    assert {"quiet_home", "industrial_warehouse"} <= set(ENVIRONMENTS)
    assert get_environment("quiet_home") is ENVIRONMENTS["quiet_home"]
    with pytest.raises(PredictnasError, match="unknown environment 'moon'.*quiet_home"):
        get_environment("moon")


@pytest.mark.parametrize("name", ["quiet_home", "industrial_warehouse"])
@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_render_contract(name, sample_rate):
    env, clean = get_environment(name), speech_like(sample_rate)
    noisy, snr_db = env.render(clean, sample_rate, np.random.default_rng(3))
    again, snr_again = env.render(clean, sample_rate, np.random.default_rng(3))
    assert np.array_equal(noisy, again) and snr_db == snr_again
    assert noisy.dtype == np.float32 and noisy.shape == clean.shape and np.all(np.isfinite(noisy))
    assert 0.3 - 1e-6 <= np.max(np.abs(noisy)) <= 0.9 + 1e-6
    speech, noise, snr = env.render_components(clean, sample_rate, np.random.default_rng(3))
    assert snr == snr_db and round(snr, 2) == snr and env.snr_db[0] <= snr <= env.snr_db[1]
    assert np.allclose(speech + noise, noisy, atol=1e-6)
    measured = 10 * np.log10(np.mean(speech.astype(float) ** 2) / np.mean(noise.astype(float) ** 2))
    assert measured == pytest.approx(snr, abs=1e-3)
    snrs = [env.render(clean, sample_rate, np.random.default_rng(s))[1] for s in range(40)]
    assert env.snr_db[0] <= min(snrs) < max(snrs) <= env.snr_db[1]
    with pytest.raises(ValueError):
        env.render(np.zeros(1000, np.float32), sample_rate, np.random.default_rng(0))


def test_room_impulse_responses_decay_at_their_rt60():
    for rt60 in (0.3, 1.5):
        rir = room_impulse_response(16000, rt60, drr_db=0.0, rng=np.random.default_rng(1))
        assert rir[0] == 1.0 and len(rir) == pytest.approx(rt60 * 16000, abs=2)
        assert np.sum(rir[1:] ** 2) == pytest.approx(1.0)  # 0 dB direct-to-reverberant ratio
        assert decay_time(rir, 16000) == pytest.approx(rt60, rel=0.2)
    x, h = np.random.default_rng(2).standard_normal(1000), np.random.default_rng(3).standard_normal(300)
    assert np.allclose(fft_convolve(x, h), np.convolve(x, h))


def test_warehouse_is_more_reverberant_humming_and_impulsive_than_home():
    clean, sr = speech_like(16000), 16000
    home, hall = get_environment("quiet_home"), get_environment("industrial_warehouse")
    # Reverberation: the energy left after the speech stops, relative to the speech.
    stop = int((2.5 - 0.6) * sr)
    tail = {}
    for env in (home, hall):
        speech, _, _ = env.render_components(clean, sr, np.random.default_rng(4))
        tail[env.name] = np.mean(speech[stop + 1600: stop + 4800] ** 2) / np.mean(speech[:stop] ** 2)
    assert tail["industrial_warehouse"] > 30 * tail["quiet_home"]
    # Hum: a line at 50 or 60 Hz, with harmonics, that home noise lacks.
    hum = machinery_hum(sr * 2, sr, (50.0,), (120.0, 120.0), np.random.default_rng(5))
    spectrum = np.abs(np.fft.rfft(hum))
    peak_hz = np.argmax(spectrum[:160]) / 2  # 0.5 Hz bins
    assert abs(peak_hz - 50) <= 0.5 and spectrum[200] > 100 * np.median(spectrum)  # and its 2nd harmonic
    line_to_floor = {}
    for env in (home, hall):
        _, noise, _ = env.render_components(clean, sr, np.random.default_rng(6))
        power = np.abs(np.fft.rfft(noise)) ** 2
        band = power[(np.fft.rfftfreq(len(noise), 1 / sr) > 40) & (np.fft.rfftfreq(len(noise), 1 / sr) < 70)]
        line_to_floor[env.name] = band.max() / np.median(band)  # about 5 for noise without a line
    assert line_to_floor["industrial_warehouse"] > 100 and line_to_floor["quiet_home"] < 30
    # Clanks: sparse, loud bursts.
    clanks = impulsive_noise(sr * 10, sr, 1.0, np.random.default_rng(7))
    assert np.any(clanks) and np.mean(np.abs(clanks) > 0.01 * np.max(np.abs(clanks))) < 0.5
    assert np.max(np.abs(clanks)) / np.sqrt(np.mean(clanks ** 2)) > 5


def test_rendering_is_fast():
    clean = speech_like(16000, seconds=4.0)
    env = get_environment("industrial_warehouse")
    env.render(clean, 16000, np.random.default_rng(0))
    start = time.perf_counter()
    for seed in range(10):
        env.render(clean, 16000, np.random.default_rng(seed))
    assert (time.perf_counter() - start) / 10 < 0.1  # about 15 ms here: a vectorized render
