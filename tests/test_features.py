"""Features, SpecAugment, the feature cache and batching, on audio the tests write themselves."""

import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from predictnas.data.dataset import FeatureStore, SpeechBatches, collate, epoch_batches, make_batches
from predictnas.data.features import FeatureConfig, SpecAugment, log_mel
from predictnas.data.manifest import Utterance
from predictnas.errors import PredictnasError


def sweep(seconds: float, sample_rate: int, seed: int = 0) -> np.ndarray:
    t = np.arange(int(round(seconds * sample_rate))) / sample_rate
    noise = 0.02 * np.random.default_rng(seed).standard_normal(t.size)
    return (0.3 * np.sin(2 * np.pi * (150 + 500 * t) * t) + noise).astype(np.float32)


@pytest.fixture
def corpus(tmp_path) -> list[Utterance]:
    """Twelve short WAV clips of 0.2 to 1.3 s in two environments, three with intents."""
    utts = []
    for i in range(12):
        seconds = 0.2 + 0.1 * i
        path = tmp_path / "audio" / f"u{i:02d}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, sweep(seconds, 16000, seed=i), 16000)
        utts.append(Utterance(str(path), f"Utterance number {'one two three'.split()[i % 3]}", seconds,
                              intent=["lights_on", "timer", None][i % 3],
                              environment=["quiet_home", "industrial_warehouse"][i % 2]))
    return utts


@pytest.mark.parametrize("sample_rate", [16000, 8000])
def test_log_mel_shape_frame_rate_and_normalisation(sample_rate):
    config = FeatureConfig(sample_rate=sample_rate)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no empty-filterbank or other warnings at either rate
        feats = log_mel(torch.from_numpy(sweep(1.5, sample_rate)), config)
    assert config.frames_per_second == 100
    assert feats.shape == (151, 80) == (config.num_frames(int(1.5 * sample_rate)), config.n_mels)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()
    assert feats.mean(dim=0).abs().max() < 1e-4
    assert torch.allclose(feats.std(dim=0, unbiased=False), torch.ones(80), atol=1e-3)


def test_feature_config_round_trip_and_validation():
    config = FeatureConfig(sample_rate=8000, n_mels=40, hop_ms=20.0)
    assert FeatureConfig.from_dict(config.to_dict()) == config
    assert config.frames_per_second == 50 and config.fft_size == 512
    with pytest.raises(PredictnasError, match="mel filters contain no FFT bin"):
        FeatureConfig(sample_rate=8000, n_mels=128, n_fft=256)
    with pytest.raises(PredictnasError, match="f_max"):
        FeatureConfig(sample_rate=8000, f_max=6000.0)
    with pytest.raises(PredictnasError, match="unknown keys"):
        FeatureConfig.from_dict({"sample_rate": 16000, "bogus": 1})


def test_spec_augment_masks_only_in_training_and_is_seeded():
    feats = torch.randn(3, 200, 80) + 10.0  # no zeros before masking
    lengths = torch.tensor([200, 150, 60])
    feats[1, 150:] = 0
    feats[2, 60:] = 0
    aug = SpecAugment(generator=torch.Generator().manual_seed(0)).eval()
    assert torch.equal(aug(feats, lengths), feats)
    aug.train()
    masked = aug(feats, lengths)
    assert masked.shape == feats.shape and not torch.equal(masked, feats)
    assert ((masked == 0) & (feats != 0)).any(dim=(1, 2)).all()  # every utterance got masks
    again = SpecAugment(generator=torch.Generator().manual_seed(0)).train()(feats, lengths)
    assert torch.equal(masked, again)
    assert torch.equal(SpecAugment().train()(feats, lengths, torch.Generator().manual_seed(0)), masked)
    torch.manual_seed(7)
    a = SpecAugment().train()(feats, lengths)
    torch.manual_seed(7)
    assert torch.equal(a, SpecAugment().train()(feats, lengths))
    # Time masks stay within 5% of each utterance's own length, plus at most 2 x 15 frequency bands.
    for _ in range(20):
        zero_frames = (aug(feats, lengths)[2] == 0).all(dim=1)
        assert zero_frames[60:].all() and zero_frames[:60].sum() <= 2 * 3


def test_feature_store_computes_once_then_loads_the_cache(tmp_path, corpus):
    config = FeatureConfig()
    store = FeatureStore.build(corpus, config, tmp_path / "cache", progress=False)
    assert store.computed and store.path.is_file() and store.path.parent == tmp_path / "cache"
    assert len(store) == 12 and store.features[3].shape == (config.num_frames(int(0.5 * 16000)), 80)
    first = store.path.stat().st_mtime_ns

    again = FeatureStore.build(corpus, config, tmp_path / "cache", progress=False)
    assert not again.computed and again.path == store.path
    assert again.path.stat().st_mtime_ns == first
    assert again.utterances == store.utterances and again.texts[0] == "utterance number one"
    assert all(torch.equal(a, b) for a, b in zip(again.features, store.features))
    # Another feature config, or a replaced audio file, is another cache file.
    other = FeatureStore.build(corpus[:3], FeatureConfig(n_mels=40), tmp_path / "cache", progress=False)
    assert other.computed and other.path != store.path and other.features[0].shape[1] == 40
    store.path.write_bytes(b"not a cache")  # a damaged cache is recomputed, not trusted
    assert FeatureStore.build(corpus, config, tmp_path / "cache", progress=False).computed
    assert FeatureStore.load(store.path).utterances == store.utterances
    sf.write(corpus[0].audio_filepath, sweep(0.2, 16000, seed=99), 16000)
    os.utime(corpus[0].audio_filepath, ns=(first + 10**9, first + 10**9))
    assert FeatureStore.build(corpus, config, tmp_path / "cache", progress=False).computed


def test_worker_pool_matches_the_in_process_loop(tmp_path, corpus):
    many = corpus * 6  # enough utterances to start the worker processes
    serial = FeatureStore.build(many, FeatureConfig(), None, workers=1, progress=False)
    pooled = FeatureStore.build(many, FeatureConfig(), None, workers=2, progress=False)
    assert pooled.path is None and all(torch.equal(a, b) for a, b in zip(serial.features, pooled.features))
    # A worker's user error reaches the caller as the same one-line error.
    clip = Path(tmp_path / "audio" / "at8k.wav")
    sf.write(clip, sweep(0.3, 8000), 8000)
    with pytest.raises(PredictnasError, match="8000 Hz, but the experiment runs at 16000 Hz"):
        FeatureStore.build(corpus + [Utterance(str(clip), "x", 0.3)], FeatureConfig(), None, progress=False)
    resampled = FeatureStore.build([Utterance(str(clip), "x", 0.3)], FeatureConfig(), None, resample=True,
                                   progress=False)
    assert resampled.features[0].shape == (31, 80)


def test_batches_cover_every_utterance_once_with_zero_padding(tmp_path, corpus):
    store = FeatureStore.build(corpus, FeatureConfig(), None, progress=False)
    for kwargs in ({"batch_size": 5}, {"batch_seconds": 2.5}, {"batch_seconds": 0.1}):
        batches = make_batches(store, shuffle=True, generator=torch.Generator().manual_seed(1), **kwargs)
        assert sorted(i for b in batches for i in b) == list(range(12))
        if "batch_size" in kwargs:
            assert max(map(len, batches)) <= 5
        else:  # padded frames within budget, unless one utterance alone exceeds it
            budget = kwargs["batch_seconds"] * 100
            assert all(len(b) == 1 or len(b) * max(store.num_frames[b]) <= budget for b in batches)
    assert make_batches(store, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3)) == \
        make_batches(store, batch_size=4, shuffle=True, generator=torch.Generator().manual_seed(3))
    # The number and sizes of batches never depend on the shuffling, so every epoch has as many steps.
    sizes = {tuple(sorted(map(len, make_batches(store, batch_seconds=2.0, shuffle=shuffle,
                                                generator=torch.Generator().manual_seed(seed)))))
             for seed in range(5) for shuffle in (False, True)}
    assert len(sizes) == 1
    # Sorted by length without shuffling: the padding is minimal.
    assert make_batches(store, batch_size=4) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]

    batch = collate([store[i] for i in (0, 7, 3)], intents=["timer", "lights_on"])
    assert batch.features.shape == (3, 91, 80) and batch.features.dtype == torch.float32
    assert batch.feature_lengths.tolist() == [21, 91, 51]
    for row, n in enumerate(batch.feature_lengths.tolist()):
        assert torch.equal(batch.features[row, :n], store.features[batch.indices[row]].float())
        assert (batch.features[row, n:] == 0).all()
    assert batch.target_lengths.tolist() == [len("utterance number one"), len("utterance number two"),
                                             len("utterance number one")]
    assert batch.targets.shape == (3, 20) and batch.targets.dtype == torch.int64
    assert batch.intents.tolist() == [1, 0, 1]
    assert batch.environments == ["quiet_home", "industrial_warehouse", "industrial_warehouse"]
    assert batch.texts[1] == "utterance number two"

    lazy = epoch_batches(store, ["timer"], batch_size=5, shuffle=True, generator=torch.Generator().manual_seed(2))
    assert len(lazy) == 3 and sorted(len(b.indices) for b in lazy) == [2, 5, 5]
    for b in lazy:
        assert b.intents.tolist() == [0 if store.utterances[i].intent == "timer" else -1 for i in b.indices]
    assert sorted(i for b in lazy for i in b.indices.tolist()) == list(range(12))

    epochs = SpeechBatches(store, intents=store.intents, batch_seconds=3.0, shuffle=True, seed=5)
    orders = []
    for _ in range(2):
        n_batches = len(epochs)
        seen = [i for b in epochs for i in b.indices.tolist()]
        assert sorted(seen) == list(range(12)) and n_batches >= 2
        orders.append(seen)
    assert orders[0] != orders[1]  # a new order every epoch
    epochs.set_epoch(0)
    assert [i for b in epochs for i in b.indices.tolist()] == orders[0]  # resumable


def test_filter_by_environment(corpus):
    store = FeatureStore.build(corpus, FeatureConfig(), None, progress=False)
    assert store.environments == ["industrial_warehouse", "quiet_home"]
    assert store.intents == ["lights_on", "timer"]
    quiet = store.filter_environment("quiet_home")
    assert len(quiet) == 6 and {u.environment for u in quiet.utterances} == {"quiet_home"}
    assert quiet.features[1] is not None and quiet.features[1].data_ptr() == store.features[2].data_ptr()
    assert sorted(store.by_environment()) == store.environments
    with pytest.raises(PredictnasError, match="'office'.*industrial_warehouse, quiet_home"):
        store.filter_environment("office")
