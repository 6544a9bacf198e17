"""``smsguard train`` end to end: held-out evaluation (smsguard and the classic baseline on the same
splits), the final fit, the artifact, manifest.json and the report.

When a data file has a split, a model is first trained on the training parts only and judged on the
test parts: those are the figures in the manifest and report. With ``refit_all`` the shipped model is
then refitted on all rows (same parameters, its own out-of-fold threshold); otherwise the held-out
model itself is shipped.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from detector.errors import ConfigError
from training.data import Dataset, Split, load_tsv, split_indices
from training.evaluate import classic_proba, spam_metrics
from training.report import SplitResult, write_report
from training.train import TrainParams, fit, fit_classic_baseline, params_dict, save


@dataclass
class TrainJob:
    data: list[Path]
    splits: list[Split]
    out: Path
    params: TrainParams = field(default_factory=TrainParams)
    refit_all: bool = False
    command: str = ""


def _weights(datasets: list[Dataset], params: TrainParams) -> np.ndarray:
    parts = []
    for d in datasets:
        spam, normal = _parse_weight(params.weights.get(d.name.split(":")[0], "1:1"))
        parts.append(np.where(d.labels == 1, spam, normal))
    return np.concatenate(parts).astype(float)


def _parse_weight(spec: Any) -> tuple[float, float]:
    """'SPAM:NORMAL' (or one number for both) as two positive sample weights.

    >>> _parse_weight("2:6"), _parse_weight("3")
    ((2.0, 6.0), (3.0, 3.0))
    """
    spam, _, normal = str(spec).partition(":")
    try:
        weights = float(spam), float(normal or spam)
    except ValueError:
        weights = (-1.0, -1.0)
    if not all(0 < w < float("inf") for w in weights):
        raise ConfigError(f"weight {spec!r}: expected SPAM:NORMAL, two positive numbers such as 2:6")
    return weights


def _concat(datasets: list[Dataset]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, labels and the source data-set name of every row."""
    sources = np.concatenate([np.full(len(d), d.name.split(":")[0]) for d in datasets])
    return [t for d in datasets for t in d.texts], np.concatenate([d.labels for d in datasets]), sources


def label_conflicts(datasets: list[Dataset]) -> list[str]:
    """A warning per pair of files for the texts one labels spam and the other normal (or one file both ways).

    Both rows are fitted and pull the text's score towards the middle: an operator's correction exported by
    ``smsguard export-labels`` is cancelled by the corpus row it corrects.

    >>> import numpy as np
    >>> a = Dataset("dev", ["加微信领红包", "明天见"], np.asarray([1, 0]), "")
    >>> b = Dataset("labels", ["加微信领红包"], np.asarray([0]), "")
    >>> print(*label_conflicts([a, b]))
    1 text is labelled spam in dev and normal in labels (e.g. '加微信领红包'): both rows are fitted and cancel out; ...
    """
    from detector.privacy import mask_numbers

    files: dict[str, tuple[set[str], set[str]]] = {}
    for d in datasets:
        for text, label in zip(d.texts, d.labels):
            files.setdefault(text, (set(), set()))[int(label) == 0].add(d.name)
    pairs: dict[tuple[str, str], list[str]] = {}
    for text, (spam, normal) in files.items():
        if spam and normal:
            pairs.setdefault((", ".join(sorted(spam)), ", ".join(sorted(normal))), []).append(text)
    return [f"{len(texts)} text{'s are' if len(texts) > 1 else ' is'} labelled spam in {spam} and normal in {normal} "
            f"(e.g. {mask_numbers(texts[0])[:40]!r}): both rows are fitted and cancel out; "
            "correct or drop the wrong one" for (spam, normal), texts in pairs.items()]


def run_training(job: TrainJob, progress=None) -> dict[str, Any]:
    step = progress or (lambda message: None)
    step("loading data")
    datasets = [load_tsv(path) for path in job.data]
    conflicts = label_conflicts(datasets)
    splits = [split_indices(d, s, job.params.seed) for d, s in zip(datasets, job.splits)]
    has_holdout = any(len(test) for _, test in splits)
    results: list[SplitResult] = []
    heldout = heldout_threshold = None   # without a test part there is no held-out model: the manifest says so
    oof_metrics: dict[str, Any] = {}
    if has_holdout:
        train_parts = [d.subset(train, "train") for d, (train, _) in zip(datasets, splits)]
        step(f"fitting the held-out model on {sum(map(len, train_parts))} training rows")
        texts, labels, sources = _concat(train_parts)
        heldout = fit(texts, labels, job.params, _weights(train_parts, job.params), sources)
        heldout_threshold = heldout.threshold
        # What configurations are compared on (training/select.py): grouped out-of-fold scores, never a test row.
        for source in dict.fromkeys(sources):
            rows = sources == source
            metrics = spam_metrics(labels[rows], heldout.oof_proba[rows], heldout.threshold)
            oof_metrics[f"{source}:train(out-of-fold)"] = {k: v for k, v in metrics.items() if k != "confusion"}
        step("fitting the classic baseline (jieba + TF-IDF + MultinomialNB) on the same rows")
        baseline = fit_classic_baseline(texts, labels)
        for d, (_, test), split in zip(datasets, splits, job.splits):
            if not len(test):
                continue
            step(f"evaluating on {d.name} {split} test split ({len(test)} rows)")
            part = d.subset(test, "test")
            proba = heldout.pipeline.predict_proba(part.texts)[:, 1]
            base = classic_proba(baseline, part.texts)
            results.append(SplitResult(f"{d.name}:test({split})", part.texts, part.labels, proba, base,
                                       spam_metrics(part.labels, proba, heldout.threshold),
                                       spam_metrics(part.labels, base, 0.5)))
    if job.refit_all or not has_holdout:
        step(f"fitting the shipped model on all {sum(map(len, datasets))} rows")
        texts, labels, sources = _concat(datasets)
        shipped = fit(texts, labels, job.params, _weights(datasets, job.params), sources)
        used = [len(d) for d in datasets]
    else:
        shipped = heldout
        used = [len(train) for train, _ in splits]
    fits = [("shipped", shipped)] + ([("held-out", heldout)] if heldout is not None and heldout is not shipped else [])
    warnings = [f"the {which} model's out-of-fold scores reach the target precision {job.params.target_precision} "
                f"at no threshold: it uses the fallback threshold {fitted.threshold:.4f}, below that precision"
                for which, fitted in fits if not fitted.target_reached] + conflicts
    # A --force run into an old model folder: its plots and report describe the old model.
    shutil.rmtree(job.out / "report", ignore_errors=True)
    (job.out / "report.md").unlink(missing_ok=True)
    step("writing the artifact and manifest")
    manifest = save(shipped, job.out, {
        "parameters": params_dict(job.params),
        "training_data": [{"name": d.name, "path": str(p), "sha256": d.sha256, "rows": len(d), "rows_used": n,
                           "split": str(s)} for d, p, n, s in zip(datasets, job.data, used, job.splits)],
        "trained_on": "all rows" if shipped is not heldout else "training parts of the splits",
        "heldout_threshold": heldout_threshold,
        "metrics": {r.name: {k: v for k, v in r.metrics.items() if k != "confusion"} for r in results},
        "baseline_metrics": {r.name: {k: v for k, v in r.baseline_metrics.items() if k != "confusion"}
                             for r in results},
        "oof_metrics": oof_metrics,
        "command": job.command,
        "warnings": warnings,
    })
    if results:
        step("writing the report")
        note = ("Figures from a model trained **without** the test splits (threshold "
                f"{heldout_threshold:.4f} picked on its own out-of-fold training predictions); the classic "
                "baseline is trained on the same rows and uses its 0.5 decision."
                + (" The shipped artifact was then refitted on all rows." if shipped is not heldout else ""))
        write_report(job.out, manifest, results, note)
    return manifest
