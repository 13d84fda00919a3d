"""Verify's report: ``verify.json``, ``report.md`` and the plots, from the per-model results.

Everything printed is computed from the results: the table (model, WER per environment, intent
accuracy, params, measured and predicted latency, training and search time), whether each NAS pick met
its budget (measured <= budget x 1.05), predicted vs measured errors, the rank agreement (Kendall tau)
between supernet-inherited and fine-tuned WER, and how the best NAS pick compares with the best
hand-crafted baseline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .decoding import describe
from .io import atomic_path
from .ranking import kendall
from .rundir import VerifyFiles
from .verification import Verification

BUDGET_TOLERANCE = 1.05


def summarize(verification: dict) -> dict:
    models = verification["models"]
    budget = verification.get("budget_ms")
    summary: dict = {}
    nas = [m for m in models if m["kind"] == "nas"]
    baselines = [m for m in models if m["kind"] == "baseline"]
    finetuned = predicts_finetuned(verification)
    for m in nas:
        measured_ms = m["measured"]["latency"]["ms"]
        m["budget_met"] = None if budget is None else bool(measured_ms <= budget * BUDGET_TOLERANCE)
        predicted_wer = predicted_wer_of(m)
        m["wer_error_points"] = None if predicted_wer is None else 100 * (m["measured"]["wer"]["all"] - predicted_wer)
        # shared-weight predictions are of the inherited WER; calibrated ones are not
        m["inherited_wer_error_points"] = (None if predicted_wer is None or finetuned
                                           else 100 * (m["inherited"]["wer"]["all"] - predicted_wer))
    if len(models) >= 3:
        summary["kendall_inherited_vs_finetuned"] = kendall([m["inherited"]["wer"]["all"] for m in models],
                                                            [m["measured"]["wer"]["all"] for m in models])
    if nas and baselines:
        best_base = min(baselines, key=lambda m: m["measured"]["wer"]["all"])
        best_nas = min(nas, key=lambda m: m["measured"]["wer"]["all"])
        summary["best_baseline"] = {"name": best_base["name"], "wer": best_base["measured"]["wer"]["all"],
                                    "latency_ms": best_base["measured"]["latency"]["ms"]}
        summary["best_nas"] = {"name": best_nas["name"], "wer": best_nas["measured"]["wer"]["all"],
                               "latency_ms": best_nas["measured"]["latency"]["ms"]}
        # the goal: the baseline's WER at no more than half its latency
        matching = [m for m in nas if m["measured"]["wer"]["all"] <= best_base["measured"]["wer"]["all"]]
        fastest = min(matching, key=lambda m: m["measured"]["latency"]["ms"]) if matching else None
        summary["nas_matching_best_baseline"] = None if fastest is None else {
            "name": fastest["name"], "latency_ratio": fastest["measured"]["latency"]["ms"] / best_base["measured"]["latency"]["ms"]}
    return summary


def predicts_finetuned(verification: dict) -> bool:
    """Whether the search predicted fine-tuned WER (``search --finetune-calibration``), not shared-weight WER."""
    return str((verification.get("predictor") or {}).get("target", "")).startswith("finetuned")


def predicted_wer_of(model: dict) -> float | None:
    """The search's best prediction of the WER verify measures: from the finalist's measured shared-weight CER
    where the search rescored it through a calibration, else the predictor's."""
    predicted = model["predicted"]
    return predicted.get("finetuned_wer", predicted.get("wer"))


def write_report(verification: dict, out: VerifyFiles) -> None:
    verification["summary"] = summarize(verification)
    Verification(verification).save(out.report_json)
    with atomic_path(out.report_md) as tmp:
        tmp.write_text(markdown(verification))
    plot(verification, out.plot)


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def markdown(v: dict) -> str:
    models = v["models"]
    environments = sorted({e for m in models for e in m["measured"]["wer"] if e != "all"})
    lines = ["# predictnas verify report", ""]
    settings = v["settings"]
    mode = "from scratch" if settings["from_scratch"] else "fine-tuned from supernet weights"
    if settings.get("baselines_from_scratch") and not settings["from_scratch"]:
        mode = "NAS picks fine-tuned from supernet weights, baselines from scratch"
    budget = "-" if v.get("budget_ms") is None else f"{v['budget_ms']:g} ms"
    lines.append(f"Device `{v['device']['id']}`, {settings['finetune_steps']} training steps per model ({mode}), "
                 f"{settings['split']} split (unseen voices). Latency budget: {budget}. Predicted WER: "
                 f"{'after fine-tuning (calibrated)' if predicts_finetuned(v) else 'with the supernet weights'}. "
                 f"Transcripts decoded with {describe(v.get('decoding'))}.")
    for w in v.get("warnings", []):
        lines.append(f"\n> warning: {w}")
    lines += ["", "| model | params | " + " | ".join(f"WER {e} %" for e in environments) +
              " | WER all % | intent acc % | latency measured ms | latency predicted ms | predicted WER % | "
              "inherited WER % | train s |",
              "|---" * (9 + len(environments)) + "|"]
    for m in models:
        meas = m["measured"]
        lines.append(
            f"| {m['name']} | {m['params']:,} | " + " | ".join(_pct(meas["wer"].get(e)) for e in environments) +
            f" | {_pct(meas['wer']['all'])} | {_pct(meas['intent_accuracy']['all'])} | {meas['latency']['ms']:.2f} | "
            f"{m['predicted'].get('latency_ms', m['lut_latency_ms']):.2f} | {_pct(predicted_wer_of(m))} | "
            f"{_pct(m['inherited']['wer']['all'])} | {m['training']['seconds']:.0f} |")
    s = v.get("summary", {})
    lines.append("")
    for m in models:
        if m["kind"] == "nas" and m.get("budget_met") is not None:
            timings = m["measured"]["latency"].get("repeats_ms", [])
            spread = f" (median of {len(timings)}: {min(timings):.2f}-{max(timings):.2f})" if len(timings) > 1 else ""
            lines.append(f"- {m['name']}: measured {m['measured']['latency']['ms']:.2f} ms{spread} vs budget "
                         f"{v['budget_ms']:g} ms x {BUDGET_TOLERANCE} -> {'met' if m['budget_met'] else 'MISSED'}; "
                         f"|predicted - measured| WER {abs(m['wer_error_points']):.2f} points")
        if "production" in m:
            p = m["production"]
            lines.append(f"- {m['name']} at {p['sample_rate']} Hz production audio: WER {_pct(p['wer']['all'])} % "
                         f"(vs {_pct(m['measured']['wer']['all'])} % at the model's rate)")
    if "kendall_inherited_vs_finetuned" in s:
        lines.append(f"- rank agreement of supernet-inherited and fine-tuned WER: Kendall tau "
                     f"{s['kendall_inherited_vs_finetuned']:.3f} over {len(models)} models")
    if "best_baseline" in s:
        b, n = s["best_baseline"], s["best_nas"]
        lines.append(f"- best hand-crafted: {b['name']} WER {_pct(b['wer'])} % at {b['latency_ms']:.2f} ms; best NAS pick: "
                     f"{n['name']} WER {_pct(n['wer'])} % at {n['latency_ms']:.2f} ms")
        match = s["nas_matching_best_baseline"]
        lines.append("- no NAS pick matches the best baseline's WER" if match is None else
                     f"- {match['name']} matches the best baseline's WER at {100 * match['latency_ratio']:.0f} % of its latency")
    search = v.get("search") or {}
    if search:
        lines.append(f"- search: {search.get('candidates', 0):,} candidates scored in {search.get('seconds', 0):.1f} s")
    return "\n".join(lines) + "\n"


def plot(v: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = v["models"]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    measured_ms = np.array([m["measured"]["latency"]["ms"] for m in models])
    predicted_ms = np.array([m["predicted"].get("latency_ms", m["lut_latency_ms"]) for m in models])
    measured_wer = np.array([100 * m["measured"]["wer"]["all"] for m in models])
    colors = ["tab:blue" if m["kind"] == "nas" else "tab:orange" for m in models]
    ax = axes[0]
    ax.scatter(predicted_ms, measured_ms, c=colors)
    lim = [0, 1.1 * max(predicted_ms.max(), measured_ms.max())]
    ax.plot(lim, lim, "k--", lw=1)
    ax.set(xlabel="predicted latency (ms)", ylabel="measured latency (ms)", title="latency")
    ax = axes[1]
    nas = [i for i, m in enumerate(models) if predicted_wer_of(m) is not None]
    if nas:
        pw = np.array([100 * predicted_wer_of(models[i]) for i in nas])
        ax.scatter(pw, measured_wer[nas], c="tab:blue", label="fine-tuned")
        ax.scatter(pw, [100 * models[i]["inherited"]["wer"]["all"] for i in nas], c="tab:gray", marker="x",
                   label="supernet weights")
        lo, hi = min(pw.min(), measured_wer.min()), max(pw.max(), measured_wer.max())
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.legend()
    ax.set(xlabel="predicted WER (%)", ylabel="measured WER (%)", title="WER")
    ax = axes[2]
    for m, x, y, c in zip(models, measured_ms, measured_wer, colors):
        ax.scatter(x, y, c=c)
        ax.annotate(m["name"], (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    if v.get("budget_ms"):
        ax.axvline(v["budget_ms"], color="red", ls=":", label=f"budget {v['budget_ms']:g} ms")
        ax.legend()
    ax.set(xlabel="measured latency (ms)", ylabel="measured WER (%)", title="NAS picks (blue) vs hand-crafted (orange)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
