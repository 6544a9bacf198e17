"""Registry promote/rollback and what a worker's ModelWatcher sees."""
from __future__ import annotations

import json
import shutil

import pytest

from detector import metrics
from detector.errors import ModelError
from detector.model import ARTIFACT, MANIFEST
from detector.registry import ModelWatcher, Registry, resolve_models_dir


@pytest.fixture(scope="module")
def default_path():
    registry = Registry("models")
    return registry.model_path(registry.promoted_name())


@pytest.fixture
def registry(default_path, tmp_path):
    """A registry with two models, 'alpha' and 'beta' (copies of the default with their own names)."""
    for name, threshold in (("alpha", 0.4), ("beta", 0.6)):
        target = tmp_path / name
        shutil.copytree(default_path, target, ignore=shutil.ignore_patterns("report*"))
        manifest = json.loads((target / MANIFEST).read_text())
        manifest.update(name=name, threshold=threshold, created_at=f"2026-01-0{int(threshold * 10)}T00:00:00+00:00")
        (target / MANIFEST).write_text(json.dumps(manifest))
    return Registry(tmp_path)


def test_the_repo_promotes_a_default_model():
    assert resolve_models_dir("models").is_absolute() or resolve_models_dir("models").exists()
    registry = Registry("models")
    assert registry.promoted_name() is not None
    assert registry.load_promoted().name == registry.promoted_name()


def test_list_shows_models_and_the_promoted_one(registry):
    registry.promote("alpha", at="2026-01-01T00:00:00Z")
    rows = registry.list()
    assert [r["name"] for r in rows] == ["beta", "alpha"]   # newest first
    assert [r["promoted"] for r in rows] == [False, True]


def test_promote_and_rollback_switch_what_the_watcher_returns(registry):
    watcher = ModelWatcher(registry.root)
    assert watcher.poll() is None                              # nothing promoted yet
    registry.promote("alpha")
    first = watcher.poll()
    assert first is not None and first.name == "alpha" and first.threshold == 0.4
    assert watcher.poll() is None                              # unchanged pointer: no reload
    registry.promote("beta")
    assert watcher.poll().name == "beta"
    assert registry.rollback() == "alpha"
    assert watcher.poll().name == "alpha"
    history = json.loads(registry.path.read_text())["history"]
    assert [h["action"] for h in history] == ["promote", "promote", "rollback"]


def test_rollback_after_promoting_the_same_model_twice_returns_to_the_model_before_it(registry):
    """QA14 case 6: a promote run twice (retried, or by two people) made rollback 'roll back to' the model
    already served: the CLI printed "rolled back to beta" and the workers kept beta."""
    registry.promote("alpha")
    registry.promote("beta")
    registry.promote("beta")
    assert registry.rollback() == "alpha" and registry.promoted_name() == "alpha"
    with pytest.raises(ModelError, match="nothing to roll back to"):
        registry.rollback()
    assert [h["action"] for h in json.loads(registry.path.read_text())["history"]] == [
        "promote", "promote", "promote", "rollback"]          # every promote is still in the history


def test_two_promotes_at_once_both_stay_in_the_history(registry, monkeypatch):
    """QA14 case 8: promote read registry.json, added its entry and wrote the file back; a second promote (another
    data scientist, another terminal) that read the file before the first one wrote it lost the first one's entry.
    Here the first promote is held between its read and its write while the second one runs."""
    import threading

    held, release = threading.Event(), threading.Event()
    write = Registry._write

    def held_write(self, state):
        if state["promoted"] == "alpha":
            held.set()
            release.wait(10)
        write(self, state)

    monkeypatch.setattr(Registry, "_write", held_write)
    first = threading.Thread(target=Registry(registry.root).promote, args=("alpha",))
    first.start()
    assert held.wait(60)
    second = threading.Thread(target=Registry(registry.root).promote, args=("beta",))
    second.start()
    second.join(2.0)             # with the registry locked it waits for the first promote to finish
    release.set()
    first.join()
    second.join()
    history = json.loads(registry.path.read_text())["history"]
    assert [h["name"] for h in history] == ["alpha", "beta"] and registry.promoted_name() == "beta"


def test_rollback_without_an_earlier_model_is_refused(registry):
    with pytest.raises(ModelError, match="nothing to roll back"):
        registry.rollback()
    registry.promote("alpha")
    with pytest.raises(ModelError, match="nothing to roll back"):
        registry.rollback()


def test_watcher_keeps_the_previous_model_when_the_new_artifact_is_tampered(registry):
    watcher = ModelWatcher(registry.root)
    registry.promote("alpha")
    serving = watcher.poll()
    artifact = registry.root / "beta" / ARTIFACT
    good = artifact.read_bytes()
    registry.promote("beta")
    artifact.write_bytes(good[:-10] + b"0123456789")            # corrupted after promotion
    refused = metrics.MODEL_RELOADS_REFUSED._value.get()
    assert watcher.poll() is None and watcher.poll() is None
    assert isinstance(watcher.last_error, ModelError) and "sha256" in str(watcher.last_error)
    assert metrics.MODEL_RELOADS_REFUSED._value.get() == refused + 1     # counted once, not once per poll
    assert serving.score(["你好"]).shape == (1,)                # the caller still has its model
    artifact.write_bytes(good)                                  # repaired: the next poll picks it up
    assert watcher.poll().name == "beta" and watcher.last_error is None


def test_promote_refuses_a_tampered_model(registry):
    (registry.root / "beta" / ARTIFACT).write_bytes(b"not a model")
    with pytest.raises(ModelError, match="does not match"):
        registry.promote("beta")
    assert registry.promoted_name() is None


@pytest.mark.parametrize("name", ["../bad/o1", "a/b", "a\\b", "..", ".hidden", ""])
def test_promote_refuses_names_that_are_not_one_folder_of_the_registry(registry, tmp_path, name):
    outside = tmp_path.parent / "bad" / "o1"          # a loadable model outside the registry
    shutil.copytree(registry.root / "alpha", outside, dirs_exist_ok=True)
    with pytest.raises(ModelError, match="expected a folder name in the registry"):
        registry.promote(name)
    assert registry.promoted_name() is None


def test_list_shows_a_folder_with_a_broken_manifest_and_every_other_model(registry):
    from click.testing import CliRunner

    from detector.cli import main

    (registry.root / "broken").mkdir()
    (registry.root / "broken" / MANIFEST).write_text('{"name": "broken"}')
    (registry.root / "garbled").mkdir()
    (registry.root / "garbled" / MANIFEST).write_text("{not json")
    rows = {r["name"]: r["broken"] for r in registry.list()}
    assert rows["alpha"] is None and rows["beta"] is None and rows["broken"] and rows["garbled"]
    listed = CliRunner().invoke(main, ["models", "list", "--models-dir", str(registry.root)])
    assert listed.exit_code == 0, listed.output
    assert "! broken  broken:" in listed.output and "alpha@" in listed.output and "beta@" in listed.output


def test_list_of_an_empty_or_missing_registry_says_so(tmp_path):
    from click.testing import CliRunner

    from detector.cli import main

    for folder in (tmp_path, tmp_path / "missing"):
        listed = CliRunner().invoke(main, ["models", "list", "--models-dir", str(folder)])
        assert listed.exit_code == 0 and listed.output == f"no models in {folder}\n"
