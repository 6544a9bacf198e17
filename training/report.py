"""The Markdown training report: quality table, PR curves, score histograms, confusion matrices and the
messages the model gets most wrong (phone numbers masked).

>>> print(quality_table([("dev:test", {"n": 10, "precision": 1.0, "recall": 0.5, "f1": 0.6667, "pr_auc": 0.9,
...                                     "accuracy": 0.9, "false_positive_rate": 0.0})]))
| test split | model | n | precision | recall | F1 | PR AUC | accuracy | FPR (normal) |
|---|---|---:|---:|---:|---:|---:|---:|---:|
| dev:test | smsguard | 10 | 1.0000 | 0.5000 | 0.6667 | 0.9000 | 0.9000 | 0.0000 |

A one-class test split has no PR AUC (spam_metrics gives None): "n/a", not a 0 that reads as a bad model.

>>> quality_table([("raw:test", {"n": 3, "precision": 0.0, "recall": 0.0, "f1": 0.0, "pr_auc": None,
...                             "accuracy": 1.0, "false_positive_rate": 0.0})]).splitlines()[-1]
'| raw:test | smsguard | 3 | 0.0000 | 0.0000 | 0.0000 | n/a | 1.0000 | 0.0000 |'
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from detector.privacy import mask_numbers


@dataclass
class SplitResult:
    """One held-out test split: labels, texts and both models' P(spam)."""
    name: str
    texts: list[str]
    labels: np.ndarray
    proba: np.ndarray
    baseline_proba: np.ndarray
    metrics: dict[str, Any]
    baseline_metrics: dict[str, Any]


def quality_table(rows: list[tuple[str, dict[str, Any]]], model: str = "smsguard") -> str:
    lines = ["| test split | model | n | precision | recall | F1 | PR AUC | accuracy | FPR (normal) |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, m in rows:
        label = m.get("model", model)
        lines.append(f"| {name} | {label} | {m['n']} | {m['precision']:.4f} | {m['recall']:.4f} | {m['f1']:.4f} | "
                     f"{'n/a' if m['pr_auc'] is None else format(m['pr_auc'], '.4f')} | {m['accuracy']:.4f} | {m['false_positive_rate']:.4f} |")
    return "\n".join(lines)


def _plots(result: SplitResult, threshold: float, folder: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve

    stem = re.sub(r"[^\w.]+", "-", result.name).strip("-")
    files = {}
    fig, ax = plt.subplots(figsize=(5, 4))
    for label, proba in (("smsguard", result.proba), ("classic jieba+TF-IDF+NB", result.baseline_proba)):
        precision, recall, _ = precision_recall_curve(result.labels, proba)
        ax.plot(recall, precision, label=label)
    ax.scatter([result.metrics["recall"]], [result.metrics["precision"]], color="red", zorder=3,
               label=f"threshold {threshold:.3f}")
    ax.set(xlabel="recall (spam)", ylabel="precision (spam)", title=f"PR curve: {result.name}", ylim=(0.5, 1.01))
    ax.legend(loc="lower left", fontsize=8)
    files["pr"] = _save(fig, folder / f"pr-{stem}.png")

    fig, ax = plt.subplots(figsize=(5, 4))
    bins = np.linspace(0, 1, 41)
    ax.hist(result.proba[result.labels == 0], bins=bins, alpha=0.6, label="normal", log=True)
    ax.hist(result.proba[result.labels == 1], bins=bins, alpha=0.6, label="spam", log=True)
    ax.axvline(threshold, color="red", linestyle="--", label="threshold")
    ax.set(xlabel="P(spam)", ylabel="messages (log)", title=f"scores: {result.name}")
    ax.legend(fontsize=8)
    files["hist"] = _save(fig, folder / f"scores-{stem}.png")

    c = result.metrics["confusion"]
    matrix = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(3.6, 3.2))
    ax.imshow(matrix, cmap="Blues")
    for (i, j), value in np.ndenumerate(matrix):
        ax.text(j, i, str(value), ha="center", va="center", color="black")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["normal", "spam"], yticklabels=["normal", "spam"],
           xlabel="predicted", ylabel="label", title=f"confusion: {result.name}")
    files["confusion"] = _save(fig, folder / f"confusion-{stem}.png")
    return files


def _save(fig, path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path.name


def most_wrong(result: SplitResult, threshold: float, k: int = 10) -> list[str]:
    """Markdown rows for the k most confident mistakes each way; numbers masked, pipes escaped."""
    rows = []
    for label, kind in ((0, "false positive"), (1, "false negative")):
        wrong = np.nonzero((result.labels == label) & ((result.proba >= threshold) != bool(label)))[0]
        order = wrong[np.argsort(result.proba[wrong])]
        order = order[::-1] if label == 0 else order
        for i in order[:k]:
            text = mask_numbers(result.texts[i]).replace("|", "\\|")[:160]
            rows.append(f"| {kind} | {result.proba[i]:.3f} | {text} |")
    return rows


def write_report(out: Path, manifest: dict[str, Any], results: list[SplitResult], heldout_note: str) -> Path:
    folder = out / "report"
    threshold = manifest["heldout_threshold"] if "heldout_threshold" in manifest else manifest["threshold"]
    table_rows = []
    for r in results:
        table_rows.append((r.name, {**r.metrics, "model": "smsguard"}))
        table_rows.append((r.name, {**r.baseline_metrics, "model": "classic jieba+TF-IDF+NB"}))
    parts = [
        f"# Model report: {manifest['name']}",
        "",
        f"- created: {manifest['created_at']}; artifact: `{manifest['artifact']}` "
        f"({manifest['artifact_bytes'] / 1e6:.1f} MB, sha256 `{manifest['artifact_sha256'][:16]}…`)",
        f"- decision threshold of this model: **{manifest['threshold']:.4f}** (target precision "
        f"{manifest['parameters']['target_precision']} on out-of-fold training predictions)",
        "- training data: " + ", ".join(f"`{d['name']}` ({d['rows_used']} rows, sha256 `{d['sha256'][:12]}…`)"
                                         for d in manifest["training_data"]),
        f"- command: `{manifest.get('command', '')}`",
        "",
        "## Held-out quality",
        "",
        heldout_note,
        "",
        quality_table(table_rows),
        "",
    ]
    if manifest.get("oof_metrics"):
        parts += ["Out-of-fold scores of the same model's training rows (folds grouped by template; the threshold "
                  "was picked on these, so they are not an independent estimate — configurations are compared "
                  "on them, not on the test splits):", "",
                  quality_table(list(manifest["oof_metrics"].items())), ""]
    for r in results:
        files = _plots(r, threshold, folder)
        parts += [f"### {r.name}", "",
                  f"![PR curve](report/{files['pr']}) ![scores](report/{files['hist']}) "
                  f"![confusion](report/{files['confusion']})", "",
                  "Most confident mistakes (phone numbers masked; labels are noisy):", "",
                  "| error | P(spam) | message |", "|---|---:|---|", *most_wrong(r, threshold), ""]
    path = out / "report.md"
    path.write_text("\n".join(parts) + "\n", encoding="utf-8")
    return path
