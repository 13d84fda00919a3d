"""CTC decoders: greedy best path and lexicon-constrained beam search (flashlight, through torchaudio)."""

import pytest
import torch

from predictnas.data.text import SYMBOLS
from predictnas.decoding import GreedyDecoder, LexiconDecoder, describe, lexicon_of, same_decoding
from predictnas.errors import PredictnasError

INDEX = {s: i for i, s in enumerate(SYMBOLS)}


def _scores(frames: list[list[tuple[str, float]]]) -> torch.Tensor:
    """(1, T, V) logits: every listed symbol of a frame gets its score, the rest -4."""
    logits = torch.full((1, len(frames), len(SYMBOLS)), -4.0)
    for t, frame in enumerate(frames):
        for symbol, score in frame:
            logits[0, t, INDEX[symbol]] = score
    return logits


def _spelled(text: str, confusions: dict[int, str] | None = None) -> list[list[tuple[str, float]]]:
    """One frame per character with a blank between, the character at 2.0; at the character positions in
    ``confusions`` another letter wins (3.0), as a weak acoustic model would have it."""
    frames = []
    for i, ch in enumerate(text):
        symbol = " " if ch == " " else ch
        frame = [(symbol, 2.0)]
        if confusions and i in confusions:
            frame.append((confusions[i], 3.0))
        frames += [frame, [("<blank>", 2.0)]]
    return frames


LEXICON = lexicon_of(["turn on the lights", "turn off the heating", "lights off"])


def test_lexicon_decoding_spells_only_words_of_the_lexicon():
    logits = _scores(_spelled("turn on the lights", {3: "m", 13: "o"}))
    lengths = torch.tensor([logits.shape[1]])
    assert GreedyDecoder()(logits, lengths) == ["turm on the loghts"]  # two words wrong: 50 % WER
    assert LexiconDecoder(LEXICON)(logits, lengths) == ["turn on the lights"]


def test_lexicon_decoding_reads_only_the_valid_frames_of_each_row():
    a, b = _spelled("lights off"), _spelled("turn on")
    frames = max(len(a), len(b))
    logits = torch.cat([_scores(a + [[("<blank>", 2.0)]] * (frames - len(a))),
                        _scores(b + [[("l", 5.0)]] * (frames - len(b)))])  # padding that would spell words
    assert LexiconDecoder(LEXICON)(logits, torch.tensor([len(a), len(b)])) == ["lights off", "turn on"]


def test_decoder_specs_name_the_decoding_exactly():
    spec = LexiconDecoder(LEXICON).spec()
    assert spec == LexiconDecoder(list(reversed(LEXICON)) + LEXICON).spec()  # order and repeats do not matter
    assert spec != LexiconDecoder(LEXICON + ["heat"]).spec() and spec != LexiconDecoder(LEXICON, beam_size=5).spec()
    assert spec["kind"] == "lexicon" and spec["words"] == len(LEXICON) == 6
    assert same_decoding(None, GreedyDecoder().spec())  # a record from before decoders were recorded is greedy
    assert not same_decoding(None, spec)
    assert "6 words" in describe(spec) and describe(None) == "greedy best-path decoding"


def test_a_lexicon_that_is_empty_or_not_normalised_is_refused():
    with pytest.raises(PredictnasError, match="at least one word"):
        LexiconDecoder([])
    with pytest.raises(PredictnasError, match="not a normalised word"):
        LexiconDecoder(["Lights"])
