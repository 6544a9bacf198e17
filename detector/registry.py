"""The model registry: one folder per model under ``models/``, and ``registry.json`` naming the promoted one.

``registry.json`` holds ``{"promoted": NAME, "history": [{"action", "name", "at"}, …]}``; promote pushes,
rollback returns to the model promoted before. Workers follow it with :class:`ModelWatcher`.

>>> import tempfile
>>> registry = Registry(tempfile.mkdtemp())
>>> registry.promoted_name() is None, registry.list()
(True, [])
>>> registry.promote("nope")
Traceback (most recent call last):
...
detector.errors.ModelError: no model named 'nope' in the registry
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

from detector import metrics
from detector.errors import ModelError
from detector.model import MANIFEST, SpamModel, load_model

REGISTRY_FILE = "registry.json"
_REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger(__name__)


def resolve_models_dir(value: str | Path | None = None) -> Path:
    """SMSGUARD_MODELS_DIR as a path: absolute as given, else relative to cwd if it exists there, else to the repo."""
    if value is None:
        from detector.settings import Settings

        value = Settings.from_env().models_dir
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    return _REPO_ROOT / path


class Registry:
    def __init__(self, models_dir: str | Path | None = None):
        self.root = resolve_models_dir(models_dir)

    @property
    def path(self) -> Path:
        return self.root / REGISTRY_FILE

    def _read(self) -> dict[str, Any]:
        try:
            state = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"promoted": None, "history": []}
        except ValueError as exc:
            raise ModelError(f"{self.path} is not valid JSON ({exc})") from None
        state.setdefault("history", [])
        return state

    def _write(self, state: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(state, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, self.path)  # atomic: a watcher never reads half a file

    def promoted_name(self) -> str | None:
        return self._read().get("promoted")

    def list(self) -> list[dict[str, Any]]:
        """Every model folder with its manifest summary, newest first."""
        promoted = self.promoted_name()
        models = []
        for manifest_path in sorted(self.root.glob(f"*/{MANIFEST}")):
            broken = None
            try:
                manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                manifest, broken = {}, f"unreadable {MANIFEST} ({exc})"
            if not isinstance(manifest, dict):
                manifest, broken = {}, f"{MANIFEST} is not a JSON object"
            if not broken and not isinstance(manifest.get("threshold"), (int, float)):
                broken = f"{MANIFEST} has no numeric threshold"
            name = manifest_path.parent.name
            models.append({
                "broken": broken,   # None, or why this folder cannot be a served model (one bad folder hides no other)
                "name": name,
                "version": f"{name}@{str(manifest.get('artifact_sha256', '?'))[:12]}",
                "created_at": manifest.get("created_at"),
                "threshold": manifest.get("threshold"),
                "artifact_bytes": manifest.get("artifact_bytes"),
                "metrics": manifest.get("metrics") if isinstance(manifest.get("metrics"), dict) else {},
                "promoted": name == promoted,
            })
        return sorted(models, key=lambda m: m["created_at"] or "", reverse=True)

    def kept_names(self) -> set[str]:
        """The promoted model and every model promoted before it: rollback may need their bytes back."""
        state = self._read()
        return {entry["name"] for entry in state["history"] if entry.get("action") == "promote"} | (
            {state["promoted"]} if state.get("promoted") else set())

    def model_path(self, name: str) -> Path:
        # A name is one folder of this registry: "../x" or "a/b" would promote a model workers look for elsewhere.
        if not name or name.startswith(".") or any(part in name for part in ("/", "\\", "..")):
            raise ModelError(f"model name {name!r}: expected a folder name in the registry (no '/', '\\', '..' "
                             "and not starting with '.')")
        path = self.root / name
        if not (path / MANIFEST).is_file():
            raise ModelError(f"no model named {name!r} in the registry")
        return path

    @contextlib.contextmanager
    def _changing(self) -> Iterator[dict[str, Any]]:
        """The registry's state, written back at the end, with the folder locked (flock) meanwhile: a promote or
        rollback that read the file while another was changing it wrote back a history without the other's entry.
        Workers only read the file, which is replaced atomically, so they never wait for the lock."""
        self.root.mkdir(parents=True, exist_ok=True)
        folder = os.open(self.root, os.O_RDONLY)
        try:
            fcntl.flock(folder, fcntl.LOCK_EX)
            state = self._read()
            yield state
            self._write(state)
        finally:
            os.close(folder)            # releases the lock

    def promote(self, name: str, at: str | None = None) -> SpamModel:
        """Point the registry at ``name`` after checking it loads (hash and safe types)."""
        model = load_model(self.model_path(name))
        with self._changing() as state:
            state["promoted"] = name
            state["history"].append({"action": "promote", "name": name, "at": at or _now()})
        return model

    def rollback(self, at: str | None = None) -> str:
        """Return to the model promoted before the current one; its name."""
        with self._changing() as state:
            stack = _promotion_stack(state["history"])
            if len(stack) < 2:
                raise ModelError("nothing to roll back to: no earlier promoted model")
            previous = stack[-2]
            load_model(self.model_path(previous))
            state["promoted"] = previous
            state["history"].append({"action": "rollback", "name": previous, "at": at or _now()})
        return previous

    def load_promoted(self) -> SpamModel:
        name = self.promoted_name()
        if name is None:
            raise ModelError(f"no promoted model in {self.path}: train one and run `smsguard models promote NAME`")
        return load_model(self.model_path(name))


def _promotion_stack(history: list[dict[str, Any]]) -> list[str]:
    """The models rollback can return to, the served one last. Promoting the model already served changes
    nothing to go back to: a second promote of it (retried, or by two people) is not a step of its own.

    >>> _promotion_stack([{"action": "promote", "name": n} for n in ("a", "b", "b")])
    ['a', 'b']
    """
    stack: list[str] = []
    for entry in history:
        if entry["action"] == "promote":
            if not stack or stack[-1] != entry["name"]:
                stack.append(entry["name"])
        elif entry["action"] == "rollback" and stack:
            stack.pop()
    return stack


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelWatcher:
    """Follows the promoted pointer for a worker: ``poll()`` returns a new model when it changed, else None.

    When the new artifact fails to load (hash mismatch, unsafe type), ``poll()`` returns None, keeps
    the error in ``last_error`` and the caller keeps serving its previous model; later polls retry.
    """

    def __init__(self, models_dir: str | Path | None = None):
        self.registry = Registry(models_dir)
        self.current: tuple[str, str] | None = None   # (name, artifact sha256) last loaded
        self.last_error: ModelError | None = None

    def _pointer(self) -> tuple[str, str] | None:
        name = self.registry.promoted_name()
        if name is None:
            return None
        try:
            manifest = json.loads((self.registry.root / name / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return name, "?"
        return name, str(manifest.get("artifact_sha256"))

    def poll(self) -> SpamModel | None:
        try:
            pointer = self._pointer()
            if pointer is None or pointer == self.current:
                return None
            model = self.registry.load_promoted()
        except ModelError as exc:
            if str(exc) != str(self.last_error):       # once per refusal, not once per poll
                log.error("model reload refused, keeping the previous model: %s", exc)
                metrics.model_reload_refused()
            self.last_error = exc
            return None
        self.current = pointer
        self.last_error = None
        log.info("loaded promoted model %s", model.version)
        return model
