"""The dashboard's aiohttp application: the page, the JSON API, server-sent events and /metrics.

State comes from two places only: port states from the Redis mirror (refreshed every
couple of seconds, and pushed live from ``sms.port-actions``), and live statistics from
the dashboard's own reading of every partition of ``sms.decisions`` and
``sms.complaints`` (:class:`~detector.dashboard.live.LiveStats`). Neither a worker's
memory nor a worker's health is needed: the page keeps working while workers restart,
and while Redis or Kafka blip it shows a banner and keeps retrying.

``docs/dashboard.md`` is the API reference.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections import deque
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from detector import metrics
from detector.dashboard.actions import (MAX_REASON_CHARS, InvalidAction, feedback_record, port_action,
                                       signature_entry)
from detector.dashboard.audit import AuditError, AuditLog
from detector.dashboard.auth import OperatorAuth
from detector.dashboard.complaints import ComplaintForwarder
from detector.dashboard.feeds import KafkaUnavailable, Publisher, TopicFollower
from detector.dashboard.live import LiveStats
from detector.errors import SmsGuardError, StateUnavailable
from detector.events import (PORT_STATES, TOPIC_COMPLAINTS, TOPIC_DECISIONS, TOPIC_FEEDBACK, TOPIC_PORT_ACTIONS,
                             PortAction)
from detector.settings import Settings
from detector.state.base import StateStore

log = logging.getLogger(__name__)

STATIC_DIR = Path(__file__).parent / "static"
STATE_REFRESH_S = 2.0
SSE_QUEUE = 1_000
RECENT_ACTIONS = 200
SSE_PING_S = 15.0
SEVERITY = {"block": 4, "throttle": 3, "watch": 2, "normal": 1, "allowlist": 0}
SHUTDOWN_STEP_S = 10.0   # longest each Kafka client may take to close when the dashboard stops


async def bounded(step: Any, seconds: float, what: str) -> None:
    """Run one shutdown step for at most ``seconds``, then leave it behind (cancelled) and go on.

    ``asyncio.wait_for`` is not enough: on timeout it cancels the step and then waits for it to finish, and a
    step that swallows its cancellation (a consumer loop's ``stop()`` awaiting a task stuck in a client's
    close) keeps it waiting forever. That hung a test teardown for 300 s once.

    >>> async def slow_to_die():
    ...     try:
    ...         await asyncio.sleep(60)
    ...     except asyncio.CancelledError:
    ...         await asyncio.sleep(0.5)       # swallows its cancellation and goes on for a while
    >>> async def took(step):
    ...     started = time.monotonic()
    ...     await step
    ...     return time.monotonic() - started
    >>> asyncio.run(took(bounded(slow_to_die(), 0.05, "step"))) < 0.3
    True
    >>> asyncio.run(took(asyncio.wait_for(slow_to_die(), 0.05))) >= 0.5     # what wait_for does
    True
    """
    task = asyncio.ensure_future(step)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        task.cancel()
        log.warning("dashboard shutdown step timed out", extra={"step": what, "seconds": seconds})
        return
    if not task.cancelled() and task.exception() is not None:
        log.warning("dashboard shutdown step failed", extra={"step": what, "error": repr(task.exception())[:200]})
_ERROR_STATUS = {InvalidAction: 400, KafkaUnavailable: 503, StateUnavailable: 503, AuditError: 500}
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
}


def _now_ms() -> int:
    return int(time.time() * 1000)


class Dashboard:
    """Everything one dashboard process holds: live stats, the port-state cache, the feeds, SSE subscribers."""

    def __init__(self, settings: Settings, store: StateStore, *, lookback: int = 20_000):
        self.settings = settings
        self.store = store
        self.live = LiveStats()
        self.auth = OperatorAuth(settings.operator_tokens())
        self.audit = AuditLog(settings.audit_log)
        self.publisher = Publisher(settings.kafka_bootstrap)
        self.topics = {name: settings.topic(name) for name in
                       (TOPIC_DECISIONS, TOPIC_PORT_ACTIONS, TOPIC_COMPLAINTS, TOPIC_FEEDBACK)}
        self.follower = TopicFollower(
            settings.kafka_bootstrap,
            [self.topics[TOPIC_DECISIONS], self.topics[TOPIC_PORT_ACTIONS], self.topics[TOPIC_COMPLAINTS]],
            self._on_record, lookback=lookback)
        self.complaints = ComplaintForwarder(
            settings.kafka_bootstrap, self.topics[TOPIC_COMPLAINTS], self.topics[TOPIC_FEEDBACK],
            f"{settings.app_id}-dashboard-feedback", self.publisher,
            session_timeout_s=settings.broker_session_timeout_s)
        self.states: dict[str, dict[str, Any]] = {}     # port -> PortAction.as_dict(), newest wins
        self.recent_actions: deque[dict[str, Any]] = deque(maxlen=RECENT_ACTIONS)
        self.redis_ok = True
        self.redis_error: str | None = None
        self.states_refreshed_ms: int | None = None
        self._subscribers: set[asyncio.Queue] = set()
        self._tasks: list[asyncio.Task] = []
        self._last_status: dict[str, Any] | None = None

    # -- lifecycle ---------------------------------------------------------------------------------
    async def start(self) -> None:
        self.follower.start()
        self.complaints.start()
        self._tasks.append(asyncio.create_task(self._refresh_states_forever(), name="refresh-states"))
        self._tasks.append(asyncio.create_task(self._status_forever(), name="status"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await bounded(asyncio.gather(*self._tasks, return_exceptions=True), SHUTDOWN_STEP_S, "background tasks")
        # a Kafka client stuck on a broker that went away must not hang the shutdown
        for closing, what in ((self.follower.stop(), "decision follower"), (self.complaints.stop(), "complaints"),
                              (self.publisher.close(), "publisher")):
            await bounded(closing, SHUTDOWN_STEP_S, what)
        for queue in list(self._subscribers):     # end every open stream (None), even a backed-up one
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)
        await bounded(self.store.close(), SHUTDOWN_STEP_S, "state store")

    # -- feeds -------------------------------------------------------------------------------------
    def _on_record(self, topic: str, value: dict[str, Any]) -> None:
        if topic == self.topics[TOPIC_DECISIONS]:
            public = self.live.add_decision(value)
            if public is not None:
                self.broadcast("decision", public)
        elif topic == self.topics[TOPIC_PORT_ACTIONS]:
            if self._remember_state(value):
                self.recent_actions.append(value)
                self.broadcast("port", value)
        elif topic == self.topics[TOPIC_COMPLAINTS]:
            self.live.add_complaint(value)

    def _remember_state(self, action: dict[str, Any]) -> bool:
        port = action.get("port")
        if not port or "state" not in action:
            return False
        current = self.states.get(port)
        if current is not None and (current == action or
                                    int(current.get("ts_ms") or 0) > int(action.get("ts_ms") or 0)):
            return False                      # older, or our own action read back from the topic
        self.states[port] = action
        counts: dict[str, int] = {}
        for state in self.states.values():
            counts[state["state"]] = counts.get(state["state"], 0) + 1
        metrics.set_port_states(counts)
        return True

    async def refresh_states(self) -> None:
        try:
            states = await self.store.all_port_states()
        except StateUnavailable as exc:
            metrics.redis_error()
            self.redis_ok, self.redis_error = False, str(exc)[:200]
            return
        self.redis_ok, self.redis_error = True, None
        self.states_refreshed_ms = _now_ms()
        for action in states.values():
            self._remember_state(action.as_dict())
        await self._mirror_newer(states)

    async def _mirror_newer(self, stored: dict[str, PortAction]) -> None:
        """Write to Redis the port states this process read from the topic that are newer than Redis's own.

        Nothing else writes the topic back to Redis: after Redis lost data, or an operator's action taken while
        Redis was down, the mirror would keep the older state, and the engine (which reads Redis) would go on
        from it and override the operator. Only records read from the topic (the last ``lookback`` per
        partition) are known here; a dashboard that started after an older action was compacted away cannot
        restore it.
        """
        for port, known in list(self.states.items()):
            current = stored.get(port)
            if current is not None and current.ts_ms >= int(known.get("ts_ms") or 0):
                continue
            try:     # only over the record read above: a newer one stored since (the engine's) stands
                await self.store.put_port_state(PortAction.from_dict(known),
                                                replaces=current.ts_ms if current is not None else None)
            except StateUnavailable:
                metrics.redis_error()
                return
            except (KeyError, TypeError, ValueError) as exc:      # a malformed record from the topic: leave it
                log.warning("not mirroring a bad port action %r: %s", str(known)[:200], exc)

    async def _refresh_states_forever(self) -> None:
        while True:
            try:
                await self.refresh_states()
            except Exception:                 # never let the loop die: the banner shows it
                log.exception("refreshing port states")
            await asyncio.sleep(STATE_REFRESH_S)

    def status(self) -> dict[str, Any]:
        return {
            "kafka": {"ok": self.follower.connected, "error": self.follower.error, "records": self.follower.records,
                      "lag": sum(self.follower.lag.values())},
            "redis": {"ok": self.redis_ok, "error": self.redis_error, "refreshed_ms": self.states_refreshed_ms},
            "event_time_ms": self.live.now_ms or None,
            "read_only": not self.auth.enabled,
        }

    async def _status_forever(self) -> None:
        while True:
            status = self.status()
            key = {k: v for k, v in status.items() if k != "event_time_ms"}
            key["kafka"] = {k: v for k, v in status["kafka"].items() if k in ("ok", "error")}
            key["redis"] = {k: v for k, v in status["redis"].items() if k in ("ok", "error")}
            if key != self._last_status:
                self._last_status = key
                self.broadcast("status", status)
            await asyncio.sleep(1.0)

    # -- server-sent events ------------------------------------------------------------------------
    def broadcast(self, event: str, data: dict[str, Any]) -> None:
        message = f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
        for queue in list(self._subscribers):
            if queue.full():                  # a slow browser loses its oldest events, never blocks the feed
                with contextlib.suppress(asyncio.QueueEmpty):
                    queue.get_nowait()
            queue.put_nowait(message)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache",
                                               "X-Accel-Buffering": "no"})
        await response.prepare(request)
        queue: asyncio.Queue = asyncio.Queue(maxsize=SSE_QUEUE)
        self._subscribers.add(queue)
        try:
            await response.write(b"retry: 2000\n\n")
            await response.write(f"event: status\ndata: {json.dumps(self.status())}\n\n".encode())
            while True:
                try:
                    message = await asyncio.wait_for(queue.get(), SSE_PING_S)
                except asyncio.TimeoutError:
                    message = b": ping\n\n"
                if message is None:
                    break
                await response.write(message)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self._subscribers.discard(queue)
        return response

    # -- views -------------------------------------------------------------------------------------
    def port_row(self, port: str) -> dict[str, Any]:
        row = self.live.port_summary(port)
        state = self.states.get(port) or {}
        signals = [r.get("signal") for r in state.get("reasons") or []]
        shown = "allowlist" if state.get("state") == "normal" and "operator_allowlist" in signals else None
        row.update(state=shown or state.get("state", "normal"), since_ms=state.get("since_ms"),
                   expires_at_ms=state.get("expires_at_ms"), decided_by=state.get("decided_by"),
                   note=state.get("note"), rate_limit_per_min=state.get("rate_limit_per_min"),
                   state_reasons=signals,
                   # the engine steps a state down on the port's next message; until then it is only nominal
                   expired=bool(state.get("expires_at_ms")) and (self.live.now_ms or _now_ms()) >= state["expires_at_ms"])
        return row

    def port_rows(self, *, state: str | None = None, sp_id: str | None = None, signature: str | None = None,
                  q: str | None = None, limit: int = 300) -> list[dict[str, Any]]:
        rows = []
        for port in set(self.live.ports()) | set(self.states):
            if q and q not in port:
                continue
            row = self.port_row(port)
            if state and row["state"] != state:
                continue
            if sp_id and not any(sp_id.lower() in known.lower() for known in row["sp_ids"]):
                continue
            if signature and not any(signature in known for known, _ in row["signatures"]):
                continue
            rows.append(row)
        rows.sort(key=lambda r: (-SEVERITY.get(r["state"], 1), -r["risk"], -r["flagged"], -r["volume"], r["port"]))
        return rows[:limit]

    def operator(self, request: web.Request) -> str:
        """The operator behind the request's bearer token; 401 without a valid one."""
        operator = self.auth.operator(request.headers.get("Authorization"))
        if operator is None:
            raise web.HTTPUnauthorized(
                text=json.dumps({"error": "an operator token is required (Authorization: Bearer <token>)"}),
                content_type="application/json", headers={"WWW-Authenticate": 'Bearer realm="smsguard"'})
        return operator

    async def act_on_port(self, port: str, operator: str, body: dict[str, Any]) -> dict[str, Any]:
        now_ms = _now_ms()
        action = port_action(port, str(body.get("kind", "")), operator, _reason(body, required=True), now_ms,
                             expires_in_s=_optional_int(body, "expires_in_s"),
                             rate_limit_per_min=_optional_int(body, "rate_limit_per_min"),
                             current=await self._current_state(port))
        if action.previous_state is None:
            action.previous_state = "normal"
        entry = {"operator": operator, "action": body["kind"], "port": port, "reason": _reason(body, required=True),
                 "state": action.state, "previous_state": action.previous_state,
                 "expires_at_ms": action.expires_at_ms, "rate_limit_per_min": action.rate_limit_per_min}
        try:
            await self.publisher.send(self.topics[TOPIC_PORT_ACTIONS], port, action.as_dict())
        except KafkaUnavailable as exc:
            self.audit.append({**entry, "outcome": "failed", "error": str(exc)}, now_ms=now_ms)
            raise
        redis_note = "ok"
        try:
            await self.store.put_port_state(action)
        except StateUnavailable as exc:        # on the topic; refresh_states writes it to Redis once Redis is back
            metrics.redis_error()
            redis_note = f"error: {exc}"[:200]
        record = self.audit.append({**entry, "outcome": "done", "kafka": "ok", "redis": redis_note}, now_ms=now_ms)
        if self._remember_state(action.as_dict()):
            self.recent_actions.append(action.as_dict())
        self.broadcast("port", action.as_dict())
        self.broadcast("audit", record)
        return {"ok": True, "action": action.as_dict(), "audit": record}

    async def _current_state(self, port: str) -> PortAction | None:
        """The port's newest known record: the new action is stamped after it (``policy.next_ts_ms``).

        Redis may hold a newer one than this process has seen yet (the engine's, just written); while Redis is
        away the record this process holds has to do.
        """
        known = self.states.get(port)
        current = PortAction.from_dict(known) if known else None
        try:
            stored = (await self.store.get_port_states([port])).get(port)
        except StateUnavailable:
            metrics.redis_error()
            return current
        if stored is not None and (current is None or stored.ts_ms > current.ts_ms):
            return stored
        return current

    async def set_signatures(self, port: str, operator: str, body: dict[str, Any]) -> dict[str, Any]:
        """Register signatures for a port (签名报备); ``replace`` swaps the whole entry."""
        signatures = signature_entry(port, body.get("signatures"))
        reason = _reason(body, required=True)
        replace = body.get("replace", False)
        if not isinstance(replace, bool):       # bool("false") is True: a string would replace the whole entry
            raise InvalidAction("replace must be true or false (a JSON boolean)")
        await self.store.register_signatures(port, signatures, replace=replace)
        registered = sorted((await self.store.registered_signatures([port])).get(port, ()))
        entry = self.audit.append({"operator": operator, "action": "replace_signatures" if replace else "add_signatures",
                                   "port": port, "signatures": signatures, "reason": reason,
                                   "outcome": "done"})
        self.broadcast("audit", entry)
        return {"ok": True, "port": port, "registered_signatures": registered, "audit": entry}

    async def label_message(self, msg_id: str, operator: str, body: dict[str, Any]) -> dict[str, Any]:
        given = body.get("label")
        # only strings and whole numbers are looked up: a list or an object is unhashable (that was a 500), and
        # true would pass for 1
        label = ({"spam": 1, "normal": 0, 1: 1, 0: 0, "1": 1, "0": 0}.get(given)
                 if isinstance(given, (str, int)) and not isinstance(given, bool) else None)
        if label is None:
            raise InvalidAction("label must be spam or normal")
        reason = _reason(body, required=False)
        known = self.live.content_of(msg_id)
        if known is None:
            raise web.HTTPNotFound(text=json.dumps({"error": f"message {msg_id} is not among the recent decisions"}),
                                   content_type="application/json")
        record = feedback_record(msg_id, label, known["content"], operator, _now_ms())
        audited = {"operator": operator, "action": "label", "msg_id": msg_id, "port": known["port"],
                   "label": "spam" if label else "normal", "reason": reason}
        try:
            await self.publisher.send(self.topics[TOPIC_FEEDBACK], msg_id, record)
        except KafkaUnavailable as exc:        # every action is audited, the failed ones too (docs/dashboard.md)
            self.audit.append({**audited, "outcome": "failed", "error": str(exc)})
            raise
        entry = self.audit.append({**audited, "outcome": "done"})
        self.broadcast("audit", entry)
        return {"ok": True, "feedback": record, "audit": entry}


def _reason(body: dict[str, Any], *, required: bool) -> str | None:
    """The request's ``reason``: a string of at most MAX_REASON_CHARS once trimmed (it goes to the audit log and
    onto the topic; a list used to be stored as its Python text, 60 KB went into the audit log whole)."""
    value = body.get("reason")
    if value is None or value == "":
        if required:
            raise InvalidAction("a reason is required")
        return None
    if not isinstance(value, str):
        raise InvalidAction("reason must be a string")
    value = value.strip()
    if required and not value:
        raise InvalidAction("a reason is required")
    if len(value) > MAX_REASON_CHARS:
        raise InvalidAction(f"reason is longer than {MAX_REASON_CHARS} characters")
    return value or None


def _optional_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value in (None, ""):
        return None
    if isinstance(value, bool):                # JSON true is not 1 second
        raise InvalidAction(f"{name} must be a number")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InvalidAction(f"{name} must be a number") from None
    if not math.isfinite(number) or number != int(number):
        raise InvalidAction(f"{name} must be a whole number")
    return int(number)


# -- HTTP --------------------------------------------------------------------------------------------
@web.middleware
async def _errors_and_headers(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response = await handler(request)
    except SmsGuardError as exc:
        status = next((code for kind, code in _ERROR_STATUS.items() if isinstance(exc, kind)), 500)
        response = web.json_response({"error": str(exc)}, status=status)
    except web.HTTPException as exc:
        exc.headers.update(_SECURITY_HEADERS)
        raise
    if not response.prepared:
        response.headers.update(_SECURITY_HEADERS)
    return response


DASHBOARD = web.AppKey("dashboard", Dashboard)


def _dashboard(request: web.Request) -> Dashboard:
    return request.app[DASHBOARD]


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError):
        raise InvalidAction("the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidAction("the body must be a JSON object")
    return body


def _limit(request: web.Request, default: int, most: int) -> int:
    try:
        return max(1, min(most, int(request.query.get("limit", default))))
    except ValueError:
        raise InvalidAction("limit must be a whole number") from None


async def index(request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC_DIR / "index.html", headers={"Cache-Control": "no-cache"})


async def api_status(request: web.Request) -> web.Response:
    return web.json_response(_dashboard(request).status())


async def api_me(request: web.Request) -> web.Response:
    d = _dashboard(request)
    return web.json_response({"operator": d.auth.operator(request.headers.get("Authorization")),
                              "tokens_configured": d.auth.enabled})


async def api_ports(request: web.Request) -> web.Response:
    d = _dashboard(request)
    q = request.query
    rows = d.port_rows(state=q.get("state") or None, sp_id=q.get("sp_id") or None,
                       signature=q.get("signature") or None, q=q.get("q") or None, limit=_limit(request, 300, 2000))
    return web.json_response({"ports": rows, "totals": d.live.totals(), "status": d.status(),
                              "states": list(PORT_STATES) + ["allowlist"]})


async def api_port(request: web.Request) -> web.Response:
    d = _dashboard(request)
    port = request.match_info["port"]
    history: list[dict[str, Any]] = []
    registered: list[str] = []
    history_error = None
    try:
        history = [a.as_dict() for a in await d.store.port_history(port, limit=50)]
        registered = sorted((await d.store.registered_signatures([port])).get(port, ()))
    except StateUnavailable as exc:
        metrics.redis_error()
        history_error = str(exc)[:200]
    return web.json_response({
        "port": d.port_row(port), "history": history, "history_error": history_error,
        "registered_signatures": registered, "volume": d.live.volume_series(port, 60),
        "flagged_volume": d.live.volume_series(port, 60, flagged=True),
        "recent": d.live.recent_flagged(50, port), "now_ms": d.live.now_ms,
    })


async def api_flagged(request: web.Request) -> web.Response:
    d = _dashboard(request)
    return web.json_response({"flagged": d.live.recent_flagged(_limit(request, 100, 500),
                                                                  request.query.get("port") or None)})


async def api_port_actions(request: web.Request) -> web.Response:
    d = _dashboard(request)
    recent = list(d.recent_actions)[::-1][:_limit(request, 50, 200)]
    return web.json_response({"actions": recent})


async def api_audit(request: web.Request) -> web.Response:
    d = _dashboard(request)
    entries = await asyncio.to_thread(d.audit.recent, _limit(request, 50, 1000))
    return web.json_response({"entries": entries})


async def api_port_action(request: web.Request) -> web.Response:
    d = _dashboard(request)
    operator = d.operator(request)
    body = await _json_body(request)
    return web.json_response(await d.act_on_port(request.match_info["port"], operator, body))


async def api_signatures(request: web.Request) -> web.Response:
    d = _dashboard(request)
    port = request.match_info["port"]
    registered = (await d.store.registered_signatures([port])).get(port)
    return web.json_response({"port": port, "registered": registered is not None,
                              "registered_signatures": sorted(registered or ())})


async def api_set_signatures(request: web.Request) -> web.Response:
    d = _dashboard(request)
    operator = d.operator(request)
    body = await _json_body(request)
    return web.json_response(await d.set_signatures(request.match_info["port"], operator, body))


async def api_label(request: web.Request) -> web.Response:
    d = _dashboard(request)
    operator = d.operator(request)
    body = await _json_body(request)
    return web.json_response(await d.label_message(request.match_info["msg_id"], operator, body))


async def api_stream(request: web.Request) -> web.StreamResponse:
    return await _dashboard(request).stream(request)


def create_app(settings: Settings, store: StateStore | None = None, *, lookback: int = 20_000) -> web.Application:
    """The aiohttp application; ``store`` defaults to a RedisStore on ``settings.redis_url`` (a cluster's, with
    ``settings.redis_cluster``)."""
    if store is None:
        from detector.state.redis import RedisStore
        store = RedisStore.from_settings(settings)
    dashboard = Dashboard(settings, store, lookback=lookback)
    app = web.Application(middlewares=[_errors_and_headers], client_max_size=64 * 1024)
    app[DASHBOARD] = dashboard

    async def on_startup(_: web.Application) -> None:
        await dashboard.start()

    async def on_shutdown(_: web.Application) -> None:
        await dashboard.stop()

    app.on_startup.append(on_startup)
    app.on_shutdown.append(on_shutdown)
    app.router.add_get("/", index)
    app.router.add_get("/port/{port}", index)
    app.router.add_static("/static", STATIC_DIR)
    app.router.add_get("/metrics", metrics.metrics_handler)
    app.router.add_get("/api/status", api_status)
    app.router.add_get("/api/me", api_me)
    app.router.add_get("/api/ports", api_ports)
    app.router.add_get("/api/ports/{port}", api_port)
    app.router.add_post("/api/ports/{port}/actions", api_port_action)
    app.router.add_get("/api/ports/{port}/signatures", api_signatures)
    app.router.add_post("/api/ports/{port}/signatures", api_set_signatures)
    app.router.add_get("/api/flagged", api_flagged)
    app.router.add_post("/api/messages/{msg_id}/label", api_label)
    app.router.add_get("/api/audit", api_audit)
    app.router.add_get("/api/port-actions", api_port_actions)
    app.router.add_get("/api/stream", api_stream)
    return app


def run(settings: Settings, host: str, port: int, *, lookback: int = 20_000) -> None:
    """Serve the dashboard until interrupted."""
    app = create_app(settings, lookback=lookback)
    log.info("dashboard on http://%s:%s/", host, port)
    web.run_app(app, host=host, port=port, print=None, shutdown_timeout=3)

