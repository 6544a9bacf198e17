"""Data scientists' commands: ``train``, ``evaluate``, ``models list|promote|rollback`` and ``bench score``."""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from detector.errors import SmsGuardError
from detector.textnorm import LATEST, VERSIONS

DEFAULT_DATA = ("dev.tsv", "raw_dev.tsv")


def resolve_data(path: str) -> Path:
    """A data file as given, else under SMSGUARD_DATA_DIR (itself relative to cwd, else to the repo)."""
    from detector.registry import _REPO_ROOT
    from detector.settings import Settings

    candidate = Path(path)
    if candidate.is_file():
        return candidate
    data_dir = Path(Settings.from_env().data_dir)
    for base in (data_dir, _REPO_ROOT / data_dir):
        if (base / path).is_file():
            return base / path
    return candidate


def _registry(models_dir: str | None):
    from detector.registry import Registry

    return Registry(models_dir)


def _not_heldout(manifest: dict, dataset, split, seed: int) -> str | None:
    """Why the rows of ``dataset`` (a file, or its test part under ``split``) are not held out from the model
    of ``manifest``; None when they are.

    The test part of the very split and seed the model was trained with is held out (the report's figures).
    Otherwise the rows are compared, by text, with the training rows of each training file, rebuilt from the
    manifest (path, sha256, split, seed) when that file is still there unchanged; a subset or another split of
    a training file is caught that way. Without the file, a file of the same name is assumed to overlap.
    """
    import numpy as np

    from training.data import load_tsv, parse_split, split_indices

    seed_used = manifest.get("parameters", {}).get("seed")
    all_rows = manifest.get("trained_on") == "all rows"
    reasons = []
    for entry in manifest.get("training_data", []):
        if (entry.get("sha256") == dataset.sha256 and not all_rows and split.kind != "none"
                and entry.get("split") == str(split) and seed_used == seed):
            continue
        try:   # the path as trained (relative to where train ran), else the same name in SMSGUARD_DATA_DIR
            trained = load_tsv(resolve_data(entry.get("path", "")) if entry.get("path") else "")
            if trained.sha256 != entry.get("sha256"):
                trained = load_tsv(resolve_data(Path(entry["path"]).name))
        except SmsGuardError:
            trained = None
        if trained is None or trained.sha256 != entry.get("sha256") or seed_used is None:
            if dataset.name.split(":")[0] == entry.get("name"):
                reasons.append(f"it was trained on a file named {entry.get('name')} (split {entry.get('split')}, "
                               f"seed {seed_used}; not found unchanged, so the rows could not be compared)")
            continue
        rows = (np.arange(len(trained)) if all_rows
                else split_indices(trained, parse_split(entry.get("split", "none")), seed_used)[0])
        seen = {trained.texts[i] for i in rows}
        overlap = sum(text in seen for text in dataset.texts)
        if overlap:
            reasons.append(f"{overlap} of these {len(dataset)} rows are training rows from {entry.get('name')}")
    return "; ".join(reasons) or None


def _check_out(out: Path, force: bool, promote: bool):
    """Refuse an --out that training would wrongly overwrite or promote; the registry --promote will use.

    Workers hot-load the promoted folder's new bytes without any promote, and rollback needs the bytes of every
    model promoted before: those folders are never overwritten, --force or not.
    """
    from detector.errors import ConfigError
    from detector.registry import Registry

    configured = _registry(None)
    if promote and out.parent.resolve() != configured.root.resolve():
        raise ConfigError(f"--promote: {out} is not a folder of the registry {configured.root} "
                          "(SMSGUARD_MODELS_DIR); train into it or promote with `smsguard models promote`")
    parent = Registry(out.parent.resolve())   # absolute: a relative one would be looked up in the repo
    if out.name in parent.kept_names():
        raise ConfigError(f"--out {out}: {out.name!r} is the promoted model or in the promotion history of "
                          f"{parent.path} (rollback needs it): train into a new folder")
    if out.is_dir() and any(out.iterdir()) and not force:
        raise ConfigError(f"--out {out} already has files: give a new folder, or --force to replace them")
    return configured


def register(main: click.Group, bench: click.Group) -> None:
    @main.command()
    @click.option("--data", "data", multiple=True, required=True,
                  help="Labeled TSV (label<TAB>text); repeat for several. Bare names are looked up in SMSGUARD_DATA_DIR.")
    @click.option("--split", "splits", multiple=True,
                  help="Held-out split per --data, in order: none, stratified:FRACTION or template:FRACTION "
                       "(texts sharing a template_key stay on one side).")
    @click.option("--holdout", is_flag=True,
                  help="Shorthand for the documented protocol: stratified:0.2 for the first file, template:0.3 for the others.")
    @click.option("--weight", "weights", multiple=True, metavar="NAME=SPAM:NORMAL",
                  help="Sample weights for one data set by file stem, e.g. raw_dev=2:6 (raw traffic counts more).")
    @click.option("--out", required=True, type=click.Path(file_okay=False), help="Model folder, e.g. models/zh-linear-v3.")
    @click.option("--refit-all", is_flag=True, help="After the held-out evaluation, ship a model refitted on all rows.")
    @click.option("--target-precision", type=click.FloatRange(0, 1, min_open=True), default=0.95, show_default=True,
                  help="The threshold is the lowest reaching this precision on out-of-fold training scores.")
    @click.option("--threshold-on", default="", metavar="NAME",
                  help="Pick the threshold on the out-of-fold scores of this data set only (file stem, e.g. raw_dev).")
    @click.option("--C", "C", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True, help="Inverse L2 strength.")
    # 2**24 columns already make the idf and coefficient vectors 128 MB each; 40 asked numpy for 8 TiB.
    @click.option("--features-log2", type=click.IntRange(8, 24), default=20, show_default=True,
                  help="Hashed feature space size (log2); unused with --min-df.")
    @click.option("--min-df", type=click.IntRange(min=1), default=None,
                  help="A fitted vocabulary of the tokens in at least this many training texts, instead of a "
                       "hashed space (tokens seen once are dropped rather than sharing columns with useful ones).")
    @click.option("--words/--no-words", default=True, show_default=True,
                  help="Jieba words beside the character n-grams.")
    @click.option("--keep-spaces", is_flag=True,
                  help="Cut the character n-grams from the text with its spaces (word and signature boundaries), "
                       "not from a space-free copy.")
    @click.option("--unpunctuated", "unpunctuated", multiple=True, metavar="NAME",
                  help="Data set (file stem) whose normal class lost its punctuation in the corpus (dev): its rows "
                       "are fitted with those marks dropped from both classes. Test rows are never changed.")
    @click.option("--stripped-marks", type=click.Choice(["1", "2"]), default="1", show_default=True,
                  help="Which marks --unpunctuated drops: 1 (v3) ，！。()；【】《》-; 2 also spaces and . : [ ] ？ # _ @ "
                       "(outside URLs and numbers), which dev.tsv's normal class lost too.")
    @click.option("--normalizer", type=click.Choice([str(v) for v in VERSIONS]), default=str(LATEST), show_default=True,
                  help="Text normaliser version the model reads with (detector.textnorm): 1 up to zh-linear-v4; 2 also "
                       "undoes the red team's text tricks and leaves the unsubscribe instruction out of the model text; 3 "
                       "(zh-linear-v7) also reads look-alike characters and letters written for digits (贷歀, 5O万) and no "
                       "longer reads a clock time before a domain word (8点TV) as a link.")
    @click.option("--augment-unsubscribe", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                  metavar="SHARE",
                  help="Fit this share of the spam rows once more with an unsubscribe clause taken from a normal row "
                       "(training.train.with_unsubscribe_copies), so adding one to spam stops lowering its score.")
    @click.option("--char-ngrams", default="1-3", show_default=True, metavar="MIN-MAX",
                  help="Character n-gram lengths (beside the jieba words).")
    @click.option("--nb-scale", type=click.FloatRange(min=0), default=0.0, show_default=True,
                  help="NB-SVM: scale each column by its log-count ratio to this power before the regression (0: off).")
    @click.option("--domain", default="", metavar="NAME",
                  help="Data set (file stem) whose rows also get a copy of their features, so the model learns "
                       "corrections for that kind of traffic (feature augmentation).")
    @click.option("--domain-share", type=click.FloatRange(min=0), default=1.0, show_default=True,
                  help="With --domain: served weights are shared + this × the domain corrections.")
    @click.option("--plain-share", type=click.FloatRange(0, 1), default=0.0, show_default=True,
                  help="With --nb-scale or --domain: average in a plain regression's log-odds with this weight "
                       "(still one linear model).")
    @click.option("--seed", type=click.IntRange(0, 2**32 - 1), default=42, show_default=True)
    @click.option("--promote", is_flag=True,
                  help="Promote the new model in the registry (SMSGUARD_MODELS_DIR; --out must be a folder in it).")
    @click.option("--force", is_flag=True,
                  help="Replace the files of an existing --out (never a promoted model or one rollback may return to).")
    def train(data, splits, holdout, weights, out, refit_all, target_precision, threshold_on, C, features_log2,
              min_df, words, keep_spaces, unpunctuated, stripped_marks, normalizer, augment_unsubscribe, char_ngrams, nb_scale, domain, domain_share,
              plain_share, seed, promote, force):
        """Train a model: held-out evaluation, artifact (skops), manifest.json and report.md."""
        from rich.console import Console
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        from detector.errors import ConfigError
        from training.data import parse_split
        from training.run import TrainJob, _parse_weight, run_training
        from training.train import TrainParams

        registry = _check_out(Path(out), force, promote)
        paths = [resolve_data(d) for d in data]
        if holdout and splits:
            raise ConfigError("give either --holdout or --split, not both")
        specs = list(splits) or (["stratified:0.2"] + ["template:0.3"] * (len(paths) - 1) if holdout else [])
        specs = specs or ["none"] * len(paths)
        if len(specs) != len(paths):
            raise ConfigError(f"{len(specs)} --split for {len(paths)} --data: give one per data file")
        weight_map = {}
        for spec in weights:
            name, sep, value = spec.partition("=")
            if not sep:
                raise ConfigError(f"--weight {spec!r}: expected NAME=SPAM:NORMAL")
            _parse_weight(value)
            weight_map[name] = value
        # Checked before anything is loaded or fitted: a misspelt name used to be ignored (or, for
        # --threshold-on, refused only after the held-out model had been fitted).
        stems = [p.stem for p in paths]
        named = [("--weight", n) for n in weight_map] + [("--unpunctuated", n) for n in unpunctuated]
        named += [(option, n) for option, n in (("--threshold-on", threshold_on), ("--domain", domain)) if n]
        for option, name in named:
            if name not in stems:
                raise ConfigError(f"{option} {name!r}: not a --data file stem (expected one of {', '.join(stems)})")
        if plain_share and not (nb_scale or domain):
            raise ConfigError("--plain-share only blends with --nb-scale or --domain: give one of them")
        low, _, high = char_ngrams.partition("-")
        if not (low.isdigit() and high.isdigit() and 1 <= int(low) <= int(high) <= 6):
            raise ConfigError(f"--char-ngrams {char_ngrams!r}: expected MIN-MAX, e.g. 1-3")
        params = TrainParams(n_features_log2=features_log2, ngram_min=int(low), ngram_max=int(high), C=C,
                             min_df=min_df, words=words, keep_spaces=keep_spaces,
                             target_precision=target_precision, threshold_on=threshold_on, seed=seed,
                             weights=weight_map, unpunctuated=tuple(unpunctuated),
                             stripped_marks=int(stripped_marks), normalizer=int(normalizer),
                             augment_unsubscribe=augment_unsubscribe, nb_scale=nb_scale,
                             domain=domain, domain_share=domain_share, plain_share=plain_share)
        job = TrainJob(paths, [parse_split(s) for s in specs], Path(out), params, refit_all,
                       command="smsguard " + " ".join(shlex.quote(a) for a in sys.argv[1:]))
        steps = 3 + 2 * any(s != "none" for s in specs) + len([s for s in specs if s != "none"]) + int(refit_all)
        # soft_wrap: a log captured from a non-terminal stderr (80 columns) was cut mid-figure ("FPR \n0.0131)").
        console = Console(stderr=True, soft_wrap=True)
        with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                      TimeElapsedColumn(), console=console) as progress:
            task = progress.add_task("training", total=steps)

            done = iter(range(steps + 1))

            def step(message: str) -> None:  # each step's start completes the one before
                progress.update(task, description=message, completed=next(done))

            manifest = run_training(job, step)
            progress.update(task, completed=steps, description="done")
        for name, metrics in manifest["metrics"].items():
            base = manifest["baseline_metrics"][name]
            console.print(f"{name}: F1 {metrics['f1']:.4f} FPR {metrics['false_positive_rate']:.4f} "
                          f"(classic baseline F1 {base['f1']:.4f} FPR {base['false_positive_rate']:.4f})")
        for warning in manifest["warnings"]:
            console.print(f"warning: {warning}", style="yellow")
        console.print(f"wrote {out} ({manifest['artifact_bytes'] / 1e6:.1f} MB), threshold {manifest['threshold']:.4f}")
        if promote:
            registry.promote(Path(out).name)
            console.print(f"promoted {Path(out).name}")

    @main.command()
    @click.option("--model", default=None, help="Model name in the registry (default: the promoted model).")
    @click.option("--data", required=True, help="Labeled TSV to evaluate on.")
    @click.option("--split", "split", default="none", show_default=True,
                  help="Evaluate only the test part of this split (as in train), e.g. template:0.3.")
    @click.option("--seed", type=int, default=42, show_default=True)
    @click.option("--compare", default=None, help="A second model to show side by side on the same data.")
    @click.option("--models-dir", default=None, help="Registry directory (default SMSGUARD_MODELS_DIR).")
    @click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
    @click.option("--evasions", is_flag=True,
                  help="Also the recall on the spam rows rewritten as a spammer would (signature + 回T退订, disguised "
                       "links and numbers, separators, strike-through, look-alikes, all at once; training.evasions).")
    def evaluate(model, data, split, seed, compare, models_dir, as_json, evasions):
        """Precision, recall, F1, PR AUC, accuracy and FPR of the spam class at the model's threshold."""
        from detector.errors import ConfigError
        from detector.model import load_model
        from training.data import load_tsv, parse_split, split_indices
        from training.evaluate import METRIC_NAMES, spam_metrics

        registry = _registry(models_dir)
        model = model or registry.promoted_name()
        if model is None:   # checked first: with --compare alone, the compared model was shown as both columns
            from detector.errors import ModelError

            raise ModelError("no --model given and no promoted model")
        dataset = load_tsv(resolve_data(data))
        parsed = parse_split(split)
        if parsed.kind != "none":
            dataset = dataset.subset(split_indices(dataset, parsed, seed)[1], "test")
            if not len(dataset):
                raise ConfigError(f"--split {split}: the test part of {data} has no rows")
        results = {}
        for name in filter(None, [model, compare]):
            loaded = load_model(registry.model_path(name))
            warning = _not_heldout(loaded.manifest, dataset, parsed, seed)
            if warning:
                warning = f"{name}: {warning}; these are not held-out figures (see its report.md for those)"
                click.secho(f"warning: {warning}", fg="yellow", err=True)
            metrics = spam_metrics(dataset.labels, loaded.score(dataset.texts), loaded.threshold)
            results[name] = {"model": loaded.version, "threshold": round(loaded.threshold, 4),
                             **{k: metrics[k] for k in METRIC_NAMES}, "warning": warning}
            if evasions:
                from training.evasions import recalls

                spam = [text for text, label in zip(dataset.texts, dataset.labels) if label == 1]
                if not spam:
                    raise ConfigError(f"--evasions: {data} has no spam rows to disguise")
                results[name]["evasions"] = {k: round(v, 4) for k, v in recalls(loaded, spam).items()}
        if as_json:
            first = next(iter(results.values()))
            click.echo(json.dumps({**first, "compare": results[compare]} if compare else first, ensure_ascii=False))
            return
        from rich.console import Console
        from rich.table import Table

        table = Table(title=f"{dataset.name} ({len(dataset)} messages)")
        table.add_column("metric")
        for name in results:
            table.add_column(results[name]["model"], justify="right")
        for key in ("threshold",) + METRIC_NAMES:
            table.add_row(key, *(str(r[key]) for r in results.values()))
        for key in next(iter(results.values())).get("evasions", ()):
            table.add_row(f"spam recall: {key}", *(str(r["evasions"][key]) for r in results.values()))
        Console().print(table)

    @main.group()
    def models() -> None:
        """The model registry (SMSGUARD_MODELS_DIR): list, promote, rollback."""

    @models.command("list")
    @click.option("--models-dir", default=None)
    @click.option("--json", "as_json", is_flag=True)
    def models_list(models_dir, as_json):
        """Every model with its version, threshold and held-out F1; * marks the promoted one."""
        registry = _registry(models_dir)
        rows = registry.list()
        if as_json:
            click.echo(json.dumps(rows, ensure_ascii=False, indent=2))
            return
        if not rows:
            click.echo(f"no models in {registry.root}")
        for row in rows:
            if row["broken"]:
                click.echo(f"! {row['name']}  broken: {row['broken']}")
                continue
            f1 = ", ".join(f"{k} F1 {v.get('f1') if isinstance(v, dict) else '?'}" for k, v in row["metrics"].items())
            click.echo(f"{'*' if row['promoted'] else ' '} {row['version']}  created {row['created_at']}  "
                       f"threshold {row['threshold']:.4f}  {f1}")

    @models.command("promote")
    @click.argument("name")
    @click.option("--models-dir", default=None)
    def models_promote(name, models_dir):
        """Make NAME the model workers serve (after checking it loads)."""
        model = _registry(models_dir).promote(name)
        click.echo(f"promoted {model.version}")

    @models.command("rollback")
    @click.option("--models-dir", default=None)
    def models_rollback(models_dir):
        """Return to the model promoted before the current one."""
        click.echo(f"rolled back to {_registry(models_dir).rollback()}")

    @bench.command("score")
    @click.option("--messages", type=int, default=50_000, show_default=True)
    @click.option("--batch-size", type=int, default=500, show_default=True)
    @click.option("--model", default=None, help="Model name (default: the promoted model).")
    @click.option("--models-dir", default=None)
    @click.option("--json", "as_json", is_flag=True)
    def bench_score(messages, batch_size, model, models_dir, as_json):
        """Scoring throughput: uncached, template cache on template-heavy traffic, and the classic pipeline."""
        from training.bench_score import run_bench

        report = run_bench(_registry(models_dir), model, messages, batch_size,
                           [resolve_data(d) for d in DEFAULT_DATA])
        click.echo(json.dumps(report, indent=2) if as_json else report["summary"])
