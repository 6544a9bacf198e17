"""A fitted smsguard Pipeline's ``predict_proba``, computed without scikit-learn's per-call machinery.

The engine scores only the new templates of each micro-batch: a few texts per call. For such a call
``Pipeline.predict_proba`` spent about 3 ms in input validation, FeatureUnion's joblib dispatch,
``set_output`` wrappers and sparse-matrix construction, and well under a millisecond in the features and
the dot product (1,485 texts/s in calls of 5 texts, 13,579 in calls of 1,000; ``docs/benchmarks.md``).
:func:`compile_scoring` reads the parameters of the pipeline's *fitted* steps and returns a function
that does the same arithmetic directly:

    model text → token spans → columns (hashed, or a fitted vocabulary) → counts → sublinear tf × idf
    → l2 norm → · coef (+ structural flags · their coef) + intercept → Platt sigmoid

Nothing is refitted or copied: the function reads the same step objects the artifact holds, so training and
serving still share one pipeline. It returns None for any pipeline whose shape or step parameters it does
not know (older artifacts, a different norm, feature weights), and :class:`~detector.model.SpamModel` then
serves the Pipeline itself; ``SpamModel`` also checks the two agree on probe texts before using it, and a
test checks them on every shipped model.

>>> from detector.registry import Registry
>>> model = Registry().load_promoted()
>>> texts = ["【京东】您的验证码是482913", "加微信领红包，日赚三百"]
>>> direct = compile_scoring(model.pipeline)
>>> bool(abs(direct(texts) - model.pipeline.predict_proba(texts)[:, 1]).max() < 1e-12)
True
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from detector.model import (STRUCTURAL_FEATURES, CalibratedLinear, HashedTokenCounts, StructuralFeatures,
                            TextNormalizer, _structure, model_text)


def _types(steps: list[tuple[str, Any]]) -> list[type]:
    return [type(step) for _, step in steps]


def compile_scoring(pipeline: Any) -> "DirectScoring | None":
    """P(spam) per text as ``pipeline.predict_proba(texts)[:, 1]`` computes it, or None (shape not known)."""
    if type(pipeline) is not Pipeline or _types(pipeline.steps) != [TextNormalizer, FeatureUnion, CalibratedLinear]:
        return None
    union: FeatureUnion = pipeline.steps[1][1]
    classifier: CalibratedLinear = pipeline.steps[2][1]
    if union.transformer_weights or len(union.transformer_list) != 2:
        return None
    (_, text_features), (_, structure) = union.transformer_list
    if type(text_features) is not Pipeline or type(structure) is not StructuralFeatures:
        return None
    if _types(text_features.steps) != [HashedTokenCounts, TfidfTransformer]:
        return None
    hasher: HashedTokenCounts = text_features.steps[0][1]
    tfidf: TfidfTransformer = text_features.steps[1][1]
    estimator = getattr(classifier, "estimator_", None)
    if tfidf.norm not in ("l2", None) or type(estimator) is not LogisticRegression:
        return None
    n_text = hasher.n_features
    coef = np.asarray(estimator.coef_, dtype=np.float64)
    if coef.shape != (1, n_text + len(STRUCTURAL_FEATURES)) or len(estimator.intercept_) != 1:
        return None
    text_coef, structure_coef = coef[0, :n_text], coef[0, n_text:]
    idf = getattr(tfidf, "idf_", None)       # absent when use_idf=False: tf only
    idf = None if idf is None else np.asarray(idf, dtype=np.float64)
    return DirectScoring(hasher, idf, bool(tfidf.sublinear_tf), tfidf.norm == "l2", text_coef, structure_coef,
                         float(estimator.intercept_[0]), float(classifier.slope_), float(classifier.intercept_),
                         pipeline.steps[0][1].version)


class DirectScoring:
    """One compiled pipeline: call it for P(spam) per raw text; :meth:`contributions` for explanations."""

    def __init__(self, hasher: HashedTokenCounts, idf: np.ndarray | None, sublinear: bool, l2: bool,
                 text_coef: np.ndarray, structure_coef: np.ndarray, intercept: float, slope: float, offset: float,
                 normalizer_version: int = 1):
        self.normalizer_version = normalizer_version
        self.hasher, self.idf, self.sublinear, self.l2 = hasher, idf, sublinear, l2
        self.text_coef, self.structure_coef, self.intercept = text_coef, structure_coef, intercept
        self.slope, self.offset = slope, offset
        self.n_text = hasher.n_features

    def _text_values(self, normal: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(rows, columns, values)`` of the TF-IDF text features, sorted like the pipeline's csr matrix."""
        docs, columns = self.hasher.spans(normal)
        cells, counts = np.unique(docs * self.n_text + columns, return_counts=True)
        rows, columns = np.divmod(cells, self.n_text)
        values = counts.astype(np.float64)
        if self.sublinear:
            np.log(values, out=values)
            values += 1.0
        if self.idf is not None:
            values *= self.idf[columns]
        if self.l2:
            norms = np.sqrt(np.bincount(rows, weights=values * values, minlength=len(normal)))
            norms[norms == 0.0] = 1.0        # an empty row stays zero, as sklearn's normalize leaves it
            values /= norms[rows]
        return rows, columns, values

    def _flags(self, normal: list[str]) -> np.ndarray:
        return np.asarray([_structure(t) for t in normal], dtype=np.float64).reshape(len(normal),
                                                                                    len(STRUCTURAL_FEATURES))

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        version = self.normalizer_version
        normal = [model_text(t, version) for t in texts]
        rows, columns, values = self._text_values(normal)
        # float even when the batch has no token at all (bincount of nothing is an integer array)
        decision = np.bincount(rows, weights=values * self.text_coef[columns], minlength=len(normal)).astype(np.float64)
        decision += self._flags(normal) @ self.structure_coef + self.intercept
        return 1.0 / (1.0 + np.exp(-(self.slope * decision + self.offset)))

    def contributions(self, normal: list[str]) -> list[dict[int, float]]:
        """Per model text (already normalised), feature column → coef × value: the text columns, then
        ``n_features + j`` for structural flag j, as the pipeline's FeatureUnion lays them out."""
        rows, columns, values = self._text_values(normal)
        weighted = values * self.text_coef[columns]
        bounds = np.searchsorted(rows, np.arange(len(normal) + 1))
        flags = self._flags(normal) * self.structure_coef
        out = []
        for row in range(len(normal)):
            lo, hi = bounds[row], bounds[row + 1]
            by_column = dict(zip(columns[lo:hi].tolist(), weighted[lo:hi].tolist()))
            by_column.update((self.n_text + j, value) for j, value in enumerate(flags[row].tolist()) if value)
            out.append(by_column)
        return out
