"""Security properties at the edges: operator tokens, production secrets, model artifacts.

* every mutating route of the dashboard refuses requests without a valid operator token (401),
  and tokens are compared with ``hmac.compare_digest``;
* ``smsguard worker`` will not start on the development HMAC secret when SMSGUARD_ENV=production;
* a model artifact that fails its hash check, or that would need unsafe deserialisation, is never
  loaded (:func:`detector.model.load_model` raises ``ModelError`` and runs none of its code).
"""
from __future__ import annotations

import ast
import contextlib
import hashlib
import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from detector.errors import ModelError
from detector.model import ARTIFACT, MANIFEST, load_model
from detector.settings import DEFAULT_SECRET

TOKEN = "s3cret-operator-token"


# -- dashboard ---------------------------------------------------------------------------------

def test_operator_tokens_are_only_compared_with_compare_digest():
    """No ``==`` / ``!=`` / ``in`` on anything named like a token anywhere in the dashboard package."""
    import detector.dashboard as dashboard

    package = Path(inspect.getfile(dashboard)).parent
    offenders = []
    for path in package.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq, ast.In, ast.NotIn))
                                                     for op in node.ops):
                names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
                names |= {n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)}
                if any("token" in name.lower() or name.lower() in {"candidate", "presented"} for name in names):
                    offenders.append(f"{path.name}:{node.lineno}")
    assert not offenders, f"token compared without hmac.compare_digest at {offenders}"
    source = (package / "auth.py").read_text(encoding="utf-8")
    assert "hmac.compare_digest" in source


@contextlib.asynccontextmanager
async def _dashboard(settings, tokens: str):
    """The dashboard app on the session's broker (its topics created first) behind an aiohttp test client."""
    from aiohttp.test_utils import TestClient, TestServer

    from detector.dashboard.app import create_app
    from detector.services import ALL_TOPICS, COMPACTED_TOPICS, acreate_topics

    s = settings({"SMSGUARD_OPERATOR_TOKENS": tokens})
    await acreate_topics(s.kafka_bootstrap, [s.topic(t) for t in ALL_TOPICS], 1,
                         compacted={s.topic(t) for t in COMPACTED_TOPICS})
    async with TestClient(TestServer(create_app(s, lookback=100))) as client:
        client.settings = s
        yield client


@pytest.fixture
async def dashboard(settings):
    async with _dashboard(settings, f"alice:{TOKEN}") as client:
        yield client


def _mutating_routes(app) -> list[tuple[str, str]]:
    routes = []
    for route in app.router.routes():
        if route.method in {"POST", "PUT", "PATCH", "DELETE"}:
            info = route.resource.get_info() if route.resource else {}
            path = info.get("path") or info.get("formatter", "")
            routes.append((route.method, path.replace("{port}", "10690001").replace("{msg_id}", "m-1")))
    return routes


BAD_HEADERS = (
    {},
    {"Authorization": ""},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": f"Basic {TOKEN}"},
    {"Authorization": f"Bearer {TOKEN[:-1]}"},            # a prefix of the token
    {"Authorization": f"Bearer {TOKEN}x"},                # the token and more
    {"Authorization": f"Bearer {TOKEN.upper()}"},
    {"Authorization": "Bearer alice"},                    # the operator id is not a token
    {"Authorization": f"Bearer {TOKEN}\x00"},
)


async def test_every_mutating_route_refuses_requests_without_a_valid_token(dashboard):
    routes = _mutating_routes(dashboard.server.app)
    assert routes, "the dashboard has no mutating routes?"
    body = {"kind": "block", "reason": "security test", "label": "spam"}
    for method, path in routes:
        for headers in BAD_HEADERS:
            try:
                resp = await dashboard.request(method, path, json=body, headers=headers)
            except ValueError:       # aiohttp refuses to send a header with a NUL: nothing reached the server
                continue
            assert resp.status == 401, (method, path, headers, resp.status)
            assert resp.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert not Path(dashboard.settings.audit_log).exists(), "a refused request left an audit entry"
    me = await (await dashboard.get("/api/me", headers={"Authorization": f"Bearer {TOKEN}"})).json()
    assert me["operator"] == "alice"           # the same token is accepted: the 401s above are not a broken server


async def test_without_configured_tokens_the_dashboard_is_read_only(settings):
    async with _dashboard(settings, "") as client:
        for method, path in _mutating_routes(client.server.app):
            for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Bearer anything"}):
                resp = await client.request(method, path, json={"kind": "block", "reason": "x"}, headers=headers)
                assert resp.status == 401, (method, path, headers)


# -- production secrets ------------------------------------------------------------------------

def _smsguard(args: list[str], env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith("SMSGUARD_")}
    return subprocess.run([sys.executable, "-m", "detector.cli", *args], env={**base, **env}, capture_output=True,
                          text=True, timeout=timeout)


@pytest.mark.parametrize("secret", [None, DEFAULT_SECRET, "short"])
def test_worker_refuses_to_start_in_production_on_a_weak_secret(secret, tmp_path):
    env = {"SMSGUARD_ENV": "production", "SMSGUARD_KAFKA_BOOTSTRAP": "127.0.0.1:1",
           "SMSGUARD_REDIS_URL": "redis://127.0.0.1:1/0", "SMSGUARD_MODELS_DIR": str(tmp_path)}
    if secret is not None:
        env["SMSGUARD_RECIPIENT_SECRET"] = secret
    result = _smsguard(["worker"], env)
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "SMSGUARD_RECIPIENT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr          # a clear one-line error, not a crash
    if secret:
        assert secret not in result.stderr + result.stdout        # the error never echoes the secret


# -- model artifacts ---------------------------------------------------------------------------

def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write_model(folder: Path, obj) -> Path:
    import skops.io as sio

    folder.mkdir(parents=True)
    sio.dump(obj, folder / ARTIFACT)
    manifest = {"name": folder.name, "threshold": 0.5, "artifact": ARTIFACT,
                "artifact_sha256": _sha256(folder / ARTIFACT)}
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture
def good_model(tmp_path) -> Path:
    """A small text model made only of trusted types, with a manifest that matches it."""
    from sklearn.feature_extraction.text import HashingVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline

    texts = ["【京东】您的订单已发货", "加微信领红包 日赚三百", "【招商银行】您尾号1234的卡支出", "贷款 秒批 无抵押 加微信"]
    pipeline = Pipeline([("hash", HashingVectorizer(analyzer="char", ngram_range=(1, 2), n_features=2**10)),
                         ("clf", LogisticRegression())]).fit(texts, np.array([0, 1, 0, 1]))
    return _write_model(tmp_path / "good-v1", pipeline)


def test_a_model_that_matches_its_manifest_loads(good_model):
    model = load_model(good_model)
    assert model.version.startswith("good-v1@")


def test_a_manifest_without_a_hash_is_refused(good_model):
    manifest = json.loads((good_model / MANIFEST).read_text())
    del manifest["artifact_sha256"]
    (good_model / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError):
        load_model(good_model)


class Payload:
    """Would leave a marker file behind if it were ever instantiated or unpickled."""

    def __init__(self, marker: str):
        self.marker = marker

    def __setstate__(self, state):
        Path(state["marker"]).write_text("code ran")
        self.__dict__.update(state)


def test_an_artifact_needing_untrusted_types_is_refused_even_with_a_matching_hash(tmp_path):
    marker = tmp_path / "pwned"
    folder = _write_model(tmp_path / "evil-v1", {"model": Payload(str(marker)), "call": os.system})
    with pytest.raises(ModelError, match="refusing to load"):
        load_model(folder)
    assert not marker.exists()


def test_a_pickle_in_place_of_the_artifact_is_never_unpickled(tmp_path):
    import pickle

    marker = tmp_path / "pwned"
    folder = tmp_path / "pickled-v1"
    folder.mkdir()

    class Boom:
        def __reduce__(self):
            return (Path(marker).write_text, ("code ran",))

    (folder / ARTIFACT).write_bytes(pickle.dumps(Boom()))
    (folder / MANIFEST).write_text(json.dumps({"name": "pickled-v1", "threshold": 0.5, "artifact": ARTIFACT,
                                               "artifact_sha256": _sha256(folder / ARTIFACT)}))
    with pytest.raises(ModelError):
        load_model(folder)
    assert not marker.exists()


def test_a_tampered_copy_of_the_promoted_model_is_refused(good_model):
    """(Flipped bytes inside the artifact: tests/test_model.py; here bytes appended to a promoted model.)"""
    from detector.registry import Registry

    registry = Registry(good_model.parent)
    registry.promote(good_model.name)
    assert registry.load_promoted().name == "good-v1"
    with open(good_model / ARTIFACT, "ab") as f:
        f.write(b"appended")
    with pytest.raises(ModelError):
        registry.load_promoted()


@pytest.mark.parametrize("tokens, message", [
    ("alice:tok-0123456789abcdef,bob:tok-0123456789abcdef", "share a token"),
    ("alice:short", "shorter than 16"),
])
def test_operator_tokens_are_one_per_operator_and_not_guessable(tokens, message):
    """QA: two operators with one token made the audit log name whichever came last; a short token can be guessed."""
    from detector.errors import ConfigError
    from detector.settings import Settings
    with pytest.raises(ConfigError, match=message):
        Settings.from_env({"SMSGUARD_OPERATOR_TOKENS": tokens}).operator_tokens()


def test_an_environment_name_other_than_development_or_production_is_refused():
    """QA: SMSGUARD_ENV=prod ran silently as development, with the development secret allowed."""
    from detector.errors import ConfigError
    from detector.settings import Settings
    with pytest.raises(ConfigError, match="SMSGUARD_ENV: expected one of development, production"):
        Settings.from_env({"SMSGUARD_ENV": "prod"})
