"""CTC decoding: from per-frame character scores to words.

Every stage that scores a model (``sample``, ``calibrate``, ``verify``, ``evaluate``) decodes with the
decoder of the data the supernet was trained on, :func:`~predictnas.experiment.decoder_for`: a lexicon-
constrained beam search over the words of the training transcripts. The default corpus is a closed
command grammar (a few hundred words), and on-device command recognisers decode against their
vocabulary; greedy best-path decoding spells out character errors as non-words, so a weak subnet's WER
sits at 100 % whatever its CER, and WER stops ranking subnets (issue 5). :class:`GreedyDecoder` stays
for open-vocabulary use and for artifacts written before decoders were recorded.

A decoder's :meth:`~Decoder.spec` is a small JSON-able dict that names it exactly; the evaluation store
is stamped with it and ``top.json`` carries it, so a WER is only ever compared with one decoded alike.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Iterable, Sequence

import torch

from .data.text import SYMBOLS, CharTokenizer
from .errors import PredictnasError

GREEDY_SPEC = {"kind": "greedy"}
DEFAULT_BEAM_SIZE = 20


class Decoder:
    """Contract: ``decoder(logits, lengths)`` takes a batch of CTC scores ``(B, T, V)`` over
    :data:`~predictnas.data.text.SYMBOLS` and the valid frames of each row, and returns ``B`` normalised
    transcripts (words separated by single spaces). ``spec()`` names the decoder exactly: two decoders
    with equal specs decode every input alike."""

    def __call__(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        raise NotImplementedError

    def spec(self) -> dict:
        raise NotImplementedError


class GreedyDecoder(Decoder):
    """Best path: the most likely symbol per frame, repeats merged, blanks dropped. Any string can come
    out, words outside the training vocabulary included."""

    def __init__(self) -> None:
        self._tokenizer = CharTokenizer()

    def __call__(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        return self._tokenizer.greedy_ctc_decode(logits, lengths)

    def spec(self) -> dict:
        return dict(GREEDY_SPEC)


class LexiconDecoder(Decoder):
    """Beam search whose hypotheses are sequences of lexicon words (flashlight's lexicon decoder, through
    torchaudio), without a language model: every word of the lexicon is equally likely a priori."""

    def __init__(self, words: Iterable[str], beam_size: int = DEFAULT_BEAM_SIZE) -> None:
        self.words = tuple(sorted(set(words)))
        if not self.words:
            raise PredictnasError("lexicon decoding needs at least one word; the training transcripts are empty")
        allowed = set(SYMBOLS[1:]) - {" "}
        bad = next((w for w in self.words if not w or set(w) - allowed), None)
        if bad is not None:
            raise PredictnasError(f"lexicon word {bad!r} is not a normalised word (a-z and apostrophe only)")
        self.beam_size = int(beam_size)
        self._decoder = _flashlight_decoder(self.words, self.beam_size)

    def __call__(self, logits: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        emissions = torch.log_softmax(logits.detach().float(), dim=-1).cpu().contiguous()
        hypotheses = self._decoder(emissions, torch.as_tensor(lengths).cpu().to(torch.int32))
        return [" ".join(w for w in best[0].words if w and w != "<unk>") if best else "" for best in hypotheses]

    def spec(self) -> dict:
        digest = hashlib.sha256("\n".join(self.words).encode()).hexdigest()[:16]
        return {"kind": "lexicon", "beam_size": self.beam_size, "words": len(self.words), "lexicon_hash": digest}


def lexicon_of(transcripts: Iterable[str]) -> list[str]:
    """The distinct words of ``transcripts`` (normalised text), sorted."""
    return sorted({word for text in transcripts for word in text.split()})


def same_decoding(a: dict | None, b: dict | None) -> bool:
    """Whether two recorded specs name the same decoding; a missing spec is greedy (written before
    decoders were recorded)."""
    return (a or GREEDY_SPEC) == (b or GREEDY_SPEC)


def describe(spec: dict | None) -> str:
    spec = spec or GREEDY_SPEC
    if spec["kind"] == "lexicon":
        return f"lexicon beam search ({spec['words']} words, beam {spec['beam_size']}, lexicon {spec['lexicon_hash']})"
    return "greedy best-path decoding"


def _flashlight_decoder(words: Sequence[str], beam_size: int):
    try:
        from torchaudio.models.decoder import ctc_decoder
    except (ImportError, RuntimeError) as e:  # torchaudio raises RuntimeError when flashlight-text is missing
        raise PredictnasError(f"lexicon decoding needs the flashlight-text package ({e})") from None
    # flashlight reads the lexicon from a file: one word per line, its spelling, then the word boundary
    tokens = ["-", "|"] + list(SYMBOLS[2:])  # the blank, the word boundary (space), then ' and a..z
    with tempfile.TemporaryDirectory() as tmp:
        lexicon = Path(tmp) / "lexicon.txt"
        lexicon.write_text("".join(f"{w}\t{' '.join(w)} |\n" for w in words))
        return ctc_decoder(lexicon=str(lexicon), tokens=tokens, lm=None, nbest=1, beam_size=beam_size,
                           blank_token="-", sil_token="|", unk_word="<unk>", log_add=False)
