"""The policy: message actions from weighted signals, and the port state machine.

Message: ``risk = sum(value x weight)``; ``block`` at ``block_at`` or on a hard-block signal,
``flag`` at ``flag_at``, else ``allow``; a blocked port blocks its messages.

Port: ``normal -> watch -> throttle -> block`` by port risk. Escalation is immediate;
a state holds until it expires (``ttl_s``) and the risk has fallen below ``hysteresis``
x its threshold, then steps down one level. A port kept at watch on spam evidence for
``persistence.after_s`` while spam keeps arriving is throttled, and stays throttled while it
does (:meth:`Policy.next_port_state`). Operators' states always win until they expire.

>>> p = Policy.load()
>>> p.port_level(0.5), p.port_level(2.6), p.port_level(9)
('normal', 'throttle', 'block')
>>> a = operator_action("10690001", "block", "ops-li", "fraud", now_ms=0, expires_in_s=3600)
>>> a.state, a.decided_by, a.expires_at_ms, a.note
('block', 'ops-li', 3600000, 'block by ops-li: fraud')
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, NoReturn

import yaml

from detector.errors import ConfigError
from detector.events import PORT_STATES, PortAction, Reason
from detector.signals import ALL_SIGNALS, Signal
from detector.signals.base import ramp

log = logging.getLogger(__name__)
DEFAULT_POLICY_FILE = Path(__file__).with_name("policy.default.yaml")
LEVEL = {s: i for i, s in enumerate(PORT_STATES)}
OPERATOR_KINDS = ("throttle", "block", "release", "allowlist")


@dataclass(frozen=True)
class SignalConfig:
    signal: Signal
    weight: float
    port_weight: float
    hard_block: bool


_SIGNAL_KEYS = {"weight", "port_weight", "params", "hard_block", "why"}


class _Reader:
    """Reads one policy config: every error names the file and the key path (``port.ttl_s.block``)."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, path: str, problem: str) -> NoReturn:
        raise ConfigError(f"policy {self.source}: {path or 'top level'}: {problem}")

    def keys(self, value: Any, path: str, required: set[str], optional: set[str] = frozenset(),
             noun: str = "key") -> Mapping[str, Any]:
        """``value`` as a mapping holding every ``required`` key and nothing outside ``required | optional``."""
        if not isinstance(value, Mapping):
            self.fail(path, f"expected a mapping ({', '.join(sorted(required | optional))}), got {value!r}")
        unknown, missing = set(value) - required - optional, required - set(value)
        if unknown:     # before missing: a misspelt key shows up as both, and its spelling is the news
            self.fail(path, f"unknown {noun}(s) {', '.join(sorted(map(str, unknown)))}")
        if missing:
            self.fail(path, f"missing {noun}(s) {', '.join(sorted(missing))}")
        return value

    def number(self, section: Mapping[str, Any], path: str, *, whole: bool = False, above: float | None = None,
               minimum: float | None = None, below: float | None = None, maximum: float | None = None) -> Any:
        """``section[last part of path]`` as a number within the bounds given (a bool is no number)."""
        value = section[path.rsplit(".", 1)[-1]]
        kind = int if whole else (int, float)
        if isinstance(value, bool) or not isinstance(value, kind) or not math.isfinite(value):
            self.fail(path, f"expected {'a whole number' if whole else 'a number'}, got {value!r}")
        for bound, ok, words in ((above, lambda b: value > b, "above"), (minimum, lambda b: value >= b, "at least"),
                                 (below, lambda b: value < b, "below"), (maximum, lambda b: value <= b, "at most")):
            if bound is not None and not ok(bound):
                self.fail(path, f"must be {words} {bound:g}, got {value!r}")
        return float(value) if not whole else value

    def signal(self, signals: Mapping[str, Any], name: str) -> SignalConfig:
        path = f"signals.{name}"
        # an empty entry is refused rather than read as weight 0: a lost indent would silently disable the signal
        entry = self.keys(signals[name], path, set(), _SIGNAL_KEYS)
        cls = ALL_SIGNALS[name]
        params = self.keys(entry.get("params", {}), f"{path}.params", set(), set(cls.defaults), noun="parameter")
        for key in params:
            # hours are compared with the recipient-local hour 0..23: 24 or more would never match
            hour = key.endswith("_hour")
            self.number(params, f"{path}.params.{key}", whole=hour, minimum=0 if hour else None,
                        maximum=23 if hour else None)
        hard_block = entry.get("hard_block", False)
        if not isinstance(hard_block, bool):
            self.fail(f"{path}.hard_block", f"expected true or false, got {hard_block!r}")
        if not isinstance(entry.get("why", ""), str):
            self.fail(f"{path}.why", f"expected text, got {entry['why']!r}")
        weights = {k: self.number(entry, f"{path}.{k}") if k in entry else 0.0 for k in ("weight", "port_weight")}
        return SignalConfig(cls(params), weights["weight"], weights["port_weight"], hard_block)


def default_signal_entries() -> Mapping[str, Any]:
    """The packaged default policy's ``signals`` section, which names every signal (a test checks it)."""
    return yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))["signals"]


class Policy:
    def __init__(self, config: Mapping[str, Any], source: str = "<dict>"):
        self.source = source
        read = _Reader(source)
        root = read.keys(config, "", {"message", "port", "signals"})
        msg = read.keys(root["message"], "message", {"flag_at", "block_at"})
        port = read.keys(root["port"], "port", {"watch_at", "throttle_at", "block_at", "hysteresis", "ttl_s",
                                                "renew_before_s", "throttle_rate_per_min"},
                         {"throttle_share", "persistence", "min_messages_for_state"})
        # a threshold at or below zero would flag every message / watch every port
        self.flag_at = read.number(msg, "message.flag_at", above=0)
        self.block_at = read.number(msg, "message.block_at")
        if not self.flag_at < self.block_at:
            read.fail("message", f"flag_at ({self.flag_at:g}) must be below block_at ({self.block_at:g})")
        self.thresholds = {"watch": read.number(port, "port.watch_at", above=0),
                           "throttle": read.number(port, "port.throttle_at"),
                           "block": read.number(port, "port.block_at")}
        if not self.thresholds["watch"] < self.thresholds["throttle"] < self.thresholds["block"]:
            read.fail("port", "thresholds must rise watch_at < throttle_at < block_at")
        # above 1 a state would step down while still justified; at 0 it would never step down
        self.hysteresis = read.number(port, "port.hysteresis", above=0, maximum=1)
        # every state the engine sets needs a TTL: _action gives a state without one no expiry at all
        ttl_s = read.keys(port["ttl_s"], "port.ttl_s", {"watch", "throttle", "block"})
        self.ttl_ms = {k: read.number(ttl_s, f"port.ttl_s.{k}", whole=True, above=0) * 1000 for k in ttl_s}
        # renewing closer to expiry than the shortest TTL: at or past it, every message would re-announce the state
        self.renew_before_ms = read.number(port, "port.renew_before_s", whole=True, minimum=0,
                                           below=min(self.ttl_ms.values()) // 1000) * 1000
        self.throttle_rate_per_min = read.number(port, "port.throttle_rate_per_min", whole=True, above=0)
        # optional: policies written before it throttle at the fixed rate, as they did
        self.throttle_share = read.number(port, "port.throttle_share", above=0, maximum=1) \
            if "throttle_share" in port else None
        if "min_messages_for_state" in port:
            # Read by nothing since spam_share got its own floor (signals.spam_share.params.min_volume); older
            # policy files still load, and say so, rather than keep a knob that looks like it works.
            read.number(port, "port.min_messages_for_state", whole=True, minimum=0)
            log.warning("policy %s: port.min_messages_for_state is not used; the spam-share floor is "
                        "signals.spam_share.params.min_volume", source)
        signals = read.keys(root["signals"], "signals", set(), set(ALL_SIGNALS), noun="signal")
        self.signals: dict[str, SignalConfig] = {name: read.signal(signals, name) for name in signals}
        # A signal added to smsguard after this file was written takes the packaged default's entry: an operator's
        # policy must keep loading after an upgrade (a worker that refuses to start stops the carrier's SMS), and
        # the new signal then weighs what its release measured. Said once at load, so the file can be brought up
        # to date; `smsguard signals` lists every signal with its weights.
        self.defaulted_signals = tuple(name for name in ALL_SIGNALS if name not in signals)
        if self.defaulted_signals:
            defaults = default_signal_entries()
            fallback = _Reader(f"{DEFAULT_POLICY_FILE} (for {source})")
            self.signals.update((name, fallback.signal(defaults, name)) for name in self.defaulted_signals)
            log.warning("policy %s: no entry for signal(s) %s; the packaged defaults apply (%s)", source,
                        ", ".join(self.defaulted_signals), DEFAULT_POLICY_FILE)
        # optional: under a policy written before it a watch never escalates by lasting, as it did not
        self.persist_after_ms: int | None = None
        self.persist_share = self.persist_value = 0.0
        if "persistence" in port:
            persistence = read.keys(port["persistence"], "port.persistence", {"after_s", "spam_share"})
            # The wait counts from the watch record that first carried the evidence, and a watch is re-dated when it
            # is renewed (renew_before_s before it expires): a longer wait would never end.
            longest_s = (self.ttl_ms["watch"] - self.renew_before_ms) // 1000
            self.persist_after_ms = read.number(persistence, "port.persistence.after_s", whole=True, above=0,
                                                maximum=longest_s) * 1000
            self.persist_share = read.number(persistence, "port.persistence.spam_share", above=0, maximum=1)
            spam = self.signals["spam_share"].signal.params
            self.persist_value = ramp(self.persist_share, spam["low"], spam["high"])   # spam_share's value there

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Policy":
        path = Path(path) if path else DEFAULT_POLICY_FILE
        try:
            config = yaml.safe_load(path.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"policy file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"policy file {path}: not valid YAML: {exc}") from None
        return cls(config, str(path))

    # -- messages --------------------------------------------------------------------------------
    def message_action(self, reasons: list[Reason], port_state: str, hard_block: bool) -> tuple[str, float]:
        risk = sum(r.value * r.weight for r in reasons) if reasons else 0.0     # most messages: no reasons
        if hard_block or port_state == "block" or risk >= self.block_at:
            return "block", risk
        if risk >= self.flag_at:
            return "flag", risk
        return "allow", risk

    # -- ports -----------------------------------------------------------------------------------
    def port_level(self, risk: float) -> str:
        level = "normal"
        for state in ("watch", "throttle", "block"):
            if risk >= self.thresholds[state]:
                level = state
        return level

    def on_spam(self, reasons: list[Reason]) -> bool:
        """Whether ``reasons`` hold spam evidence for escalation on persistence: spam_share at ``persistence.spam_share``
        or above (the share, not volume: a code port or a 双11 campaign is watched on volume for hours).

        >>> p = Policy.load()
        >>> p.on_spam([Reason("spam_share", 0.3, 3.0)]), p.on_spam([Reason("spam_share", 0.1, 3.0)])
        (True, False)
        >>> p.on_spam([Reason("port_burst", 1.0, 1.2)])
        False
        """
        if self.persist_after_ms is None:
            return False
        for reason in reasons:
            if reason.signal == "spam_share" and reason.value >= self.persist_value:
                return True
        return False

    def next_port_state(self, port: str, current: PortAction | None, risk: float, reasons: list[Reason],
                        now_ms: int, *, escalate_only: bool = False,
                        recent_per_min: float | None = None) -> PortAction | None:
        """The port's new state record, or ``None`` when nothing changes. ``recent_per_min``, the port's own
        recent rate, sets a new throttle's rate (:meth:`throttle_rate`).

        Escalation on persistence (red team #7: a port hovering at 35% spam, then 10%, stayed at watch, unslowed, for
        hours): a port kept at watch on spam evidence (:meth:`on_spam`) is throttled once the watch record carrying
        the evidence is ``persistence.after_s`` old and the evidence is there again (or still). The evidence arriving
        at a watch whose record lacks it re-announces the watch with it: the wait starts then. A throttle stays
        while the port is at watch on spam evidence, and steps down as any other once the evidence is gone.
        """
        cur_state = current.state if current else "normal"
        expired = current is not None and current.lapsed_by(now_ms)
        if current is not None and current.decided_by != "engine" and not expired:
            return None                                   # an operator's decision stands until it expires
        target = self.port_level(risk)
        if current is not None and current.decided_by != "engine" and expired:
            cur_state = "normal"                          # the operator's state lapsed: the engine takes over again
            if target == "normal":
                return self._action(port, "normal", reasons, now_ms, current, note="operator state expired")
        if LEVEL[target] > LEVEL[cur_state]:
            return self._action(port, target, reasons, now_ms, current, recent_per_min=recent_per_min)
        if escalate_only or cur_state == "normal":
            return None
        # on spam evidence, and still justified at watch at least
        persisting = self.on_spam(reasons) and risk >= self.thresholds["watch"] * self.hysteresis
        if persisting and cur_state == "watch":
            if not self.on_spam(current.reasons):
                return self._action(port, "watch", reasons, now_ms, current, since_ms=current.since_ms,
                                    note="spam share at watch: throttled if it lasts")
            if now_ms - current.ts_ms >= self.persist_after_ms:
                return self._action(port, "throttle", reasons, now_ms, current, recent_per_min=recent_per_min,
                                    note=f"at watch on spam share for {(now_ms - current.ts_ms) // 60_000} min")
        # target below current: step down only once expired and clearly below the threshold (a throttle on
        # persisting spam evidence is still justified)
        if LEVEL[target] < LEVEL[cur_state] and risk < self.thresholds[cur_state] * self.hysteresis \
                and not (persisting and cur_state == "throttle"):
            if expired:
                lower = PORT_STATES[max(LEVEL[target], LEVEL[cur_state] - 1)]
                # a block stepping down throttles at the fixed rate: the port's rate under the block says nothing
                return self._action(port, lower, reasons, now_ms, current, note=f"{cur_state} expired")
            return None
        # Still justified (at its level, or within the hysteresis band under it): renewed shortly before it
        # expires. Letting it lapse instead would leave gateways treating the port as normal (an expired
        # record is normal to them) while the engine still judges it at this state.
        if current.expires_at_ms is not None and current.expires_at_ms - now_ms <= self.renew_before_ms:
            return self._action(port, cur_state, reasons, now_ms, current, since_ms=current.since_ms)
        return None

    def throttle_rate(self, recent_per_min: float | None) -> int:
        """Messages a minute gateways let through a port the engine throttles: ``throttle_share`` of the port's own
        recent rate (the engine passes the larger of its last minute and its 10-minute average), at most
        ``throttle_rate_per_min`` and at least 1. A fixed rate alone slowed nothing that sent less than it (red team:
        a port dripping spam at 2 a minute, or blasting at 30, was "throttled" at 60). No recent rate known (a
        complaint, a block stepping down to throttle), or no ``throttle_share`` in the policy: the fixed rate.

        >>> p = Policy.load()
        >>> p.throttle_rate(2.0), p.throttle_rate(30.0), p.throttle_rate(5000.0), p.throttle_rate(None), p.throttle_rate(0)
        (1, 15, 60, 60, 60)
        """
        if self.throttle_share is None or not recent_per_min or recent_per_min <= 0:
            return self.throttle_rate_per_min
        return max(1, min(self.throttle_rate_per_min, math.ceil(self.throttle_share * recent_per_min)))

    def _action(self, port: str, state: str, reasons: list[Reason], now_ms: int, current: PortAction | None,
                since_ms: int | None = None, note: str | None = None,
                recent_per_min: float | None = None) -> PortAction:
        ttl = self.ttl_ms.get(state)
        rate = None
        if state == "throttle":     # a renewal keeps its rate: re-measured under the throttle it would only shrink
            renewing = since_ms is not None and current is not None and current.state == "throttle"
            rate = current.rate_limit_per_min if renewing and current.rate_limit_per_min \
                else self.throttle_rate(recent_per_min)
        return PortAction(
            port=port, ts_ms=next_ts_ms(current, now_ms), state=state, reasons=reasons, since_ms=now_ms if since_ms is None else since_ms,
            expires_at_ms=now_ms + ttl if ttl else None, decided_by="engine",
            rate_limit_per_min=rate,
            previous_state=current.state if current else "normal", note=note,
        )


def next_ts_ms(current: PortAction | None, now_ms: int) -> int:
    """The ``ts_ms`` of a port's next action: its own time, but always after the port's current record.

    ``ts_ms`` orders a port's actions (gateways, the dashboard and ``docs/gateway.md`` keep the largest),
    and the clocks behind it differ: the engine stamps event time (up to 24 h off the wall clock), operators
    the wall clock. Without this an operator's block could sort before an engine throttle dated in the
    future, and an engine action after a release before that release. ``since_ms`` and ``expires_at_ms``
    stay on the action's own clock.

    >>> next_ts_ms(None, 5), next_ts_ms(PortAction("1069", 9, "block", [], 9, None, "ops"), 5)
    (5, 10)
    """
    return now_ms if current is None else max(now_ms, current.ts_ms + 1)


def operator_action(port: str, kind: str, operator: str, reason: str, now_ms: int, expires_in_s: int | None = None,
                    rate_limit_per_min: int | None = None, current: PortAction | None = None,
                    default_rate_per_min: int = 60) -> PortAction:
    """An operator's override: throttle / block / allowlist pin the port; release hands it back to the engine."""
    if kind not in OPERATOR_KINDS:
        raise ConfigError(f"unknown operator action {kind!r}: expected one of {', '.join(OPERATOR_KINDS)}")
    if not reason or not reason.strip():
        raise ConfigError("an operator action needs a reason")
    if not operator:
        raise ConfigError("an operator action needs an operator id")
    state = {"throttle": "throttle", "block": "block", "release": "normal", "allowlist": "normal"}[kind]
    return PortAction(
        port=port, ts_ms=next_ts_ms(current, now_ms), state=state,
        reasons=[Reason(f"operator_{kind}", 1.0, 0.0, reason.strip()[:500])],
        since_ms=now_ms, expires_at_ms=now_ms + expires_in_s * 1000 if expires_in_s else None,
        # release returns the port to the engine: it is recorded as the engine's normal state
        decided_by="engine" if kind == "release" else operator,
        # 0 is a rate (reject everything, docs/gateway.md), not "no rate given"
        rate_limit_per_min=(default_rate_per_min if rate_limit_per_min is None else rate_limit_per_min)
        if kind == "throttle" else None,
        previous_state=current.state if current else None, note=f"{kind} by {operator}: {reason.strip()[:500]}",
    )
