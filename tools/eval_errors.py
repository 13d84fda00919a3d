"""What a subnet gets wrong: word errors by kind and by word, doubled letters, and WER per voice.

    python tools/eval_errors.py --run-dir runs/small [--arch ARCH.json] [--split dev | train | test]
                                [--environment quiet_home] [--limit N] [--top 15] [--json errors.json]

Decodes with the supernet's weights (the largest subnet unless ``--arch``), greedy CTC as
``predictnas eval`` scores it. The WER alone says neither whether a supernet underfits nor which errors
dominate: ``--split train`` against ``--split dev`` separates what the model has not learned from what
voices it never heard cost, and the error kinds show where a character CTC model loses words (a letter
dropped, a doubled letter written once when no blank separates its two copies). ``--limit`` scores a
seeded random subset (the training split is large).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from pathlib import Path

import jiwer
import torch

from predictnas.data.dataset import epoch_batches
from predictnas.data.text import CharTokenizer
from predictnas.errors import PredictnasError
from predictnas.evaluate import bind, speaker_wers, transcripts, word_errors
from predictnas.experiment import load_split, load_trained_supernet
from predictnas.io import read_json
from predictnas.space import SearchSpace, largest_arch

def transcribe(supernet, arch, store) -> list[dict]:
    """Reference, hypothesis and speaker of every utterance of ``store``."""
    return [{"reference": t.reference, "hypothesis": t.hypothesis, "speaker": store.utterances[t.index].speaker}
            for t in transcripts(bind(supernet, arch), epoch_batches(store, batch_seconds=120.0), CharTokenizer())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run-dir", default="runs/default")
    parser.add_argument("--arch", type=Path, help="ARCH.json (default: the largest subnet)")
    parser.add_argument("--split", default="dev")
    parser.add_argument("--environment")
    parser.add_argument("--limit", type=int, default=0, help="score this many utterances drawn at random (seed 0)")
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    supernet = load_trained_supernet(args.run_dir)
    space = SearchSpace(supernet.space)
    arch = space.from_json(read_json(args.arch), source=str(args.arch)) if args.arch else largest_arch(space)
    store = load_split(supernet, args.split, args.run_dir, progress=False)
    if args.environment:
        store = store.filter_environment(args.environment)
    if 0 < args.limit < len(store):
        store = store.select(torch.randperm(len(store), generator=torch.Generator().manual_seed(0))[:args.limit].tolist())
    rows = transcribe(supernet, arch, store)
    errors = word_errors(rows)
    cer = jiwer.cer([r["reference"] for r in rows], [r["hypothesis"] for r in rows])
    n, top = errors["reference_words"], args.top
    print(f"arch {arch.arch_id} on {args.split} {args.environment or 'all environments'}: {len(rows)} utterances, "
          f"{n} words; WER {100 * errors['wer']:.2f} % (substituted {errors['substitutions']}, deleted "
          f"{errors['deletions']}, inserted {errors['insertions']}), CER {100 * cer:.2f} %")
    doubled, doubled_errors = errors["doubled_letter_words"], errors["doubled_letter_errors"]
    others, other_errors = n - doubled, sum(errors["per_word"].values()) - doubled_errors
    print(f"words with a doubled letter: {doubled_errors} of {doubled} wrong ({100 * doubled_errors / max(1, doubled):.0f} %), "
          f"{errors['doubled_written_once']} of them the doubled letter written once; other words: {other_errors} of "
          f"{others} wrong ({100 * other_errors / max(1, others):.0f} %)")
    print("most substituted:", ", ".join(f"{r}->{h} {c}" for (r, h), c in errors["substituted"].most_common(top)))
    print("most deleted:", ", ".join(f"{w} {c}" for w, c in errors["deleted"].most_common(top)))
    print("most inserted:", ", ".join(f"{w} {c}" for w, c in errors["inserted"].most_common(top)))
    print("most errors (errors / occurrences):",
          ", ".join(f"{w} {c}/{errors['words'][w]}" for w, c in errors["per_word"].most_common(top)))
    by_speaker = speaker_wers(rows)
    ranked = sorted(by_speaker.items(), key=lambda item: item[1])
    print(f"{len(ranked)} voices: WER min / median / max {100 * ranked[0][1]:.1f} / "
          f"{100 * statistics.median(by_speaker.values()):.1f} / {100 * ranked[-1][1]:.1f} %; worst: "
          + ", ".join(f"{s} {100 * w:.1f}" for s, w in ranked[::-1][:5]))
    if args.json_path:
        summary = {k: v for k, v in errors.items() if not isinstance(v, Counter)}
        summary.update(cer=cer, arch_id=arch.arch_id, split=args.split, environment=args.environment,
                       speakers=by_speaker, utterances=rows)
        Path(args.json_path).write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    try:
        main()
    except PredictnasError as e:  # bad input: one line, not a traceback
        sys.exit(f"error: {e}")
