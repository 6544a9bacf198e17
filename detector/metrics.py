"""Prometheus metrics shared by the worker and the dashboard.

Every metric lives in the process-wide ``prometheus_client`` registry, so whichever
process imports this module exposes the same names. The tiny API the worker calls:

=====================================================  ==================================================
``event_in(topic, n=1)``                               raw events read from an input topic
``observe_batch(decisions, batch_size, now_ms)``       one scored micro-batch: decisions by action, the
                                                       event-time→decision latency of each, the batch size
``dead_letter(n=1)``                                   events rejected to the dead-letter topic
``redis_error()``                                      a Redis call that failed (signals degraded)
``set_model(version)``                                 the model version now serving (one label set to 1)
``set_lag(partition, lag, consumer="worker")``         consumer lag (records) of one partition
``set_port_states({"throttle": 3, ...})``              ports per state (the dashboard sets it from Redis)
``start_metrics_server(port, addr="127.0.0.1")``       serve /metrics on a port of its own (a thread)
``metrics_handler``                                    an aiohttp handler for /metrics (the dashboard's)
=====================================================  ==================================================

``decisions`` may be :class:`~detector.events.Decision` objects or their ``as_dict()``.

>>> before = DECISIONS.labels(action="flag")._value.get()
>>> observe_batch([{"action": "flag", "ts_ms": 1_000}, {"action": "allow", "ts_ms": 1_500}], 2, now_ms=2_000)
>>> DECISIONS.labels(action="flag")._value.get() - before
1.0
>>> set_model("m-2024-11-11")
>>> b"smsguard_model_info{version=\\"m-2024-11-11\\"} 1.0" in render()
True
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest, start_http_server

from detector.events import PORT_STATES

EVENTS_IN = Counter("smsguard_events_in_total", "Raw events read, by input topic.", ["topic"])
DECISIONS = Counter("smsguard_decisions_total", "Messages decided, by action.", ["action"])
DEAD_LETTERS = Counter("smsguard_dead_letters_total", "Events rejected to the dead-letter topic.")
DECISION_LATENCY = Histogram(
    "smsguard_decision_latency_seconds", "From the event's own timestamp to its decision (wall clock).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300),
)
BATCH_SIZE = Histogram(
    "smsguard_scoring_batch_size", "Messages scored per micro-batch.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000),
)
MODEL_INFO = Gauge("smsguard_model_info", "1 for the model version serving now.", ["version"])
PORTS_BY_STATE = Gauge("smsguard_ports", "Ports per state (from the Redis mirror).", ["state"])
CONSUMER_LAG = Gauge("smsguard_consumer_lag", "Records behind the end of a partition.", ["consumer", "partition"])
MODEL_RELOADS_REFUSED = Counter("smsguard_model_reloads_refused_total",
                                "Promoted models a worker refused to load (hash mismatch, unsafe type); it keeps the previous one.")
REDIS_ERRORS = Counter("smsguard_redis_errors_total", "Failed Redis calls (dashboard) or micro-batches decided degraded (worker).")

_current_model: list[str] = []


def event_in(topic: str, n: int = 1) -> None:
    EVENTS_IN.labels(topic=topic).inc(n)


def _field(decision: Any, name: str) -> Any:
    return decision[name] if isinstance(decision, Mapping) else getattr(decision, name)


def observe_batch(decisions: Iterable[Any], batch_size: int, now_ms: int) -> None:
    """Count one micro-batch's decisions and how long after their event time they were decided."""
    BATCH_SIZE.observe(batch_size)
    actions: dict[str, int] = {}
    observe = DECISION_LATENCY.observe
    for decision in decisions:
        action = _field(decision, "action")
        actions[action] = actions.get(action, 0) + 1
        observe(max(0, now_ms - int(_field(decision, "ts_ms"))) / 1000)
    for action, n in actions.items():       # one labelled child lookup per action, not per decision
        DECISIONS.labels(action=action).inc(n)


def dead_letter(n: int = 1) -> None:
    DEAD_LETTERS.inc(n)


def redis_error() -> None:
    REDIS_ERRORS.inc()


def set_model(version: str) -> None:
    """Mark ``version`` as serving; the previous version's series goes away (promote / rollback)."""
    for old in _current_model:
        if old != version:
            MODEL_INFO.remove(old)
    _current_model[:] = [version]
    MODEL_INFO.labels(version=version).set(1)


def model_reload_refused() -> None:
    MODEL_RELOADS_REFUSED.inc()


def set_lag(partition: int, lag: int, consumer: str = "worker") -> None:
    CONSUMER_LAG.labels(consumer=consumer, partition=str(partition)).set(lag)


def set_port_states(counts: Mapping[str, int]) -> None:
    """Ports per state; states missing from ``counts`` are set to 0 so a cleared state drops on the graph."""
    for state in PORT_STATES:
        PORTS_BY_STATE.labels(state=state).set(counts.get(state, 0))


def render() -> bytes:
    """The exposition text of every metric."""
    return generate_latest()


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> None:
    """Serve /metrics from a daemon thread (for processes without a web server of their own)."""
    start_http_server(port, addr=addr)


async def metrics_handler(request: Any) -> Any:
    """aiohttp handler: ``app.router.add_get("/metrics", metrics_handler)``."""
    from aiohttp import web

    return web.Response(body=render(), headers={"Content-Type": CONTENT_TYPE_LATEST})
