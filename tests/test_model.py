"""SpamModel on the shipped default model: scoring, explanations, the template cache and safe loading."""
from __future__ import annotations

import json
import re
import shutil
import zipfile

import numpy as np
import pytest

from detector.errors import ModelError
from detector.model import ARTIFACT, MANIFEST, CachedScorer, load_model, sha256_file
from detector.registry import Registry

SPAM = "【金牌理财】高收益理财，年化15%，加微信 abc_12345 领888元红包，名额有限速来！回T退订"
NORMAL = "您的验证码是482913，5分钟内有效，请勿泄露给他人。【中国银行】"
LOAN = "贷款无抵押，当天放款，详询 13812345678 王经理"


@pytest.fixture(scope="module")
def default_path():
    registry = Registry("models")
    return registry.model_path(registry.promoted_name())


@pytest.fixture(scope="module")
def model(default_path):
    return load_model(default_path)


def test_version_names_the_model_and_its_artifact_hash(model, default_path):
    manifest = json.loads((default_path / MANIFEST).read_text())
    assert model.version == f"{manifest['name']}@{manifest['artifact_sha256'][:12]}"
    assert 0 < model.threshold < 1


def test_scores_are_probabilities_per_text_and_rank_spam_above_normal(model):
    scores = model.score([SPAM, NORMAL, "晚上一起吃饭吗", LOAN])
    assert scores.shape == (4,) and np.all((scores >= 0) & (scores <= 1))
    assert scores[3] > model.threshold > max(scores[1], scores[2])
    assert scores[0] > scores[1]
    assert model.score([]).shape == (0,)


def test_obfuscated_spam_scores_like_the_plain_text(model):
    plain, tricked = model.score(["加微信领红包，贷款无抵押", "加 微 信 領 紅 包，貸-款 无 抵 押"])
    assert tricked == pytest.approx(plain, abs=1e-9)


def test_explain_gives_readable_tokens_pushing_towards_spam(model):
    reasons = model.explain(LOAN, k=5)
    assert 1 <= len(reasons) <= 5
    assert all(value > 0 for _, value in reasons)
    assert [v for _, v in reasons] == sorted((v for _, v in reasons), reverse=True)
    assert all(not re.fullmatch(r"#\d+", name) for name, _ in reasons)  # token text, not a hash index
    assert all(" " not in name for name, _ in model.explain(LOAN, k=50))   # a space token reads as ␣
    assert any("贷款" in name or "放款" in name or "抵押" in name for name, _ in reasons), reasons


def test_cached_scorer_scores_a_template_once(model):
    scorer = CachedScorer(model, cache_size=10)
    texts = [f"您的验证码是{code}，5分钟内有效。【中国银行】" for code in (111111, 222222, 333333)]
    scores = scorer.score(texts + [SPAM])
    assert scorer.misses == 2 and scorer.hits == 2
    assert scores[0] == scores[1] == scores[2] == pytest.approx(model.score(texts[:1])[0])
    assert scorer.score([SPAM])[0] == pytest.approx(scores[3]) and scorer.hits == 3
    assert scorer.version == model.version and scorer.threshold == model.threshold


def test_cached_scorer_evicts_least_recently_used(model):
    scorer = CachedScorer(model, cache_size=2)
    scorer.score(["甲模板1", "乙模板2"])
    scorer.score(["甲模板3"])            # touch 甲: 乙 is now the oldest
    scorer.score(["丙模板4"])            # evicts 乙
    misses = scorer.misses
    scorer.score(["甲模板5"])
    assert scorer.misses == misses
    scorer.score(["乙模板6"])
    assert scorer.misses == misses + 1


def _copy(default_path, tmp_path):
    target = tmp_path / default_path.name
    shutil.copytree(default_path, target, ignore=shutil.ignore_patterns("report*"))
    return target


def test_tampered_artifact_is_refused(default_path, tmp_path):
    folder = _copy(default_path, tmp_path)
    data = bytearray((folder / ARTIFACT).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / ARTIFACT).write_bytes(bytes(data))
    with pytest.raises(ModelError, match="does not match the manifest"):
        load_model(folder)


def test_missing_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="no manifest.json"):
        load_model(tmp_path)


def test_skops_load_refuses_untrusted_types_even_with_a_matching_hash(tmp_path):
    import os

    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    folder = tmp_path / "evil"
    folder.mkdir()
    sio.dump(Pipeline([("run", FunctionTransformer(os.system))]), folder / ARTIFACT)
    (folder / MANIFEST).write_text(json.dumps({"name": "evil", "threshold": 0.5, "artifact": ARTIFACT,
                                               "artifact_sha256": sha256_file(folder / ARTIFACT)}))
    with pytest.raises(ModelError, match="(?i)untrusted"):
        load_model(folder)


def test_artifact_is_a_skops_zip_not_a_pickle(default_path):
    assert zipfile.is_zipfile(default_path / ARTIFACT)
    assert (default_path / ARTIFACT).stat().st_size < 50e6


def test_fast_dag_cut_gives_exactly_jiebas_words():
    import jieba

    from detector.model import _DagCutter, _jieba
    from detector.textnorm import clean
    from training.cli import resolve_data
    from training.data import load_tsv

    texts = load_tsv(resolve_data("raw_dev.tsv")).texts[:1500]
    runs = {r for t in texts for r in re.findall("[\u4e00-\u9fff]{2,}", clean(t))}
    cutter = _DagCutter(_jieba())
    assert len(runs) > 1000
    assert all(cutter.cut(r) == tuple(jieba.cut(r, HMM=False)) for r in runs)


def test_a_model_that_cannot_score_is_refused_on_load(tmp_path, monkeypatch):
    import shutil

    from detector import model as model_module
    from detector.errors import ModelError
    from detector.registry import Registry
    source = Registry().root / Registry().promoted_name()
    copy = tmp_path / "broken"
    shutil.copytree(source, copy)
    monkeypatch.setattr(model_module.SpamModel, "score", lambda self, texts: (_ for _ in ()).throw(
        ValueError("X has 1048582 features, but LogisticRegression is expecting 1048584")))
    with pytest.raises(ModelError, match="cannot score"):
        model_module.load_model(copy)


def test_hashed_token_counts_count_the_analyzer_tokens_plus_character_unigrams():
    from detector.model import _SENTINEL, _TYPED, HashedTokenCounts, analyze, model_text
    from training.cli import resolve_data
    from training.data import load_tsv

    texts = [model_text(t) for t in load_tsv(resolve_data("raw_dev.tsv")).texts[:300]]
    assert any("<url>" in t for t in texts) and any("<phone>" in t for t in texts)
    hasher = HashedTokenCounts(n_features_log2=18, ngram_min=1, ngram_max=3)
    batch = hasher.transform(texts)
    for i, text in enumerate(texts):
        compact = _TYPED.sub(lambda m: _SENTINEL[m.group()], text).replace(" ", "")
        expected = analyze(text) + ["c:" + c for c in compact]
        names = hasher.token_names(text)
        assert int(batch[i].sum()) == len(expected)
        assert {t for tokens in names.values() for t in tokens} == set(expected)
        assert set(batch[i].indices.tolist()) == set(names)
    alone = hasher.transform(texts[7:8])
    assert (alone != batch[7]).nnz == 0                    # a text's features do not depend on its batch


def test_a_fitted_vocabulary_counts_what_scikit_learns_char_ngram_vectorizer_counts():
    """min_df: one column per n-gram seen in >= min_df training texts, found by its 64-bit hash; the counts
    must be CountVectorizer's (char 1–3-grams of the compact text, spaces kept), token for token."""
    from sklearn.feature_extraction.text import CountVectorizer

    from detector.model import _SENTINEL, _TYPED, HashedTokenCounts, model_text
    from training.cli import resolve_data
    from training.data import load_tsv

    texts = [model_text(t) for t in load_tsv(resolve_data("raw_dev.tsv")).texts[:600]]
    compact = [_TYPED.sub(lambda m: _SENTINEL[m.group()], t) for t in texts]
    assert any(" " in t for t in compact)              # not vacuous: spaces are kept, so n-grams cross them
    train, test = texts[:400], texts[400:]
    ours = HashedTokenCounts(min_df=2, words=False, keep_spaces=True).fit(train)
    theirs = CountVectorizer(analyzer="char", ngram_range=(1, 3), min_df=2, lowercase=False).fit(compact[:400])
    assert ours.n_features == len(theirs.vocabulary_)
    counted, expected = ours.transform(test).tocsr(), theirs.transform(compact[400:]).tocsr()
    names = {v: k for k, v in theirs.vocabulary_.items()}
    for i, text in enumerate(test):
        column_names = ours.token_names(text)             # every column of the row, each one token
        mine = {column_names[c][0][2:]: v for c, v in zip(counted[i].indices.tolist(), counted[i].data.tolist())}
        assert all(len(column_names[c]) == 1 for c in counted[i].indices.tolist())
        assert mine == {names[c]: v for c, v in zip(expected[i].indices.tolist(), expected[i].data.tolist())}
    # an n-gram seen in one training text has no column: it is dropped, not hashed onto a useful one
    assert ours.transform(["罕见的词组合"]).nnz < HashedTokenCounts(words=False, keep_spaces=True).transform(
        ["罕见的词组合"]).nnz


def test_the_vocabulary_lookup_index_is_rebuilt_not_saved_in_the_artifact(tmp_path):
    import skops.io as sio

    from detector.model import TRUSTED_TYPES, HashedTokenCounts

    texts = ["加微信领红包", "加微信抢红包", "明天开会", "明天下雨", "红包雨"]
    counts = HashedTokenCounts(min_df=2, words=False, keep_spaces=True).fit(texts)
    before = counts.transform(texts + ["没见过的字"])
    assert counts.__dict__.get("_buckets") is not None          # built on first use
    sio.dump(counts, tmp_path / "c.skops")
    loaded = sio.load(tmp_path / "c.skops", trusted=TRUSTED_TYPES)
    assert "_buckets" not in loaded.__dict__
    assert (loaded.transform(texts + ["没见过的字"]) != before).nnz == 0
    loaded.vocabulary_ = loaded.vocabulary_[:3]                  # a new vocabulary gets a new index
    assert loaded.transform(texts).shape[1] == 3


def test_the_previous_model_layout_still_loads_scores_and_explains():
    """Rollback target: zh-linear-v1 (HashingVectorizer over analyze) keeps working beside the new layout."""
    from pathlib import Path

    folder = Path(Registry("models").root) / "zh-linear-v1"
    old = load_model(folder)
    assert old.score([LOAN])[0] > old.threshold
    assert any("贷款" in name or "抵押" in name or "放款" in name for name, _ in old.explain(LOAN, k=8))


def test_word_grouped_contributions_add_up_to_the_decision(model):
    """Regrouping n-grams under their words moves contributions around but never loses or invents any."""
    pipeline = model.pipeline
    normalizer, union, classifier = (step for _, step in pipeline.steps)
    hasher = union.transformer_list[0][1].steps[0][1]
    for text in (LOAN, SPAM, NORMAL):
        normal = normalizer.transform([text])
        values = union.transform(normal).tocsr()
        coef = classifier.estimator_.coef_[0]
        by_column = {int(i): float(coef[i] * v) for i, v in zip(values.indices, values.data)}
        text_part = sum(v for c, v in by_column.items() if c < hasher.n_features)
        grouped = hasher.word_contributions(normal[0], by_column)
        assert sum(v for _, v in grouped) == pytest.approx(text_part)
        assert all(name.startswith(("w:", "c:")) for name, _ in grouped)


TRICKS = "【优品】加〡微〡信 vns88点com 详询❶❸❽❶❷❸❹❺❻❼❽，回T退订"


def test_each_model_reads_text_with_the_normaliser_version_it_was_trained_with():
    """zh-linear-v1..v4 were saved before TextNormalizer had a version: they must keep reading version 1."""
    from detector.model import model_text

    root = Registry("models").root
    for name, version in (("zh-linear-v4", 1), ("zh-linear-v5", 2), ("zh-linear-v6", 2)):
        normalizer = load_model(root / name).pipeline.steps[0][1]
        assert normalizer.version == version, name
        assert normalizer.transform([TRICKS]) == [model_text(TRICKS, version)]
    assert model_text(TRICKS, 1) != model_text(TRICKS, 2)
    assert json.loads((root / "zh-linear-v5" / MANIFEST).read_text())["parameters"]["normalizer"] == 2


@pytest.mark.parametrize("name", [p.name for p in sorted(Registry("models").root.iterdir())
                                  if (p / MANIFEST).is_file()])
def test_direct_scoring_gives_the_pipelines_probabilities_on_every_shipped_model(name):
    """The serving shortcut must score as the saved Pipeline does, text by text and batch by batch."""
    from detector.direct_scoring import compile_scoring
    from training.cli import resolve_data
    from training.data import load_tsv

    folder = Registry("models").root / name
    loaded = load_model(folder)
    direct = compile_scoring(loaded.pipeline)
    if direct is None:       # a layout it does not know (zh-linear-v1): the Pipeline serves it
        assert loaded._direct is None
        assert type(loaded.pipeline.steps[1][1].transformer_list[0][1].steps[0][1]).__name__ == "HashingVectorizer"
        return
    assert loaded._direct is not None
    texts = load_tsv(resolve_data("raw_dev.tsv")).texts[:400] + load_tsv(resolve_data("dev.tsv")).texts[:400]
    texts += [SPAM, NORMAL, LOAN, "。", " ", "", "😀😀", "x" * 300]
    texts += [TRICKS]          # normalised differently by versions 1 and 2: the direct path must follow the model's
    expected = loaded.pipeline.predict_proba(texts)[:, 1]
    assert np.abs(direct(texts) - expected).max() < 1e-12
    # a batch with no token at all
    assert np.abs(direct(["", " "]) - loaded.pipeline.predict_proba(["", " "])[:, 1]).max() < 1e-12
    one_by_one = np.concatenate([direct(texts[i:i + 3]) for i in range(0, len(texts), 3)])
    assert np.abs(one_by_one - expected).max() < 1e-12
    assert np.array_equal(loaded.score(texts), direct(texts))


def test_direct_scoring_steps_aside_for_a_pipeline_it_does_not_know_or_that_disagrees(model, monkeypatch, caplog):
    import copy

    from detector import direct_scoring
    from detector.model import SpamModel

    changed = copy.deepcopy(model.pipeline)
    changed.steps[1][1].transformer_list[0][1].steps[1][1].norm = "l1"       # a norm it does not compute
    assert direct_scoring.compile_scoring(changed) is None
    assert SpamModel(changed, model.manifest, "0" * 64)._direct is None
    # a scikit-learn whose steps compute something else than the shortcut: the Pipeline keeps serving
    # (model_text takes the normaliser version since textnorm version 2: a one-argument stand-in raised a TypeError, and
    # the test passed through the "unavailable" branch instead of the disagreement it is about)
    monkeypatch.setattr(direct_scoring, "model_text", lambda text, version=1: text.upper())
    with caplog.at_level("WARNING", logger="detector.model"):
        disagreeing = SpamModel(model.pipeline, model.manifest, "0" * 64)
    assert disagreeing._direct is None
    assert [r.getMessage() for r in caplog.records] == ["direct scoring disagrees with the Pipeline; the Pipeline serves"]
    assert np.array_equal(disagreeing.score([SPAM, NORMAL]), model.pipeline.predict_proba([SPAM, NORMAL])[:, 1])


def test_direct_explanations_name_the_same_features_with_the_same_contributions(model):
    from detector.model import explain_pipeline_many
    from training.cli import resolve_data
    from training.data import load_tsv

    texts = [SPAM, LOAN, NORMAL, "。"] + load_tsv(resolve_data("raw_dev.tsv")).texts[:150]
    assert model._direct is not None
    # every positive contribution (k large), so ties at the cut cannot make the two lists differ
    direct = explain_pipeline_many(model.pipeline, texts, 10_000, model._direct)
    through_pipeline = explain_pipeline_many(model.pipeline, texts, 10_000)
    assert any(direct)                   # not vacuous: most of these texts have features pushing towards spam
    for fast, slow in zip(direct, through_pipeline):
        fast, slow = dict(fast), dict(slow)
        assert fast.keys() == slow.keys()
        assert np.allclose([fast[name] for name in slow], list(slow.values()), rtol=1e-9, atol=1e-12)
    assert model.explain_many([SPAM]) == [explain_pipeline_many(model.pipeline, [SPAM], 5, model._direct)[0]]
