"""Training workflow end to end on small samples of the real data: train, evaluate, models, splits."""
from __future__ import annotations

import collections
import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.model import load_model, sha256_file
from detector.textnorm import template_key
from training.cli import resolve_data
from training.data import Split, load_tsv, split_indices
from training.train import pick_threshold


@pytest.fixture(scope="module")
def small_files(tmp_path_factory):
    """About 1,600 rows: the first lines of each data file (already in a pseudo-random order)."""
    folder = tmp_path_factory.mktemp("data")
    for name, rows in (("dev.tsv", 1000), ("raw_dev.tsv", 600)):
        lines = resolve_data(name).read_text(encoding="utf-8").splitlines()[:rows]
        (folder / f"small_{name}").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder / "small_dev.tsv", folder / "small_raw_dev.tsv"


@pytest.fixture(scope="module")
def trained(small_files, tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    dev, raw = small_files
    result = CliRunner().invoke(main, ["train", "--data", str(dev), "--data", str(raw), "--holdout",
                                       "--weight", "small_raw_dev=2:6", "--features-log2", "16",
                                       "--unpunctuated", "small_dev",
                                       "--out", str(models / "tiny-v1")])
    assert result.exit_code == 0, result.output
    return models / "tiny-v1"


def test_train_writes_artifact_manifest_and_report(trained, small_files):
    manifest = json.loads((trained / "manifest.json").read_text())
    for key in ("name", "version", "artifact_sha256", "threshold", "created_at", "parameters", "metrics", "training_data"):
        assert key in manifest
    assert manifest["artifact_sha256"] == sha256_file(trained / "model.skops")
    assert [d["sha256"] for d in manifest["training_data"]] == [load_tsv(p).sha256 for p in small_files]
    assert [d["split"] for d in manifest["training_data"]] == ["stratified:0.2", "template:0.3"]
    assert manifest["trained_on"] == "training parts of the splits"
    assert manifest["parameters"]["unpunctuated"] == ["small_dev"]
    assert manifest["parameters"]["ngram_min"] == 1 and manifest["parameters"]["ngram_max"] == 3
    assert set(manifest["metrics"]) == set(manifest["baseline_metrics"]) and len(manifest["metrics"]) == 2
    assert set(manifest["oof_metrics"]) == {"small_dev:train(out-of-fold)", "small_raw_dev:train(out-of-fold)"}
    assert manifest["oof_metrics"]["small_dev:train(out-of-fold)"]["n"] == 800     # the 80% training part
    report = (trained / "report.md").read_text()
    pngs = re.findall(r"\(report/([^)]+\.png)\)", report)
    assert len(pngs) == 6 and all((trained / "report" / p).stat().st_size > 1000 for p in pngs)
    assert "classic jieba+TF-IDF+NB" in report
    assert not re.search(r"1[3-9]\d{9}", report)          # phone numbers masked in the mistakes table
    assert load_model(trained).score(["你好"]).shape == (1,)


def test_evaluate_json_and_compare(trained, small_files):
    runner = CliRunner()
    dev, raw = small_files
    models_dir = str(trained.parent)
    runner.invoke(main, ["models", "promote", "tiny-v1", "--models-dir", models_dir], catch_exceptions=False)
    result = runner.invoke(main, ["evaluate", "--data", str(raw), "--split", "template:0.3", "--models-dir",
                                  models_dir, "--json"], catch_exceptions=False)
    report = json.loads(result.output)
    assert {"n", "precision", "recall", "f1", "pr_auc", "accuracy", "false_positive_rate"} <= set(report)
    heldout = json.loads((trained / "manifest.json").read_text())["metrics"]
    raw_metrics = next(v for k, v in heldout.items() if k.startswith("small_raw_dev"))
    assert report["n"] == raw_metrics["n"]
    both = runner.invoke(main, ["evaluate", "--data", str(dev), "--models-dir", models_dir, "--compare", "tiny-v1"],
                         catch_exceptions=False)
    assert both.exit_code == 0 and "tiny-v1@" in both.output


def test_evaluate_evasions_reports_spam_recall_per_evasion_against_the_shipped_models():
    """zh-linear-v4 lets most spam wrapped in a signature and 回T退订 through; v5 (textnorm version 2) does not."""
    from conftest import DATA_DIR
    result = CliRunner().invoke(main, ["evaluate", "--data", str(DATA_DIR / "raw_dev.tsv"), "--split", "template:0.3",
                                       "--model", "zh-linear-v5", "--compare", "zh-linear-v4", "--evasions", "--json"],
                                catch_exceptions=False)
    report = json.loads(result.output.splitlines()[-1])
    v5, v4 = report["evasions"], report["compare"]["evasions"]
    assert {"as they are", "signature + 回T退订", "links and numbers", "separators", "strike-through",
            "all of them"} <= set(v5) and len(v5) == len(v4) >= 10
    assert v5["as they are"] == report["recall"]
    assert v5["signature + 回T退订"] > 0.8 > 0.6 > v4["signature + 回T退订"], (v5, v4)
    assert v5["all of them"] > 0.8 > 0.6 > v4["all of them"], (v5, v4)


def test_models_list_promote_rollback_commands(trained):
    runner = CliRunner()
    models_dir = str(trained.parent)
    listed = runner.invoke(main, ["models", "list", "--models-dir", models_dir], catch_exceptions=False)
    assert "tiny-v1@" in listed.output
    refused = runner.invoke(main, ["models", "rollback", "--models-dir", models_dir])
    assert refused.exit_code == 2 and "roll back" in refused.output


def test_template_split_keeps_templates_on_one_side():
    raw = load_tsv(resolve_data("raw_dev.tsv"))
    train, test = split_indices(raw, Split("template", 0.3), seed=42)
    assert len(set(train) | set(test)) == len(raw) and 0.2 < len(test) / len(raw) < 0.4
    assert {template_key(raw.texts[i]) for i in train}.isdisjoint({template_key(raw.texts[i]) for i in test})


def test_stratified_split_keeps_the_spam_ratio():
    dev = load_tsv(resolve_data("dev.tsv"))
    train, test = split_indices(dev, Split("stratified", 0.2), seed=42)
    assert abs(len(test) / len(dev) - 0.2) < 0.001
    assert abs(dev.labels[test].mean() - dev.labels.mean()) < 0.002


def test_threshold_is_the_lowest_reaching_the_target_precision():
    proba = np.array([0.95, 0.9, 0.8, 0.7, 0.6, 0.2])
    labels = np.array([1, 1, 1, 0, 1, 0])
    assert pick_threshold(proba, labels, 1.0) == 0.8
    assert pick_threshold(proba, labels, 0.8) == 0.6


def test_unpunctuated_rows_are_fitted_without_the_marks_their_normal_class_lost():
    """dev.tsv's normal class has no "，" at all: its rows are fitted without it, the other data set's keep it."""
    from training.train import TrainParams, fit

    texts = ["今天下雨了", "优惠活动，快来", "特价促销！速抢", "您好，明天开会", "优惠，快来抢"]
    labels = np.array([0, 1, 1, 0, 1])
    sources = np.array(["dev", "dev", "dev", "raw", "raw"])

    def rows_with(mark, params):
        text_features = fit(texts * 4, np.tile(labels, 4), params, sources=np.tile(sources, 4)).pipeline[
            "features"].transformer_list[0][1]
        column = next(c for c, names in text_features["hash"].token_names(mark).items() if f"c:{mark}" in names)
        idf = text_features["tfidf"].idf_[column]          # smooth idf = ln((1 + n) / (1 + df)) + 1
        return round((1 + 20) / np.exp(idf - 1) - 1)

    assert rows_with(",", TrainParams(n_features_log2=12, folds=2)) == 12
    assert rows_with(",", TrainParams(n_features_log2=12, folds=2, unpunctuated=("dev",))) == 8
    assert rows_with("!", TrainParams(n_features_log2=12, folds=2, unpunctuated=("dev",))) == 0


def test_unsubscribe_copies_are_fitted_but_neither_pick_the_threshold_nor_are_reported():
    """--augment-unsubscribe fits spam rows once more with a normal row's unsubscribe clause: the clause then stops
    reading as "normal". The copies stay in their original's fold and are left out of the out-of-fold figures."""
    from training.train import TrainParams, fit

    texts = ["今天下雨了", "账单已出，如需退订该提醒服务", "无抵押贷款，当天放款", "您好，明天开会", "加微信日赚三百",
             "会员日，如需退订该提醒服务"] * 4
    labels = np.tile([0, 0, 1, 0, 1, 0], 4)
    plain = fit(texts, labels, TrainParams(n_features_log2=12, folds=2))
    augmented = fit(texts, labels, TrainParams(n_features_log2=12, folds=2, augment_unsubscribe=1.0))
    assert len(augmented.oof_proba) == len(plain.oof_proba) == len(texts)

    def pull(fitted):
        """How much the clause lowers the spam's log-odds (a wording textnorm version 2 does not strip)."""
        p = fitted.pipeline.predict_proba(["无抵押贷款，当天放款", "无抵押贷款，当天放款，如需退订该提醒服务"])[:, 1]
        logit = np.log(p) - np.log1p(-p)
        return logit[0] - logit[1]

    assert pull(plain) > 0 and pull(augmented) < pull(plain), (pull(plain), pull(augmented))


def test_mark_set_2_drops_every_character_that_dev_normal_messages_lost():
    """A corpus artifact is a character dev.tsv's normal class never has, while its spam and raw_dev's normal
    messages do: fitted as is, it is learned as spam and flags real notifications. Set 2 drops every one found in
    the data (between Chinese characters; URLs and numbers keep their dots, which the normaliser types anyway);
    set 1 (v3) left the space among others."""
    from training.cli import resolve_data
    from training.data import load_tsv
    from training.train import without_stripped_marks

    dev, raw = load_tsv(resolve_data("dev.tsv")), load_tsv(resolve_data("raw_dev.tsv"))

    def share(rows: list[str]) -> collections.Counter:
        counts = collections.Counter(ch for text in rows for ch in set(text))
        return collections.Counter({ch: n / len(rows) for ch, n in counts.items()})

    dev_normal = share([t for t, y in zip(dev.texts, dev.labels) if y == 0])
    dev_spam = share([t for t, y in zip(dev.texts, dev.labels) if y == 1])
    raw_normal = share([t for t, y in zip(raw.texts, raw.labels) if y == 0])
    lost = {ch for ch, p in dev_spam.items() if p > 0.002 and not dev_normal[ch] and raw_normal[ch] > 0.005}
    assert {" ", ".", ":", "[", "]"} <= lost
    dropped = {ch for ch in lost if without_stripped_marks(f"您好{ch}明天", 2) == "您好明天"}
    assert dropped == lost
    assert " " not in {ch for ch in lost if without_stripped_marks(f"您好{ch}明天", 1) == "您好明天"}


def test_domain_copies_and_blends_fold_into_one_linear_model_on_the_plain_features():
    """Domain corrections and the plain blend end in one coef_ over the served columns (what explanations
    read), and that model decides as the augmented fit does on domain rows / as the average of the two."""
    from scipy import sparse
    from sklearn.linear_model import LogisticRegression

    from detector.model import fit_linear

    rng = np.random.default_rng(3)
    X = sparse.random(300, 40, density=0.2, format="csr", random_state=4)
    y = (X[:, :5].sum(axis=1).A1 > 0.3).astype(int)
    domain = rng.random(300) < 0.3
    w = np.where(domain, 3.0, 1.0)
    served = fit_linear(X, y, w, 5.0, domain=domain)
    augmented = LogisticRegression(C=5.0, solver="liblinear").fit(
        sparse.hstack([X, sparse.diags(domain.astype(float)) @ X], format="csr"), y, sample_weight=w)
    as_domain_rows = sparse.hstack([X, X], format="csr")
    assert served.coef_.shape == (1, 40)
    assert np.allclose(served.decision_function(X), augmented.decision_function(as_domain_rows))
    blended = fit_linear(X, y, w, 5.0, nb_scale=1.0, domain=domain, plain_share=0.5)
    both = (fit_linear(X, y, w, 5.0, nb_scale=1.0, domain=domain).decision_function(X)
            + fit_linear(X, y, w, 5.0).decision_function(X)) / 2
    assert np.allclose(blended.decision_function(X), both)


def test_out_of_fold_scores_only_use_columns_two_training_rows_of_the_fold_have(monkeypatch):
    """With a vocabulary fitted on all rows, a text's rare n-gram has a column because one other text has it; a
    new message's needs two training texts. Each fold must drop the columns its own training rows lack."""
    from scipy import sparse

    from detector import model as model_module

    rng = np.random.default_rng(0)
    X = sparse.random(120, 40, density=0.08, random_state=1, format="csr")
    X.data[:] = 1.0
    y = (rng.random(120) < 0.4).astype(int)
    y[:2] = [0, 1]
    seen = []
    real_fit_linear = model_module.fit_linear

    def recording(X_train, y_train, *args, **kwargs):
        seen.append(X_train)
        return real_fit_linear(X_train, y_train, *args, **kwargs)

    monkeypatch.setattr(model_module, "fit_linear", recording)
    model_module.CalibratedLinear(folds=3, fold_min_df=2).fit(X, y)
    folds = seen[:3]                      # the last call is the final fit on all rows
    for X_train in folds:
        kept = np.bincount(X_train.indices, minlength=40)
        assert kept[kept > 0].min() >= 2
    assert seen[3].nnz == X.nnz           # the served model keeps every column
    seen.clear()
    model_module.CalibratedLinear(folds=3).fit(X, y)

    def rarest(X_train) -> int:
        counts = np.bincount(X_train.indices, minlength=40)
        return int(counts[counts > 0].min())

    assert min(rarest(X_train) for X_train in seen[:3]) == 1   # without it, a fold fits a column one row has


def test_train_without_a_split_ships_a_model_fitted_on_all_rows(small_files, tmp_path):
    """No test part, no held-out model: the manifest and artifact are still written."""
    dev, _ = small_files
    out = tmp_path / "all-rows"
    result = CliRunner().invoke(main, ["train", "--data", str(dev), "--features-log2", "14", "--out", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["trained_on"] == "all rows" and manifest["heldout_threshold"] is None
    assert manifest["metrics"] == {} and not (out / "report.md").exists()


def test_load_tsv_splits_lines_on_newline_only_and_skips_a_bom_and_blank_lines(tmp_path):
    path = tmp_path / "odd.tsv"
    path.write_bytes("\ufeff1\t优惠\u2028速抢\r\n0\t你好\x85再见\u2029\n\n0\t在吗\n\n".encode())
    data = load_tsv(path)
    assert data.texts == ["优惠\u2028速抢", "你好\x85再见\u2029", "在吗"] and data.labels.tolist() == [1, 0, 0]


def test_export_labels_output_reads_back_with_the_same_rows(tmp_path):
    from detector.dashboard.actions import dedup_labels, write_labels_tsv

    records = [{"content": "退订\u2028回T", "label": 1}, {"content": "明天\x85见\u2029", "label": 0}]
    written = write_labels_tsv(dedup_labels(records), tmp_path / "labels.tsv")
    assert len(load_tsv(tmp_path / "labels.tsv")) == written == 2
    assert "\u2028" not in (tmp_path / "labels.tsv").read_text(encoding="utf-8")


@pytest.mark.parametrize("content, command, message", [
    (b"1\tok\n0\t\xff\xfe bad\n", "train", r"bad\.tsv:2: not UTF-8 \(byte offset 7"),
    (b"1\tok\n0\t\xff\xfe bad\n", "evaluate", r"bad\.tsv:2: not UTF-8 \(byte offset 7"),
    (b"", "train", "has no rows"),
    (b"\n", "evaluate", "has no rows"),
    (b"1\t\xe4\xbc\x98\xe6\x83\xa0\n1\tspam\n", "train", "only label 1; at least one spam"),
])
def test_bad_training_files_are_one_line_errors(tmp_path, trained, content, command, message):
    path = tmp_path / "bad.tsv"
    path.write_bytes(content)
    args = (["train", "--out", str(tmp_path / "m")] if command == "train"
            else ["evaluate", "--model", trained.name, "--models-dir", str(trained.parent)])
    result = CliRunner().invoke(main, [*args, "--data", str(path)])
    assert result.exit_code == 2 and re.search(message, result.output), result.output


@pytest.mark.parametrize("options, message", [
    (["--weight", "devv=5:1"], "--weight 'devv': not a --data file stem"),
    (["--unpunctuated", "devv"], "--unpunctuated 'devv': not a --data file stem"),
    (["--threshold-on", "rawdev"], "--threshold-on 'rawdev': not a --data file stem"),
    (["--domain", "rawdev"], "--domain 'rawdev': not a --data file stem"),
    (["--weight", "small_dev=abc"], "weight 'abc': expected SPAM:NORMAL"),
    (["--weight", "small_dev=-1:1"], "weight '-1:1': expected SPAM:NORMAL"),
    (["--plain-share", "0.5"], "--plain-share only blends with --nb-scale or --domain"),
    (["--C", "0"], "Invalid value for '--C'"),
    (["--features-log2", "40"], "Invalid value for '--features-log2'"),
    (["--target-precision", "1.5"], "Invalid value for '--target-precision'"),
])
def test_train_options_are_checked_before_anything_is_loaded(small_files, tmp_path, monkeypatch, options, message):
    import training.run

    def no_loading(path):
        raise AssertionError("loaded data before checking the options")

    monkeypatch.setattr(training.run, "load_tsv", no_loading)
    result = CliRunner().invoke(main, ["train", "--data", str(small_files[0]), "--out", str(tmp_path / "m"),
                                       "--split", "template:0.3", *options])
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "m").exists()


def test_an_unreachable_target_precision_is_a_warning_not_a_silent_default(small_files, tmp_path, monkeypatch):
    import training.train

    monkeypatch.setattr(training.train, "reaching_threshold", lambda proba, labels, target: None)
    result = CliRunner().invoke(main, ["train", "--data", str(small_files[0]), "--features-log2", "12",
                                       "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "shipped model's out-of-fold scores reach the target precision 0.95 at no threshold" in result.stderr
    assert json.loads((tmp_path / "m" / "manifest.json").read_text())["warnings"]


def test_a_text_labelled_both_ways_across_the_data_files_is_a_warning(small_files, tmp_path):
    """QA14 case 5: an operator's correction exported by export-labels (a normal label for a text the corpus calls
    spam) was fitted beside the corpus row without a word: the two rows cancel out and the correction is lost."""
    corpus = load_tsv(small_files[0])
    spam = [t for t, label in zip(corpus.texts, corpus.labels) if label == 1][:2]
    labels = tmp_path / "labels.tsv"
    labels.write_text(f"0\t{spam[0]}\n0\t{spam[1]}\n1\t加微信领红包 稳赚不赔\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["train", "--data", str(small_files[0]), "--data", str(labels),
                                       "--features-log2", "12", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    warning = "2 texts are labelled spam in small_dev and normal in labels"
    assert warning in result.stderr, result.stderr
    assert any(warning in w for w in json.loads((tmp_path / "m" / "manifest.json").read_text())["warnings"])


def test_the_training_summary_is_not_wrapped_when_stderr_is_not_a_terminal(small_files, tmp_path):
    result = CliRunner().invoke(main, ["train", "--data", str(small_files[1]), "--split", "stratified:0.3",
                                       "--features-log2", "12", "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    figures = r"F1 \d\.\d{4} FPR \d\.\d{4} \(classic baseline F1 \d\.\d{4} FPR \d\.\d{4}\)$"
    assert re.search(r"^small_raw_dev:test\(stratified:0\.3\): " + figures, result.stderr, re.M), result.stderr
    assert re.search(r"^wrote .* threshold \d\.\d{4}$", result.stderr, re.M), result.stderr


def _train_small(data, out, *options):
    return CliRunner().invoke(main, ["train", "--data", str(data), "--features-log2", "12", "--out", str(out),
                                     *options])


def test_retraining_into_an_existing_folder_needs_force_and_never_replaces_a_kept_model(small_files, trained,
                                                                                          tmp_path):
    from detector.registry import Registry

    models = tmp_path / "models"
    for name in ("old", "promoted", "scratch"):
        shutil.copytree(trained, models / name)
    registry = Registry(models)
    registry.promote("old")
    registry.promote("promoted")
    before = {name: (models / name / "model.skops").read_bytes() for name in ("old", "promoted", "scratch")}
    refused = _train_small(small_files[1], models / "scratch")
    assert refused.exit_code == 2 and "already has files" in refused.output
    for name in ("old", "promoted"):                     # the promoted one and the one rollback returns to
        result = _train_small(small_files[1], models / name, "--force")
        assert result.exit_code == 2 and "promotion history" in result.output
    assert before == {name: (models / name / "model.skops").read_bytes() for name in before}
    forced = _train_small(small_files[1], models / "scratch", "--force")
    assert forced.exit_code == 0, forced.output
    assert (models / "scratch" / "model.skops").read_bytes() != before["scratch"]
    assert not (models / "scratch" / "report").exists() and not (models / "scratch" / "report.md").exists()


def test_promote_is_refused_for_an_out_folder_outside_the_registry(small_files, tmp_path, monkeypatch):
    monkeypatch.setenv("SMSGUARD_MODELS_DIR", str(tmp_path / "registry"))
    result = _train_small(small_files[1], tmp_path / "elsewhere" / "m", "--promote")
    assert result.exit_code == 2 and "not a folder of the registry" in result.output
    assert not (tmp_path / "elsewhere").exists()
    promoted = _train_small(small_files[1], tmp_path / "registry" / "m", "--promote")
    assert promoted.exit_code == 0, promoted.output
    assert json.loads((tmp_path / "registry" / "registry.json").read_text())["promoted"] == "m"


def test_evaluate_warns_unless_the_rows_are_the_models_own_test_part(trained, small_files, tmp_path):
    dev, raw = small_files
    models_dir = str(trained.parent)

    def evaluate(data, *options):
        result = CliRunner().invoke(main, ["evaluate", "--model", "tiny-v1", "--models-dir", models_dir, "--data",
                                           str(data), "--json", *options])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)["warning"], result.stderr

    assert evaluate(raw, "--split", "template:0.3") == (None, "")          # the manifest's split and seed
    warning, stderr = evaluate(raw, "--split", "template:0.3", "--seed", "7")
    assert re.search(r"\d+ of these \d+ rows are training rows from small_raw_dev", warning) and warning in stderr
    assert "training rows from small_dev" in evaluate(dev, "--split", "stratified:0.3")[0]
    part = tmp_path / "part.tsv"                                           # a subset: another sha256
    part.write_text("".join(dev.read_text(encoding="utf-8").splitlines(keepends=True)[:200]), encoding="utf-8")
    assert "training rows from small_dev" in evaluate(part)[0]
    renamed = tmp_path / "copy" / "small_raw_dev.tsv"                      # training file gone: same name
    renamed.parent.mkdir()
    renamed.write_text(raw.read_text(encoding="utf-8") + "0\t另一行\n", encoding="utf-8")
    moved = tmp_path / "models" / "tiny-v1"
    shutil.copytree(trained, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    for entry in manifest["training_data"]:
        entry["path"] = str(tmp_path / "gone" / f"{entry['name']}.tsv")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    models_dir = str(moved.parent)
    assert "trained on a file named small_raw_dev" in evaluate(renamed)[0]


def test_evaluate_refuses_an_empty_test_part(trained, tmp_path):
    path = tmp_path / "one.tsv"
    path.write_text("1\t优惠\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["evaluate", "--model", "tiny-v1", "--models-dir", str(trained.parent),
                                       "--data", str(path), "--split", "template:0.01", "--seed", "1"])
    assert result.exit_code == 2 and "has no rows" in result.output, result.output


def test_evaluate_compare_without_a_model_to_compare_with_is_refused(trained, small_files, tmp_path):
    """QA14 case 7: in a registry with nothing promoted, `evaluate --compare tiny-v1` without --model printed
    tiny-v1's figures as both the model and the comparison."""
    shutil.copytree(trained, tmp_path / "tiny-v1")                  # a registry of its own: nothing promoted
    result = CliRunner().invoke(main, ["evaluate", "--compare", "tiny-v1", "--models-dir", str(tmp_path),
                                       "--data", str(small_files[1]), "--json"])
    assert result.exit_code == 2 and "no --model given and no promoted model" in result.output, result.output
