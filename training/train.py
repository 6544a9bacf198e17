"""Build, fit and save the smsguard pipeline; the classic public-project baseline for comparison.

The threshold is picked on out-of-fold probabilities of the training data (never on a test split):
the lowest threshold whose precision reaches the target, i.e. the most recall at that precision.

>>> pick_threshold(np.array([0.1, 0.4, 0.6, 0.9]), np.array([0, 1, 0, 1]), target_precision=0.9)
0.9
"""
from __future__ import annotations

import json
import platform
import re
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from detector.textnorm import LATEST, template_key
from detector.model import (ARTIFACT, MANIFEST, CalibratedLinear, HashedTokenCounts, StructuralFeatures,
                            TextNormalizer, sha256_file)

FORMAT_VERSION = 1


@dataclass(frozen=True)
class TrainParams:
    n_features_log2: int = 20      # hashed feature space (2**20): no vocabulary to store
    ngram_min: int = 1             # character n-grams from ngram_min to ngram_max characters
    ngram_max: int = 3
    min_df: int | None = None      # set: a fitted vocabulary of tokens in >= min_df training texts (not hashed)
    words: bool = True             # jieba words beside the character n-grams
    keep_spaces: bool = False      # character n-grams cut from the text with its spaces
    C: float = 30.0                # inverse L2 strength of the logistic regression
    folds: int = 3                 # out-of-fold predictions for calibration and the threshold
    target_precision: float = 0.95
    threshold_on: str = ""         # data-set name whose out-of-fold scores pick the threshold ("": all rows)
    seed: int = 42
    weights: dict[str, str] = field(default_factory=dict)   # data-set name -> 'SPAM:NORMAL' sample weights
    unpunctuated: tuple[str, ...] = ()   # data sets whose rows are fitted without CORPUS_STRIPPED_MARKS
    nb_scale: float = 0.0          # NB-SVM: columns scaled by log-count ratio ** nb_scale (0: plain LR)
    domain: str = ""               # data set whose rows get a feature copy (domain corrections; "": none)
    domain_share: float = 1.0      # served weights = shared + domain_share × domain corrections
    plain_share: float = 0.0       # blend in a plain regression's log-odds with this weight (0: none)
    stripped_marks: int = 1        # which set of marks `unpunctuated` drops (STRIPPED_MARK_SETS)
    normalizer: int = LATEST       # TextNormalizer version (detector.textnorm.VERSIONS)
    augment_unsubscribe: float = 0.0   # share of spam rows fitted once more with a normal row's unsubscribe clause


# dev.tsv's normal messages lost these marks in the corpus (0 of 78,684 has a "，", "！", "。", "(" or "【"),
# while 84% of its spam has a comma: left in, "，" alone separates the classes there and every real bank
# notification with a comma would look like spam. Rows of such a data set are fitted with the marks dropped
# from both classes, so punctuation is learned only from data that kept it (raw_dev). Serving never strips.
CORPUS_STRIPPED_MARKS = re.compile("[，,！!。（）();；【】《》\\-]")


# Found in session 5, through an explanation that named a space: dev.tsv's normal class also lost every space
# and the ASCII marks . : [ ] # _ @ and the full-width ？ (0 of its 78,684 normal messages has any of them; 26% of
# its spam has a space, 25% a "."; raw_dev's normal messages have them as often as its spam). Set 2 drops those
# too, except "." ":" "#" "_" "@" inside URLs, numbers and ids (``t.cn/x``, ``9.9``, ``abc_1``), which the
# normaliser needs to recognise them and turns into typed tokens anyway.
CORPUS_STRIPPED_MARKS_2 = re.compile(r"\s|[\[\]？]|(?<![0-9A-Za-z])[.:#_@]|[.:#_@](?![0-9A-Za-z/])")
STRIPPED_MARK_SETS = {1: (CORPUS_STRIPPED_MARKS,), 2: (CORPUS_STRIPPED_MARKS, CORPUS_STRIPPED_MARKS_2)}


def without_stripped_marks(text: str, marks: int = 1) -> str:
    """A text as the corpus stored its normal messages (``marks``: which set, see STRIPPED_MARK_SETS).

    >>> without_stripped_marks("【某银行】尊敬的客户，您好！(回T退订)")
    '某银行尊敬的客户您好回T退订'
    >>> without_stripped_marks("[某店] 您好. 详询: t.cn/Ab_1 或 3.5折 qq@x.com 好吗？", 2)
    '某店您好详询t.cn/Ab_1或3.5折qq@x.com好吗'
    """
    for pattern in STRIPPED_MARK_SETS[marks]:
        text = pattern.sub("", text)
    return text


def build_pipeline(params: TrainParams):
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.pipeline import FeatureUnion, Pipeline

    text = Pipeline([
        ("hash", HashedTokenCounts(n_features_log2=params.n_features_log2, ngram_min=params.ngram_min,
                                   ngram_max=params.ngram_max, min_df=params.min_df, words=params.words,
                                   keep_spaces=params.keep_spaces)),
        ("tfidf", TfidfTransformer(sublinear_tf=True)),
    ])
    return Pipeline([
        ("normalize", TextNormalizer(version=params.normalizer)),
        ("features", FeatureUnion([("text", text), ("structure", StructuralFeatures())])),
        ("classify", CalibratedLinear(C=params.C, folds=params.folds, seed=params.seed, nb_scale=params.nb_scale,
                                      domain_share=params.domain_share, plain_share=params.plain_share,
                                      fold_min_df=params.min_df)),
    ])


FALLBACK_THRESHOLD = 0.5


def pick_threshold(proba: np.ndarray, labels: np.ndarray, target_precision: float) -> float:
    """Lowest score threshold reaching ``target_precision`` (FALLBACK_THRESHOLD if none does)."""
    threshold = reaching_threshold(proba, labels, target_precision)
    return FALLBACK_THRESHOLD if threshold is None else threshold


def reaching_threshold(proba: np.ndarray, labels: np.ndarray, target_precision: float) -> float | None:
    """Lowest score threshold reaching ``target_precision``; None when no threshold does.

    >>> reaching_threshold(np.array([0.9, 0.8, 0.2]), np.array([0, 1, 1]), target_precision=0.9) is None
    True
    """
    order = np.argsort(-proba, kind="stable")
    hits = np.cumsum(labels[order] == 1)
    precision = hits / np.arange(1, len(order) + 1)
    reaching = np.nonzero(precision >= target_precision)[0]
    if len(reaching) == 0:
        return None
    return float(proba[order][reaching[-1]])


@dataclass
class Fitted:
    pipeline: Any
    threshold: float
    oof_proba: np.ndarray
    target_reached: bool = True   # False: no threshold reached the target precision, FALLBACK_THRESHOLD is used


def fit(texts: list[str], labels: np.ndarray, params: TrainParams, weights: np.ndarray | None = None,
        sources: np.ndarray | None = None) -> Fitted:
    """Fit the pipeline; ``sources`` (data-set name per row) lets ``params.threshold_on`` pick the rows
    whose out-of-fold precision decides the threshold (the data closest to live traffic)."""
    from detector.errors import ConfigError

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        # Otherwise sklearn fails deep inside with "0 sample(s)" or liblinear's misleading "n_classes >= 3".
        found = f"only label {int(labels[0])}" if len(labels) else "no rows"
        names = ", ".join(dict.fromkeys(map(str, sources))) if sources is not None else "the data"
        raise ConfigError(f"training rows of {names}: {found}; at least one spam (1) and one normal (0) row "
                          "is needed to train")
    n_rows = len(labels)
    groups = [template_key(t) for t in texts]
    if params.augment_unsubscribe > 0:
        texts, labels, weights, sources, groups = with_unsubscribe_copies(
            texts, labels, weights, sources, groups, params.augment_unsubscribe, params.seed)
    if params.unpunctuated and sources is not None:
        texts = [without_stripped_marks(t, params.stripped_marks) if source in params.unpunctuated else t
                 for t, source in zip(texts, sources)]
    pipeline = build_pipeline(params)
    domain = None
    if params.domain:
        domain = np.asarray(sources) == params.domain if sources is not None else np.zeros(len(labels), bool)
        if not domain.any():
            raise ConfigError(f"--domain {params.domain!r}: no training rows from that data set")
    pipeline.fit(texts, labels, classify__sample_weight=weights, classify__groups=groups, classify__domain=domain)
    classifier = pipeline.named_steps["classify"]
    oof = classifier.oof_proba_[:n_rows]   # the copies (at the end) neither pick the threshold nor are reported
    del classifier.oof_proba_  # training-set sized; not part of the artifact
    labels, sources = labels[:n_rows], None if sources is None else np.asarray(sources)[:n_rows]
    rows = np.ones(n_rows, dtype=bool)
    if params.threshold_on:
        rows = np.asarray(sources) == params.threshold_on if sources is not None else rows & False
        if not rows.any():
            raise ConfigError(f"--threshold-on {params.threshold_on!r}: no training rows from that data set")
    threshold = reaching_threshold(oof[rows], labels[rows], params.target_precision)
    if threshold is None:
        return Fitted(pipeline, FALLBACK_THRESHOLD, oof, target_reached=False)
    return Fitted(pipeline, threshold, oof)


_CLAUSE = re.compile(r"[^，,。！!；;？?\n【】\[\]]+")


def unsubscribe_clauses(texts: list[str], labels: np.ndarray) -> list[str]:
    """The distinct clauses of normal rows that carry the wording of unsubscribing the engine's rules read
    (``detector.engine.UNSUBSCRIBE_WORDING``: 回T退订, 拒收请回复R, 如需退订该提醒服务…), in order of first appearance.

    >>> unsubscribe_clauses(["【店】全场5折，回T退订", "您好，拒收所有短信直接回复TD", "加微信"], np.array([0, 0, 1]))
    ['回T退订', '拒收所有短信直接回复TD']
    """
    from detector.engine import UNSUBSCRIBE_WORDING

    seen: dict[str, None] = {}
    for text, label in zip(texts, labels):
        if label == 0:
            for clause in _CLAUSE.findall(text):
                clause = clause.strip()
                if clause and UNSUBSCRIBE_WORDING.search(clause):
                    seen.setdefault(clause)
    return list(seen)


def with_unsubscribe_copies(texts, labels, weights, sources, groups, share: float, seed: int):
    """The rows plus, for ``share`` of the spam rows (drawn with ``seed``), a copy ending in a random clause of
    :func:`unsubscribe_clauses`, with the original's weight, source and group (so a copy never lands in another
    fold than its original). In the corpus the wording of unsubscribing is on normal rows far more than on spam
    (raw_dev.tsv: 170 against 12), so the model learned it as "normal" and adding any such line to spam lowered its
    score; textnorm version 2 strips the common instructions, and these copies teach it the rest.

    >>> t, y, w, s, g = with_unsubscribe_copies(["加微信日赚", "您好，回T退订"], np.array([1, 0]), None, None,
    ...                                           ["a", "b"], 1.0, 42)
    >>> t[2], y.tolist(), g[2]
    ('加微信日赚，回T退订', [1, 0, 1], 'a')
    """
    labels = np.asarray(labels)
    clauses = unsubscribe_clauses(texts, labels)
    spam = np.flatnonzero(labels == 1)
    if not clauses or not len(spam):
        return texts, labels, weights, sources, groups
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(spam, size=int(round(share * len(spam))), replace=False))
    picks = rng.integers(len(clauses), size=len(chosen))
    texts = list(texts) + [f"{texts[i]}，{clauses[k]}" for i, k in zip(chosen, picks)]
    labels = np.concatenate([labels, labels[chosen]])
    weights = None if weights is None else np.concatenate([weights, np.asarray(weights)[chosen]])
    sources = None if sources is None else np.concatenate([np.asarray(sources), np.asarray(sources)[chosen]])
    groups = list(groups) + [groups[i] for i in chosen]
    return texts, labels, weights, sources, groups


def save(fitted: Fitted, out: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Write ``model.skops`` and ``manifest.json`` (with the artifact's sha256) into ``out``."""
    import skops.io as sio
    import sklearn
    import zipfile

    out.mkdir(parents=True, exist_ok=True)
    artifact = out / ARTIFACT
    sio.dump(fitted.pipeline, artifact, compression=zipfile.ZIP_DEFLATED, compresslevel=6)
    digest = sha256_file(artifact)
    manifest = {
        "name": out.name,
        "version": f"{out.name}@{digest[:12]}",
        "format_version": FORMAT_VERSION,
        "artifact": ARTIFACT,
        "artifact_sha256": digest,
        "artifact_bytes": artifact.stat().st_size,
        "threshold": fitted.threshold,
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "software": {"python": platform.python_version(), "scikit-learn": sklearn.__version__},
        **manifest,
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return manifest


def params_dict(params: TrainParams) -> dict[str, Any]:
    return asdict(params)


def fit_classic_baseline(texts: list[str], labels: np.ndarray):
    """What public projects on this corpus do: jieba words, TF-IDF, multinomial naive Bayes, raw text."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.naive_bayes import MultinomialNB
    from sklearn.pipeline import Pipeline

    return Pipeline([
        ("tfidf", TfidfVectorizer(tokenizer=_jieba_words, token_pattern=None, lowercase=False)),
        ("nb", MultinomialNB()),
    ]).fit(texts, labels)


def _jieba_words(text: str) -> list[str]:
    import jieba

    return jieba.lcut(text)
