"""Evaluation: CTC decoding, WER and CER with jiwer, intent accuracy, per acoustic environment.

``evaluate(model, batches, tokenizer, decoder)`` takes any callable ``model(features, lengths) -> SubnetOutput``
(a supernet bound to an architecture, an extracted subnet, later an ONNX session), so every stage scores
models the same way; ``decoder`` (a :class:`~predictnas.decoding.Decoder`, greedy when omitted) turns
CTC scores into words, and the stages pass the supernet's, :func:`~predictnas.experiment.decoder_for`.
``transcripts`` yields what it scores, one utterance at a time, and ``word_errors`` / ``speaker_wers``
break a list of them down (error analyses).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from typing import Callable, Iterable, Iterator, NamedTuple

import jiwer
import torch
from torch import Tensor

from .decoding import Decoder, GreedyDecoder
from .errors import PredictnasError
from .supernet import SubnetOutput

ALL = "all"


@dataclass(frozen=True)
class EvalResult:
    """Scores per environment, plus ``"all"`` over every utterance. Rates are fractions (0.1 = 10 %)."""

    wer: dict[str, float]
    cer: dict[str, float]
    intent_accuracy: dict[str, float | None]
    utterances: dict[str, int]
    seconds: float

    def to_dict(self) -> dict:
        return asdict(self)


class Transcript(NamedTuple):
    """One utterance as decoded: ``index`` is its position in the batches' store; intents are indices of
    the batches' intent list (-1: none)."""

    reference: str
    hypothesis: str
    environment: str | None
    intent: int
    predicted_intent: int
    index: int


@torch.no_grad()
def transcripts(model: Callable[[Tensor, Tensor], SubnetOutput], batches: Iterable, tokenizer,
                decoder: Decoder | None = None) -> Iterator[Transcript]:
    """Decoded transcript and predicted intent of every utterance of ``batches``, in order."""
    decoder = decoder or GreedyDecoder()
    for batch in batches:
        out = model(batch.features, batch.feature_lengths)
        hypotheses = decoder(out.ctc_logits, out.lengths)
        predicted_intents = out.intent_logits.argmax(-1).tolist()
        for i, hypothesis in enumerate(hypotheses):
            reference = tokenizer.decode(batch.targets[i, :batch.target_lengths[i]].tolist())
            yield Transcript(reference, hypothesis, batch.environments[i], int(batch.intents[i]),
                             predicted_intents[i], int(batch.indices[i]))


def evaluate(model: Callable[[Tensor, Tensor], SubnetOutput], batches: Iterable, tokenizer,
             decoder: Decoder | None = None) -> EvalResult:
    """Score ``model`` on ``batches`` (each with features, lengths, targets, intents, environments)."""
    start = time.perf_counter()
    refs: dict[str, list[str]] = defaultdict(list)
    hyps: dict[str, list[str]] = defaultdict(list)
    intent_hits: dict[str, list[bool]] = defaultdict(list)
    for t in transcripts(model, batches, tokenizer, decoder):
        # an utterance without an environment (user data rarely labels one) counts under "all" only
        for key in ((t.environment, ALL) if t.environment else (ALL,)):
            refs[key].append(t.reference)
            hyps[key].append(t.hypothesis)
            if t.intent >= 0:
                intent_hits[key].append(t.predicted_intent == t.intent)
    if not refs:
        raise PredictnasError("nothing to evaluate: the evaluation set is empty")
    keys = sorted(k for k in refs if k != ALL) + [ALL]
    refs, hyps, intent_hits = ({k: d[k] for k in keys} for d in (refs, hyps, intent_hits))
    return EvalResult(
        wer={k: float(jiwer.wer(refs[k], hyps[k])) for k in refs},
        cer={k: float(jiwer.cer(refs[k], hyps[k])) for k in refs},
        intent_accuracy={k: (sum(intent_hits[k]) / len(intent_hits[k]) if intent_hits[k] else None) for k in refs},
        utterances={k: len(refs[k]) for k in refs},
        seconds=time.perf_counter() - start,
    )


def bind(supernet, arch) -> Callable[[Tensor, Tensor], SubnetOutput]:
    """The supernet in eval mode, restricted to one architecture (shared weights, no extraction)."""
    supernet.eval()
    return lambda features, lengths: supernet(features, arch, lengths)


# ---- error analysis of transcripts (tools/eval_errors.py) ----------------------------------------------

DOUBLED = re.compile(r"(.)\1")  # a doubled letter: CTC writes it once unless a blank separates its copies


def word_errors(rows: list[dict]) -> dict:
    """Substituted pairs, deleted and inserted words, and errors per reference word (jiwer's alignment)."""
    out = jiwer.process_words([r["reference"] for r in rows], [r["hypothesis"] for r in rows])
    substituted, deleted, inserted, per_word, words = Counter(), Counter(), Counter(), Counter(), Counter()
    for ref, hyp, alignment in zip(out.references, out.hypotheses, out.alignments):
        words.update(ref)
        for chunk in alignment:
            ref_span, hyp_span = ref[chunk.ref_start_idx:chunk.ref_end_idx], hyp[chunk.hyp_start_idx:chunk.hyp_end_idx]
            if chunk.type == "substitute":
                substituted.update(zip(ref_span, hyp_span))
                per_word.update(ref_span)
            elif chunk.type == "delete":
                deleted.update(ref_span)
                per_word.update(ref_span)
            elif chunk.type == "insert":
                inserted.update(hyp_span)
    doubled = [w for w in words if DOUBLED.search(w)]
    collapsed = sum(n for (ref, hyp), n in substituted.items() if DOUBLED.search(ref) and DOUBLED.sub(r"\1", ref) == hyp)
    return {
        "wer": out.wer, "substitutions": out.substitutions, "deletions": out.deletions, "insertions": out.insertions,
        "reference_words": sum(words.values()), "substituted": substituted, "deleted": deleted, "inserted": inserted,
        "per_word": per_word, "words": words,
        "doubled_letter_words": sum(words[w] for w in doubled), "doubled_letter_errors": sum(per_word[w] for w in doubled),
        "doubled_written_once": collapsed,
    }


def speaker_wers(rows: list[dict]) -> dict[str, float]:
    by_speaker = defaultdict(list)
    for r in rows:
        by_speaker[r["speaker"] or "unknown"].append(r)
    return {s: jiwer.wer([r["reference"] for r in rs], [r["hypothesis"] for r in rs]) for s, rs in by_speaker.items()}
