"""Model selection on the training portions only: grouped out-of-fold figures per configuration.

``python -m training.select`` holds out exactly the test rows ``smsguard train --holdout`` holds out, never
looks at them, and for each configuration computes out-of-fold decision values on the training rows with
the folds ``CalibratedLinear`` uses (StratifiedGroupKFold by ``template_key``, 3 folds, seed 42). It prints,
per data set, PR AUC and the F1 / FPR at the threshold the training rule would pick (and, for raw_dev, the
best recall with out-of-fold FPR ≤ 8%). Platt scaling is monotonic, so decision values rank as probabilities do.

>>> f1_fpr(np.array([1, 1, 0, 0]), np.array([0.9, 0.4, 0.6, 0.1]), 0.5)
(0.5, 0.5)
"""
from __future__ import annotations

import argparse
import re
import time
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Config:
    name: str
    ngram_max: int = 3
    C: float = 30.0
    nb_scale: float = 0.0
    raw_weight: str = "2:6"
    binary: bool = False
    domain_share: float = -1.0     # >= 0: feature augmentation with raw_dev as the domain (see fit_linear)
    plain_share: float = 0.0
    cues: bool = False             # two extra flags (notification / promotion wording), select.py only
    min_df: int | None = None      # a vocabulary of char n-grams in >= min_df texts of each fold's training rows
    keep_spaces: bool = False      # n-grams cut from the text with its spaces (see HashedTokenCounts)
    words: bool = True
    marks: int = 1                 # the set of marks dropped from dev rows (training.train.STRIPPED_MARK_SETS)
    normalizer: int = 1            # the TextNormalizer version (detector.textnorm.VERSIONS)
    hide: str = ""                 # session 15, select.py only: "sig" leaves the signature out of the model text


def f1_fpr(labels: np.ndarray, scores: np.ndarray, threshold: float) -> tuple[float, float]:
    from training.evaluate import spam_metrics

    metrics = spam_metrics(labels, scores, threshold)
    return metrics["f1"], metrics["false_positive_rate"]


def _training_rows(seed: int = 42):
    """The training rows as they are (dev rows not yet stripped: see :func:`_as_fitted`)."""
    from training.cli import resolve_data
    from training.data import load_tsv, parse_split, split_indices

    texts, labels, sources = [], [], []
    for name, spec in (("dev.tsv", "stratified:0.2"), ("raw_dev.tsv", "template:0.3")):
        data = load_tsv(resolve_data(name))
        train, _ = split_indices(data, parse_split(spec), seed)
        for i in train:
            texts.append(data.texts[i])
            labels.append(int(data.labels[i]))
            sources.append(data.name)
    return texts, np.asarray(labels), np.asarray(sources)


def _as_fitted(texts: list[str], sources: np.ndarray, marks: int) -> list[str]:
    """The rows as training fits them with ``--unpunctuated dev --stripped-marks MARKS``."""
    from training.train import without_stripped_marks

    return [without_stripped_marks(t, marks) if source == "dev" else t for t, source in zip(texts, sources)]


# Candidate structural flags, tried here before touching the serving pipeline's StructuralFeatures.
_NOTICE = re.compile("验证码|校验码|动态码|动态密码|尾号|余额|已发货|快件|订单号|航班|出票|签收|账单|还款|支出|到账|已成功|预订")
_PROMO = re.compile("优惠|折起|抢购|限时|特价|促销|免费|赠送|名额|大酬宾|低至|立减|返现|抽奖|红包")


def _features(normal: list[str], ngram_max: int, binary: bool, cues: bool = False):
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    from detector.model import HashedTokenCounts, StructuralFeatures

    counts = HashedTokenCounts(n_features_log2=20, ngram_max=ngram_max).transform(normal)
    if binary:
        counts.data[:] = 1.0
    text = TfidfTransformer(sublinear_tf=True).fit_transform(counts)
    blocks = [text, StructuralFeatures().transform(normal)]
    if cues:
        blocks.append(sparse.csr_matrix([[float(bool(_NOTICE.search(t))), float(bool(_PROMO.search(t)))]
                                         for t in normal]))
    return sparse.hstack(blocks).tocsr()


def _vocabulary_features(normal: list[str], config: Config):
    """Counts over every n-gram of the rows (min_df 1); :func:`out_of_fold` keeps, per fold, the columns
    its training rows have in ``config.min_df`` texts and fits the TF-IDF there, as the pipeline would."""
    from scipy import sparse

    from detector.model import HashedTokenCounts, StructuralFeatures

    counts = HashedTokenCounts(min_df=1, words=config.words, keep_spaces=config.keep_spaces,
                               ngram_max=config.ngram_max).fit(normal).transform(normal)
    return counts, sparse.csr_matrix(StructuralFeatures().transform(normal))


def _fold_matrices(counts, structure, train, test, min_df: int):
    from scipy import sparse
    from sklearn.feature_extraction.text import TfidfTransformer

    from detector.model import columns_in_rows

    columns = np.flatnonzero(columns_in_rows(counts[train], min_df))
    tfidf = TfidfTransformer(sublinear_tf=True).fit(counts[train][:, columns])
    return [sparse.hstack([tfidf.transform(counts[rows][:, columns]), structure[rows]]).tocsr()
            for rows in (train, test)]


def out_of_fold(X, y, weight, groups, config: Config, raw, folds: int = 3, seed: int = 42) -> np.ndarray:
    from sklearn.model_selection import StratifiedGroupKFold

    from detector.model import fit_linear

    oof = np.empty(len(y))
    for train, test in StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(raw, y, groups):
        if config.min_df is None:
            X_train, X_test = X[train], X[test]
        else:
            X_train, X_test = _fold_matrices(*X, train, test, config.min_df)
        domain = raw[train] if config.domain_share >= 0 else None
        model = fit_linear(X_train, y[train], weight[train], config.C, config.nb_scale, domain, config.domain_share,
                           config.plain_share)
        oof[test] = model.decision_function(X_test)
    return oof


def _model_texts(texts: list[str], version: int, hide: str) -> list[str]:
    """What the model reads, with the signature left out if ``hide`` is "sig"."""
    from detector.model import TextNormalizer
    from detector.textnorm import SIGNATURE

    normal = TextNormalizer(version=version).transform(texts)
    if hide == "sig":
        normal = [t.partition(f" {SIGNATURE} ")[0] for t in normal]
    return normal


def main() -> None:
    from detector.textnorm import template_key
    from training.run import _parse_weight
    from training.train import pick_threshold

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", default="all", help="comma-separated config names (default all)")
    parser.add_argument("--target-precision", type=float, default=0.91)
    parser.add_argument("--save-oof", default="", help="folder for each config's out-of-fold values (.npy)")
    parser.add_argument("--dump", default="", help="write the last config's raw_dev out-of-fold scores here "
                                                   "(TSV: score, label, text with numbers masked)")
    args = parser.parse_args()
    configs = [Config("v2"), Config("v2-C10", C=10), Config("v2-C100", C=100),
               Config("nb1", nb_scale=1.0), Config("nb0.5", nb_scale=0.5),
               Config("ng4", ngram_max=4), Config("ng4-nb0.5", ngram_max=4, nb_scale=0.5),
               Config("binary", binary=True), Config("w2:10", raw_weight="2:10"), Config("w1:3", raw_weight="1:3"),
               Config("nb1-C100", nb_scale=1.0, C=100), Config("nb1-C10", nb_scale=1.0, C=10),
               Config("nb1-w2:10", nb_scale=1.0, raw_weight="2:10"), Config("w4:12", raw_weight="4:12"),
               Config("nb1-w4:12", nb_scale=1.0, raw_weight="4:12"),
               Config("fea1", domain_share=1.0), Config("fea0.5", domain_share=0.5),
               Config("nb1-fea1", nb_scale=1.0, domain_share=1.0),
               Config("w4:12-fea1", raw_weight="4:12", domain_share=1.0),
               Config("w8:24", raw_weight="8:24"), Config("nb1-w8:24", nb_scale=1.0, raw_weight="8:24"),
               Config("nb1-fea1-w4:12", nb_scale=1.0, domain_share=1.0, raw_weight="4:12"),
               Config("blend-w4:12", nb_scale=1.0, domain_share=1.0, raw_weight="4:12", plain_share=0.5),
               Config("blend", nb_scale=1.0, domain_share=1.0, plain_share=0.5),
               Config("blend-w4:12-cues", nb_scale=1.0, domain_share=1.0, raw_weight="4:12", plain_share=0.5,
                      cues=True)]
    # session 5: a vocabulary of n-grams seen in >= 2 training texts instead of 2**20 hashed columns
    vocab = dict(min_df=2, raw_weight="4:12")
    chars = dict(words=False, keep_spaces=True, min_df=2)
    configs += [Config("vocab-words", **vocab), Config("vocab-chars", words=False, **vocab),
                Config("vocab-chars-spaces", words=False, keep_spaces=True, **vocab),
                Config("vocab-words-spaces", keep_spaces=True, **vocab),
                Config("vocab-chars-spaces-C100", words=False, keep_spaces=True, C=100, **vocab),
                Config("vocab-chars-spaces-C10", words=False, keep_spaces=True, C=10, **vocab),
                Config("vocab-chars-spaces-df3", words=False, keep_spaces=True, min_df=3, raw_weight="4:12"),
                Config("vocab-chars-spaces-blend", words=False, keep_spaces=True, nb_scale=1.0, domain_share=1.0,
                       plain_share=0.5, **vocab),
                Config("vocab-chars-spaces-blend-C100", words=False, keep_spaces=True, nb_scale=1.0,
                       domain_share=1.0, plain_share=0.5, C=100, **vocab),
                Config("vocab-chars-spaces-w2:6", raw_weight="2:6", **chars),
                Config("vocab-chars-spaces-w8:24", raw_weight="8:24", **chars),
                Config("vocab-chars-spaces-w16:36", raw_weight="16:36", **chars),
                Config("vocab-chars-spaces-w16:48", raw_weight="16:48", **chars),
                Config("vocab-chars-w16:48", words=False, min_df=2, raw_weight="16:48"),
                Config("vocab-words-spaces-w16:48", keep_spaces=True, min_df=2, raw_weight="16:48"),
                Config("vocab-chars-spaces-w32:96", raw_weight="32:96", **chars),
                Config("vocab-chars-spaces-blend-w8:24", raw_weight="8:24", nb_scale=1.0, domain_share=1.0,
                       plain_share=0.5, **chars)]
    # the same after dev rows also lose the marks of set 2 (spaces, . : [ ] ？ # _ @), which its normal class lost
    configs += [Config(**{**c.__dict__, "name": f"marks2-{c.name}", "marks": 2}) for c in configs
                if c.name.startswith("vocab")]
    configs += [Config("marks2-blend-w4:12", nb_scale=1.0, domain_share=1.0, raw_weight="4:12", plain_share=0.5,
                       marks=2)]
    # session 15: normaliser version 2 (docs/redteam.md's text tricks undone, the unsubscribe instruction left
    # out of the model text), and without the signature as well
    v4 = dict(words=False, keep_spaces=True, min_df=2, raw_weight="16:48", marks=2)
    configs += [Config("v4", **v4), Config("v4-n2", normalizer=2, **v4),
                Config("v4-n2-hide-sig", normalizer=2, hide="sig", **v4)]
    if args.configs != "all":
        wanted = args.configs.split(",")
        configs = [c for c in configs if c.name in wanted]
    rows, y, sources = _training_rows()
    texts = _as_fitted(rows, sources, 1)
    groups = np.asarray([template_key(t) for t in texts])
    raw = sources == "raw_dev"
    normal_by_marks = {}
    matrices = {}
    for config in configs:
        text_key = (config.marks, config.normalizer, config.hide)
        if text_key not in normal_by_marks:      # the same rows, dev rows with another set of marks dropped
            fitted = texts if config.marks == 1 else _as_fitted(rows, sources, config.marks)
            normal_by_marks[text_key] = _model_texts(fitted, config.normalizer, config.hide)
        normal = normal_by_marks[text_key]
        if config.min_df is None:
            key = (config.ngram_max, config.binary, config.cues, *text_key)
            if key not in matrices:
                matrices[key] = _features(normal, *key[:3])
        else:
            key = ("vocabulary", config.ngram_max, config.words, config.keep_spaces, *text_key)
            if key not in matrices:
                matrices[key] = _vocabulary_features(normal, config)
        spam, other = _parse_weight(config.raw_weight)
        weight = np.where(raw, np.where(y == 1, spam, other), 1.0)
        started = time.perf_counter()
        oof = out_of_fold(matrices[key], y, weight, groups, config, raw)
        _report(config, oof, y, raw, args.target_precision, time.perf_counter() - started, pick_threshold)
        if args.save_oof:
            np.save(f"{args.save_oof}/{config.name}.npy", oof)
            np.save(f"{args.save_oof}/labels.npy", y)
            np.save(f"{args.save_oof}/raw.npy", raw)
    if args.dump:
        from detector.privacy import mask_numbers

        rows = sorted(zip(oof[raw], y[raw], np.asarray(texts, dtype=object)[raw]), key=lambda r: -r[0])
        with open(args.dump, "w", encoding="utf-8") as out:
            out.writelines(f"{s:.3f}\t{label}\t{mask_numbers(t)}\n" for s, label, t in rows)


def _report(config, oof, y, raw, target_precision, seconds, pick_threshold) -> None:
    from sklearn.metrics import average_precision_score

    threshold = pick_threshold(oof[raw], y[raw], target_precision)
    raw_f1, raw_fpr = f1_fpr(y[raw], oof[raw], threshold)
    dev_f1, dev_fpr = f1_fpr(y[~raw], oof[~raw], threshold)
    normal_scores = np.sort(oof[raw][y[raw] == 0])[::-1]
    at_fpr8 = normal_scores[int(0.08 * len(normal_scores))]
    recall8 = float(np.mean(oof[raw][y[raw] == 1] > at_fpr8))
    dev_best = max(f1_fpr(y[~raw], oof[~raw], t)[0] for t in np.quantile(oof[~raw], np.linspace(0.8, 0.95, 31)))
    print(f"{config.name:12s} raw AP {average_precision_score(y[raw], oof[raw]):.4f} F1 {raw_f1:.4f} "
          f"FPR {raw_fpr:.4f} recall@FPR8% {recall8:.4f} | dev AP {average_precision_score(y[~raw], oof[~raw]):.4f} "
          f"F1 {dev_f1:.4f} FPR {dev_fpr:.4f} best-F1 {dev_best:.4f} | {seconds:.0f}s", flush=True)


if __name__ == "__main__":
    main()
