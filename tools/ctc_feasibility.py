"""How much of the CTC output each utterance needs: labels plus a blank between doubled letters, over the
output frames of the model (the heads run at a quarter of the feature rate whatever the subnet).

    python tools/ctc_feasibility.py [--preset small] [--json ctc.json]

Prints, per split of the corpus, the hours, characters per second, the share of output frames the
transcripts need (median, 99th percentile, max) and how many utterances no alignment fits.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from predictnas.data.corpus import SPLITS, build_corpus, default_corpus_root, get_recipe
from predictnas.data.manifest import load_dataset
from predictnas.data.text import CharTokenizer, normalize
from predictnas.supernet.subnet import output_lengths
from predictnas.train import ctc_infeasible


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--frames-per-second", type=float, default=100.0, help="feature frames per second")
    parser.add_argument("--json", dest="json_path")
    args = parser.parse_args()

    info = build_corpus(default_corpus_root(), get_recipe(args.preset))
    tokenizer, report = CharTokenizer(), {}
    print(f"{'split':<7}{'utterances':>11}{'hours':>7}{'chars/s':>9}{'need median':>13}{'p99':>6}{'max':>6}"
          f"{'infeasible':>12}")
    for split in SPLITS:
        utterances = load_dataset(info.manifest(split))
        frames = torch.tensor([round(u.duration * args.frames_per_second) for u in utterances])
        targets = [torch.tensor(tokenizer.encode(normalize(u.text))) for u in utterances]
        needed = np.array([t.numel() + int((t[1:] == t[:-1]).sum()) for t in targets])
        share = needed / output_lengths(frames).numpy()
        seconds = np.array([u.duration for u in utterances])
        chars = np.array([len(normalize(u.text)) for u in utterances])
        row = {"utterances": len(utterances), "hours": float(seconds.sum() / 3600),
               "chars_per_second": float(np.median(chars / seconds)),
               "need_share": {"median": float(np.median(share)), "p99": float(np.percentile(share, 99)),
                              "max": float(share.max())},
               "infeasible": int(ctc_infeasible(frames, targets).sum())}
        report[split] = row
        print(f"{split:<7}{row['utterances']:>11}{row['hours']:>7.2f}{row['chars_per_second']:>9.1f}"
              f"{row['need_share']['median']:>13.2f}{row['need_share']['p99']:>6.2f}{row['need_share']['max']:>6.2f}"
              f"{row['infeasible']:>12}")
    if args.json_path:
        with open(args.json_path, "w") as f:
            json.dump({"preset": args.preset, "splits": report}, f, indent=2)


if __name__ == "__main__":
    main()
