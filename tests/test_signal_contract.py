"""The contract every signal must pass (like river's estimator checks): one suite, every signal."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings as hsettings, strategies as st

from detector.errors import ConfigError
from detector.events import SmsEvent
from detector.policy import DEFAULT_POLICY_FILE
from detector.signals import ALL_SIGNALS
from detector.signals.base import Fired, MessageContext
from detector.signals.feeds import FEEDS, ONLY_FOR
from detector.state.base import Baseline, Counter, Distinct, FieldCounters, HashGet, Window

ROOT = Path(__file__).resolve().parents[1]
SIGNALS = sorted(ALL_SIGNALS.items())
POLICY = yaml.safe_load(DEFAULT_POLICY_FILE.read_text(encoding="utf-8"))


def context(**overrides) -> MessageContext:
    event = SmsEvent("m1", 1_731_326_400_000, "10690001", "r_abc", "【京东】大促回T退订", sp_id="sp1", signature="京东",
                     category="marketing")
    values = dict(event=event, score=0.9, is_spam=True, marketing=True, has_unsubscribe=True, local_hour=22,
                  template_key="k", template_id="t", content_id="c", lsh_bands=("0.a", "1.b", "2.c", "3.d"))
    values.update(overrides)
    return MessageContext(**values)


def result_strategy(op):
    """Plausible store results for a feed's op (the shapes MemoryStore/RedisStore return)."""
    n = st.integers(min_value=0, max_value=10**7)
    op_type = type(op)
    if op_type is Window:
        return st.tuples(*[n] * len(op.spans_s))
    if op_type is Baseline:
        f = st.floats(min_value=0, max_value=1e6, allow_nan=False)
        return st.tuples(f, f, st.integers(0, 10**6), n)
    if op_type in (Distinct, Counter):
        return n
    if op_type is FieldCounters:
        return st.tuples(*[n] * len(op.fields))
    if op_type is HashGet:
        return st.lists(st.one_of(st.none(), st.just("1731326400000")), min_size=2, max_size=2)
    raise AssertionError(op_type)


FEED_OPS = {name: build(context()) for name, build in FEEDS.items()}


@pytest.mark.parametrize("name,cls", SIGNALS)
def test_signal_is_named_documented_and_configured(name, cls):
    assert re.fullmatch(r"[a-z][a-z0-9_]*", name)
    assert cls.__doc__ and len(cls.__doc__.strip()) > 20, "say what the signal means in its docstring"
    assert cls.level in ("message", "port", "both")
    entry = POLICY["signals"][name]
    assert entry.get("why"), "the policy file says why the signal has its weight"
    assert set(entry.get("params", {})) <= set(cls.defaults)
    assert name in (ROOT / "docs" / "signals.md").read_text(encoding="utf-8"), "document the signal in docs/signals.md"


@pytest.mark.parametrize("name,cls", SIGNALS)
def test_signal_feeds_exist(name, cls):
    for feed in cls.feeds:
        assert feed in FEEDS, f"{name} reads unknown feed {feed}"


@pytest.mark.parametrize("name,cls", SIGNALS)
def test_signal_refuses_unknown_parameters(name, cls):
    with pytest.raises(ConfigError):
        cls({"no_such_parameter": 1})


@pytest.mark.parametrize("name,cls", SIGNALS)
def test_signal_survives_missing_or_empty_state(name, cls):
    signal = cls()
    ctx = context()
    if cls.feeds:
        assert not signal.available(ctx), "a signal with feeds is unavailable when the store said nothing"
    ctx.state = {feed: None for feed in cls.feeds}
    assert signal.available(ctx)
    fired = signal.evaluate(ctx)
    assert fired is None or isinstance(fired, Fired)


@pytest.mark.parametrize("name,cls", SIGNALS)
@hsettings(max_examples=60, deadline=None)
@given(data=st.data(), score=st.floats(0, 1), is_spam=st.booleans(), marketing=st.booleans(),
       unsub=st.booleans(), hour=st.integers(0, 23), registered=st.sampled_from([None, frozenset(), frozenset({"京东"})]),
       is_code=st.booleans(), lure=st.sampled_from([None, "加微信 + 日赚"]),
       offer=st.sampled_from([None, "gambling: 彩金"]))
def test_signal_value_is_bounded_and_deterministic(name, cls, data, score, is_spam, marketing, unsub, hour, registered,
                                                   is_code, lure, offer):
    ctx = context(score=score, is_spam=is_spam, marketing=marketing, has_unsubscribe=unsub, local_hour=hour,
                  registered_signatures=registered, is_code=is_code, lure=lure, offer=offer)
    # results shaped like this message's own ops (a code's rcpt_24h has a third field), else the usual op's
    ctx.state = {feed: data.draw(result_strategy(FEEDS[feed](ctx) or FEED_OPS[feed])) for feed in cls.feeds}
    signal = cls()
    first, second = signal.evaluate(ctx), signal.evaluate(ctx)
    assert first == second
    if cls.only_for is not None:    # the engine skips the signal for other messages: it must never fire there
        assert cls.only_for in ("marketing", "spam", "code")
        assert first is None or cls.may_fire(ctx.marketing, ctx.is_spam, ctx.is_code), first
    if first is not None:
        assert math.isfinite(first.value) and 0.0 <= first.value <= 1.0, first
        assert first.detail is None or isinstance(first.detail, str)


def test_every_feed_builds_an_op_with_a_hash_tagged_key():
    ctx = context()
    for name, build in FEEDS.items():
        op = build(ctx)
        assert op is not None, name
        assert re.fullmatch(r"sg:[a-z]+:\{[^{}]+\}(:.*)?", op.key), op.key


def test_policy_file_names_every_signal_once():
    assert set(POLICY["signals"]) == set(ALL_SIGNALS)


def test_docs_signals_md_matches_the_code():
    from detector.commands import signals_markdown
    assert (ROOT / "docs" / "signals.md").read_text(encoding="utf-8") == signals_markdown(), \
        "regenerate: smsguard signals --markdown > docs/signals.md"


TEMPLATE_FEEDS = sorted(n for n, f in FEEDS.items() if getattr(f, "sender_and_template_only", False))


def test_some_feeds_are_shared_per_sender_and_template():
    assert {"port_signatures", "template_ports_0"} <= set(TEMPLATE_FEEDS)


@pytest.mark.parametrize("name", TEMPLATE_FEEDS)
@hsettings(max_examples=50, deadline=None)
@given(recipient=st.text(min_size=1, max_size=12), msg_id=st.text(min_size=1, max_size=8),
       content=st.text(max_size=20), score=st.floats(0, 1), flags=st.tuples(*[st.booleans()] * 3),
       hour=st.integers(0, 23), seconds=st.integers(0, 59),
       category=st.sampled_from([None, "verification", "notification", "marketing"]))
def test_template_feeds_read_only_the_sender_and_the_template(name, recipient, msg_id, content, score, flags, hour,
                                                              seconds, category):
    """The engine works these feeds out once per (port, sp_id, signature, minute, template, marketing) of a batch
    and hands every such message the same result: they must not read anything else of the message."""
    feed = FEEDS[name]
    base = context(marketing=flags[1])
    event = SmsEvent(msg_id, base.event.ts_ms + seconds * 1000, base.event.port, recipient, content,
                     sp_id=base.event.sp_id, signature=base.event.signature, category=category)
    other = context(event=event, score=score, is_spam=flags[0], marketing=flags[1], has_unsubscribe=flags[2],
                    local_hour=hour, content_id=content or "-")
    assert (feed.ident(other), feed.member(other)) == (feed.ident(base), feed.member(base))


@pytest.mark.parametrize("name", sorted(ONLY_FOR))
@hsettings(max_examples=50, deadline=None)
@given(is_spam=st.booleans(), marketing=st.booleans(), is_code=st.booleans(), unsub=st.booleans(),
       signature=st.sampled_from([None, "京东"]), lure=st.sampled_from([None, "刷单返利"]))
def test_feeds_only_for_a_kind_build_no_op_for_other_messages(name, is_spam, marketing, is_code, unsub, signature,
                                                               lure):
    """The engine does not ask these feeds about messages of another kind (feeds.ONLY_FOR): they must not apply."""
    assert name in FEEDS and ONLY_FOR[name] in ("marketing", "spam")
    event = SmsEvent("m1", 1_731_326_400_000, "10690001", "r_abc", "内容", sp_id="sp1", signature=signature)
    ctx = context(event=event, is_spam=is_spam, marketing=marketing, is_code=is_code, has_unsubscribe=unsub,
                  lure=lure)
    if not (ctx.marketing if ONLY_FOR[name] == "marketing" else ctx.is_spam):
        assert FEEDS[name](ctx) is None
