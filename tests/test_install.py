"""The installed torch family works together: a torch / torchaudio pair that does not load fails here,
in one clear test, before every stage that touches audio fails in its own way."""

import numpy as np
import torch


def test_torchaudio_loads_its_compiled_extension_with_this_torch():
    import torchaudio

    assert torchaudio.__version__.split("+")[0].split(".")[:2] == torch.__version__.split("+")[0].split(".")[:2]
    spectrogram = torchaudio.compliance.kaldi.fbank(torch.randn(1, 16000), num_mel_bins=80)
    assert spectrogram.shape[1] == 80
    resampled = torchaudio.functional.resample(torch.randn(1, 16000), 16000, 8000)
    assert resampled.shape == (1, 8000)


def test_the_ctc_lexicon_decoder_loads_and_decodes():
    from predictnas.data.text import SYMBOLS
    from predictnas.decoding import LexiconDecoder

    decoder = LexiconDecoder(["lights", "on", "off"])
    frames = "_lliigghhttss_ _oonn_"  # "_": the CTC blank
    logits = np.full((len(frames), len(SYMBOLS)), -10.0, dtype=np.float32)
    for t, ch in enumerate(frames):
        logits[t, 0 if ch == "_" else SYMBOLS.index(ch)] = 0.0
    assert decoder(torch.from_numpy(logits)[None], torch.tensor([len(frames)])) == ["lights on"]
