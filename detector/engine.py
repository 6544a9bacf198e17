"""The detection engine: a micro-batch of events in, decisions and port-state changes out.

Plain Python around a :class:`~detector.state.base.StateStore`. The live worker and
``smsguard replay`` call the same :meth:`Engine.process`; only the store differs.

Per batch:
 1. claim every msg_id once (idempotency: a redelivered message is neither decided nor counted twice) and,
    concurrently, read the signature registry of the batch's ports (a feed counts by it);
 2. score the new messages in one classifier call (template cache in front);
 3. build each message's state feeds, run them and read port states, concurrently;
 4. evaluate the signals, apply the policy: one decision per message, port state changes.
When the store is unreachable, messages are still decided on what needs no state, the decision
says which signals were skipped (``degraded``), and port states come from the last ones seen.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Protocol, Sequence

from detector import textnorm
from detector.errors import StateUnavailable
from detector.events import ComplaintEvent, Decision, OptOutEvent, PortAction, Reason, SmsEvent
from detector.fingerprint import lsh_bands
from detector.policy import Policy
from detector.settings import Settings
from detector.signals.base import MessageContext
from detector.signals.content import PRIVATE_CONTACT, disguised_contact, prohibited_offer, scam_lure
from detector.signals.feeds import DAY_S, FEEDS, ONLY_FOR, SENDER_FEEDS, DistinctFeed
from detector.signals.port_health import complaint_value
from detector.state.base import Counter, FieldCounters, HashGet, HashSet, StateStore, Window, tag

log = logging.getLogger(__name__)

Event = SmsEvent | OptOutEvent | ComplaintEvent
OPTOUT_TTL_S = 400 * DAY_S      # opt-outs are durable facts; the TTL only bounds memory for long-gone numbers

# Unsubscribe wording seen in the wild: 回T退订, 退订回T, 拒收请回复R, 回复TD退订, 回N退订, 回0000, 回TD退, 回N不再接收,
# 不想收到请回复T, 如需屏蔽回复0000, 拒收所有短信直接回复TD, 回复“T”退订 … A bare 退订 counts too, except where it
# means cancelling a booking or an order (机票已退订, 退订成功, 可免费退订, 退订费): travel and shop notices say that,
# and an opt-out must not block them.
_KEY = r"[“”\"'‘’]?(?:t|td|r|n|0000|qx|stop)[“”\"'‘’]?"
_UNSUBSCRIBE = re.compile(rf"(回复?|发送?|编辑)?\s*{_KEY}\s*(可?退订|拒收|取消|可?屏蔽)|退订.{{0,4}}?回复?\s*{_KEY}(?![a-z])|"
                          rf"(回复?|发送?)\s*{_KEY}\s*(退(?![款货费出回])|不再(接收|收到))|"
                          rf"不(想|愿|希望|需要)再?(接收|收到).{{0,12}}?回复?\s*{_KEY}(?![a-z])|"
                          rf"(拒收|屏蔽).{{0,8}}?回复?\s*{_KEY}(?![a-z])|回复?退订|退订请|取消订阅|"
                          r"(?<!已)(?<!经)(?<!申请)(?<!成功)(?<!免费)(?<!可)(?<!成功办理)(?<!已办理)"
                          r"退订(?!成功|完成|了|手续|费|款|申请|规则|业务|政策|的|机票|酒店|航班|订单)",
                          re.I)
UNSUBSCRIBE_WORDING = _UNSUBSCRIBE       # for training: the wording the rules read (training.train.unsubscribe_clauses)
# Lines that talk of unsubscribing and give no way to (red team case 11, docs/redteam.md): the rules ask for an
# effective, free way to refuse, and a reply keyword (回T退订, 拒收请回复R, 回TD退: T / TD is what the carriers act on)
# or a number to send a keyword to (发送TD至10001) is one. These are not: a negation (本短信无需退订, 无法退订), a
# customer service to ask (退订请联系客服, 致电客服退订), a private chat (退订请加微信: a lure of its own), or a charge
# (退订回复T(1元/条)). Their spans are taken out of the text before _UNSUBSCRIBE reads it, so a real method beside
# one still counts. None of the data files' rows has such a line (0 of raw_dev.tsv's 4,088 and of dev.tsv's 87,347),
# so no real sender's unsubscribe line stops counting; every fake one is the red team's.
_CARE = r"(?:人工|在线)?客服|客户经理|工作人员"
_ASK_SOMEONE = rf"(?:(?:联系|联络|致电|拨打|咨询|找|加)\s*(?:{_CARE}|我们|我司)|{_CARE}|{PRIVATE_CONTACT.pattern})"
_FAKE_UNSUBSCRIBE = re.compile(
    r"(?:无需|无须|不用|不必|不需要?|勿需|毋需|无法|不能|不可)退订|"
    rf"(?<![a-z0-9“”\"'‘’回复送])退订(?:[:,]?\s*(?:请|需|须|可|要|就|时|的话))*[:,]?\s*{_ASK_SOMEONE}|"
    rf"{_ASK_SOMEONE}\s*(?:即可|可|来|进行)?(?:办理)?退订|"
    # a charge, not one waived: no 免 / 不 / 无 on the way to it (回TD退订,免信息费 / 不收取信息费), none after it (资费全免),
    # and no amount of 0 (0元/条)
    r"(?:退订|拒收|屏蔽)[^免不无]{0,8}?\(?(?:收费|资费|信息费|(?!0+(?:\.0+)?元)\d+(?:\.\d+)?元/?(?:条|次))(?!全免|为0|为零)",
    re.I)
# A reply keyword offered as the other way in the same line (如需退订请联系客服或回复TD): taking the fake part out left
# "或回复TD" with no 退订 for _UNSUBSCRIBE to read, so the free self-service method stopped counting. (After the
# fake part: the number or id it names, if any.)
_OR_REPLY = re.compile(rf"(?:热线|电话)?:?\s*+[a-z0-9_\-]{{0,20}}+\s*+[,;]?\s*+(?:或者?|也可|亦可)\s*+(?:请|直接)?\s*+"
                       rf"(?:回复?|发送?)\s*+{_KEY}(?![a-z])", re.I)       # possessive: no quadratic space runs
# Wording that sells hard (3: a text saying it is marketing, whatever it is declared as), that sells (2; also
# in notices: 领取 your parcel, 活动, 免费), or that only points to a contact, as notices do too (1). A text that
# reads as a transaction (您双11购买的商品已发货, 已使用优惠券, 尾号…支付) is a notice that mentions a sale: 2 at most.
_STRONG_PROMOTION_CUES = re.compile(r"促销|折起|[0-9一二三四五六七八九]折(?!叠)|抢购|秒杀|大促|双11|双十一|满\d+减|包邮|"
                                    r"酬宾|清仓|低至|优惠券|领券", re.I)
_TRANSACTION_CUES = re.compile(r"订单|发货|运单|快递|快件|包裹|取件|签收|物流|配送|支付|付款|扣款|扣费|尾号|账户|余额|还款|"
                               r"账单|交易|消费|预订|预约|到货|退款|出票|航班|入住|购买的|您秒杀|已使用")
_PROMOTION_CUES = re.compile(r"优惠|促销|特价|折起|[0-9一二三四五六七八九]折(?!叠)|抢购|秒杀|红包|领取|限时|会员日|大促|双11|"
                             r"双十一|618|满\d+减|包邮|开业|酬宾|惊喜|活动|福利|免费|贷款|楼盘|开盘|招生|回馈|礼包", re.I)
_CONTACT_CUES = re.compile(r"咨询|热线")


def _marketing_cues(folded: str) -> int:
    """3: wording that sells hard; 2: promotional wording; 1: only a contact line (咨询, 热线); 0: neither.

    >>> [_marketing_cues(t) for t in ("双11大促,全场5折", "会员积分可免费领取", "详询客服热线", "您的快件已签收")]
    [3, 2, 1, 0]
    >>> _marketing_cues("您双11购买的商品已发货"), _marketing_cues("您预约的三折叠手机已到货")
    (2, 0)
    """
    if _PROMOTION_CUES.search(folded):
        return 3 if _STRONG_PROMOTION_CUES.search(folded) and not _TRANSACTION_CUES.search(folded) else 2
    return 1 if _CONTACT_CUES.search(folded) else 0


# How one-time codes name themselves: an undeclared message so worded is judged as a code, and a message declared a
# code keeps a code's treatment only if so worded. Banks' tokens say 动态口令 or 安全码 (neither data file has them);
# Google's and Microsoft's codes say 验证代码 and 安全代码 (raw_dev.tsv: 4 Google codes, 您的 Google 验证代码为 970157),
# carriers' login codes 随机密码 / 随机码 (中国移动网上营业厅; neither data file has one).
_CODE_WORDING_ZH = re.compile(r"(?:验证|校验|动态|动态密|确认|激活|登录|短信|安全|随机|随机密)代?码|动态口令")
# (OTP bounded by Latin letters and digits only: to re, 您的OTP为 has no word boundary before it)
_CODE_WORDING_EN = re.compile(r"verification code|security code|one-time (?:pass)?code|(?<![a-z0-9])otp(?![a-z0-9])")


def _worded_as_code(folded: str) -> bool:
    """Whether the rule text (_rule_text) calls itself a one-time code. Literal tests first: with IGNORECASE and a
    dozen alternatives a regex is tried at every position of every new template.

    >>> _worded_as_code("您的验证码是1234"), _worded_as_code("Your OTP is 1234"), _worded_as_code("您的订单已发货")
    (True, True, False)
    >>> _worded_as_code("您的动态口令为123456，5分钟内有效"), _worded_as_code("支付宝红包口令：21775944")
    (True, False)
    """
    if ("码" in folded or "口令" in folded) and _CODE_WORDING_ZH.search(folded) is not None:
        return True
    lowered = folded.lower()
    if "code" not in lowered and "otp" not in lowered:
        return False
    return _CODE_WORDING_EN.search(lowered) is not None


# What the wording rules above read: the text as the model's normaliser reads a keyword, NFKC-folded, traditional
# characters simplified, and whatever sits between two Chinese characters dropped unless it is sentence punctuation
# (，。！？；： and their ASCII forms). That is spaces and textnorm's separators (五 折, 促-销), those textnorm leaves
# (加、微、信, 包♥邮) and combining marks (大̶促̶), none of them word characters, and look-alike strokes that are:
# 〡〢… (Hangzhou numerals), ㆍ (a Hangul vowel), 丨 (an ideograph used as a bar): 限〡时, 加丨微丨信. On NFKC alone a
# declared notification hid its hard-selling words that way (會員日限時搶購, 五 折) and escaped quiet hours and
# opt-outs. On the normal rows of both data files this changes no judgement of a declared notification and no
# unsubscribe line; undeclared, 17 of dev.tsv's 78,684 (traditional-script promotions: 特價, 優惠) and 0 of
# raw_dev.tsv's 1,745 become marketing, and so do 28 of raw_dev.tsv's 2,343 spam messages.
_RULE_GAPS = re.compile(r"(?<=[\u4e00-\u9fff])(?:(?![，。！？；：,!?;:])[\W_]|[\u3021-\u3029\u318d\u119e\u4e28])+"
                        r"(?=[\u4e00-\u9fff])")


def _rule_text(content: str) -> str:
    """The text the wording rules read (see _RULE_GAPS).

    >>> _rule_text("會員日限時搶購，全場五 折"), _rule_text("大̶促̶，包♥邮"), _rule_text("回T退订，共5 折")
    ('会员日限时抢购,全场五折', '大促̶,包邮', '回T退订,共5 折')
    """
    return _RULE_GAPS.sub("", textnorm.to_simplified(textnorm.nfkc(content)))


def _unsubscribe(folded: str) -> tuple[bool, str | None]:
    """Whether the rule text (_rule_text) offers a way to refuse, and the first line in it that only pretends to
    (_FAKE_UNSUBSCRIBE) or None. Every wording contains 退, 拒收, 取消, 接收, 收到 or 屏蔽, and testing those first
    skips the regexes (slow: optional prefixes tried at every position) for most texts; every fake one 退订, 拒收 or
    屏蔽.

    >>> _unsubscribe("回t退订"), _unsubscribe("拒收请回复r"), _unsubscribe("您的验证码是1234")
    ((True, None), (True, None), (False, None))
    >>> _unsubscribe("本短信无需退订"), _unsubscribe("退订请加微信dk888"), _unsubscribe("退订回T,详询客服热线")
    ((False, '无需退订'), (False, '退订请加微信'), (True, None))
    """
    if "退" not in folded and "拒收" not in folded and "取消" not in folded and "接收" not in folded \
            and "收到" not in folded and "屏蔽" not in folded:
        return False, None
    fake = _FAKE_UNSUBSCRIBE.search(folded) if "退订" in folded or "拒收" in folded or "屏蔽" in folded else None
    if fake is None:
        return _UNSUBSCRIBE.search(folded) is not None, None
    if _UNSUBSCRIBE.search(folded) is None:
        # nothing the unsubscribe rule reads as a line (该业务当月不可退订 speaks of a service): nothing pretends either
        return False, None
    real = _UNSUBSCRIBE.search(_FAKE_UNSUBSCRIBE.sub(",", folded)) is not None \
        or any(_OR_REPLY.match(folded, m.end()) for m in _FAKE_UNSUBSCRIBE.finditer(folded))
    return real, fake.group()


def _has_unsubscribe(folded: str) -> bool:
    """Whether the rule text offers a way to refuse (see _unsubscribe).

    >>> _has_unsubscribe("回t退订"), _has_unsubscribe("退订请联系客服")
    (True, False)
    """
    return _unsubscribe(folded)[0]


def _judged_at(ts_ms: int, clock_ms: int | None) -> int:
    """The time an event is judged at: its event time, but never later than the live worker's clock (see
    Engine.process; replay passes no clock).

    >>> _judged_at(70_000, None), _judged_at(70_000, 30_000), _judged_at(20_000, 30_000)
    (70000, 30000, 20000)
    """
    return ts_ms if clock_ms is None or ts_ms <= clock_ms else clock_ms


def _state_at(record: PortAction | None, ts_ms: int, clock_ms: int | None) -> str:
    """A port's state at a message's event time, judged at :func:`_judged_at`: an expired record is no state at all,
    as gateways read it, until the batch judges the port again.

    >>> block = PortAction("1069", 0, "block", [], 0, 60_000, "ops-li")
    >>> _state_at(block, 59_999, None), _state_at(block, 60_000, None), _state_at(block, 70_000, 30_000)
    ('block', 'normal', 'block')
    """
    if record is None or record.lapsed_by(_judged_at(ts_ms, clock_ms)):
        return "normal"
    return record.state


def _recent_per_min(port_rate: Any) -> float | None:
    """A port's sending rate per minute from its port_rate feed (messages in the last minute, 10 minutes, hour):
    the larger of its last minute and its 10-minute average, so that a port that started seconds ago is not
    taken for one sending a tenth of its rate.

    >>> _recent_per_min((2, 19, 110)), _recent_per_min((18, 18, 18)), _recent_per_min(None)
    (2, 18, None)
    """
    if not port_rate:
        return None
    return max(port_rate[0], port_rate[1] / 10)


class Scorer(Protocol):
    version: str
    threshold: float

    def score(self, texts: Sequence[str]) -> Any: ...

    def explain_many(self, texts: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        """Per text, the k features that pushed it most towards spam, with their contributions."""


class NullScorer:
    """No model loaded: every message scores 0 (the heuristics still run)."""
    version = "none"
    threshold = 1.01

    def score(self, texts: Sequence[str]) -> list[float]:
        return [0.0] * len(texts)

    def explain_many(self, texts: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        return [[] for _ in texts]


@dataclass
class EngineResult:
    decisions: list[Decision] = field(default_factory=list)
    port_actions: list[PortAction] = field(default_factory=list)
    duplicates: list[SmsEvent] = field(default_factory=list)
    #: for duplicates whose decision is still kept (SMSGUARD_DECISION_REPLAY_TTL_S): that decision's payload,
    #: to produce again, because the first copy may have been lost with a worker that crashed before delivering it
    redelivered: list[dict[str, Any]] = field(default_factory=list)
    degraded: bool = False


_SENDER_ATTRS = ("port", "sp_id", "signature")
_COUNTING_OPS = (Counter, FieldCounters)     # ops with an amount: a redelivered message reads them with 0


def _port_blocked() -> Reason:
    """The reason of a message blocked because its port is (weight 0: it explains, it adds no risk)."""
    return Reason("port_blocked", 1.0, 0.0, "the port is blocked")


def _reason_strength(reason: Reason) -> float:
    return -abs(reason.value * reason.weight)


def _short_hash(text: str) -> str:
    return hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()


class _TemplateFeatures:
    """Per-template work (normalisation, MinHash, text rules) done once per template, LRU-cached.

    Value: ``[template id, MinHash band keys (None until asked for), has unsubscribe text, marketing cues
    (0, 1, 2, 3), scam lure or None, worded as a one-time code, the text the band keys are made of, prohibited offer
    or None, disguised link or number or None, fake unsubscribe line or None]``.
    """

    def __init__(self, size: int = 50_000):
        self._cache: OrderedDict[str, list] = OrderedDict()
        self._size = size

    def get(self, key: str, content: str) -> list:
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return hit
        folded = _rule_text(content)
        body = textnorm.normalize(content)
        lowered = folded.lower()
        both = f"{body}\n{lowered}"        # what the lure and offer rules read: the normaliser's text and the rules'
        has_unsub, fake_unsub = _unsubscribe(folded)
        value = [_short_hash(key), None, has_unsub, _marketing_cues(folded), scam_lure(both),
                 _worded_as_code(folded), body or key, prohibited_offer(both), disguised_contact(lowered, content),
                 fake_unsub]
        self._cache[key] = value
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return value

    @staticmethod
    def bands(value: list) -> tuple[str, ...]:
        """The template's MinHash band keys, made the first time a marketing message of it asks. Only marketing
        is bucketed by them (feeds.py), and most new templates are notices: MinHash was a tenth of a miss."""
        bands = value[1]
        if bands is None:
            bands = value[1] = lsh_bands(value[6])
        return bands


class Engine:
    def __init__(self, settings: Settings, store: StateStore, scorer: Scorer | None = None,
                 policy: Policy | None = None):
        self.settings = settings
        self.store = store
        self.scorer: Scorer = scorer or NullScorer()
        self.policy = policy or Policy.load(settings.policy_file or None)
        self._template_keys = textnorm.TemplateKeys()
        self._templates = _TemplateFeatures()
        self._explanations: OrderedDict[str, tuple[tuple[str, float], ...]] = OrderedDict()
        self._port_cache: dict[str, PortAction] = {}          # last known states, for degraded batches
        self._read_only: set[int] = set()     # id() of events of this batch to decide without counting
        # (name, signal, weight, port weight, hard block): every active signal for a port's last message of the
        # batch, which also judges the port; only those with a message weight for the others
        self._judges = [(name, cfg.signal, cfg.weight, cfg.port_weight, cfg.hard_block)
                        for name, cfg in self.policy.signals.items() if cfg.weight or cfg.port_weight]
        self._message_judges = [judge for judge in self._judges if judge[2]]
        # the same lists without the signals that cannot fire for the message (Signal.only_for), by
        # [judges the port][marketing + 2 x spam-scored + 4 x one-time code]; a degraded batch asks every signal
        # (to name the skipped)
        self._judge_sets = [[[judge for judge in judges if judge[1].may_fire(bool(kind & 1), bool(kind & 2),
                                                                             bool(kind & 4))]
                             for kind in range(8)] for judges in (self._message_judges, self._judges)]
        feed_names = sorted({f for cfg in self.policy.signals.values() if cfg.weight or cfg.port_weight
                             for f in cfg.signal.feeds})
        self._sender_feeds = [(f, SENDER_FEEDS[f]) for f in feed_names if f in SENDER_FEEDS]
        # _build_ops groups a batch's messages by (port, sp_id, signature, minute): every sender feed must name
        # one of those attributes and count in whole minutes
        assert all(feed.attr in _SENDER_ATTRS and feed.bucket_s % 60 == 0 for _, feed in self._sender_feeds)
        message_feeds = [(f, FEEDS[f]) for f in feed_names if f not in SENDER_FEEDS]
        # worked out once per (sender group, template) of a batch, the rest once per message
        self._template_feeds = [(f, feed) for f, feed in message_feeds
                                if type(feed) is DistinctFeed and feed.sender_and_template_only]
        self._message_feeds = [(f, feed) for f, feed in message_feeds if (f, feed) not in self._template_feeds]
        assert all(feed.bucket_s % 60 == 0 for _, feed in self._template_feeds)
        # by [marketing + 2 x spam-scored]: the message feeds that may apply to such a message, and a None result
        # for each of the others (feeds.ONLY_FOR), set in one go
        self._message_feed_sets = []
        for kind in range(4):
            applies = [(f, feed) for f, feed in self._message_feeds
                       if ONLY_FOR.get(f) is None or bool(kind & (1 if ONLY_FOR[f] == "marketing" else 2))]
            self._message_feed_sets.append((applies, {f: None for f, feed in self._message_feeds
                                                      if (f, feed) not in applies}))
        # Distinct feeds that no signal with a message weight reads: only the port's judge (its last message of
        # the batch) reads their count, so the others only add their member (Distinct.count=False: in Redis the
        # count, a merge of the span's HyperLogLogs, costs more than the add). Under the default policy that is
        # port_recipients, which only spam_fanout (port weight only) reads.
        message_read = {f for _, signal, *_ in self._message_judges for f in signal.feeds}
        self._judge_only_feeds = frozenset(f for f, feed in self._message_feeds
                                           if type(feed) is DistinctFeed and f not in message_read)
        # Sender feeds that no signal with a message weight reads go to the port's judge alone (and the engine reads
        # port_rate there only): every port counter under the default policy. Copied into every message, they made
        # each message's state a dict of 22 entries, resized past 21 (+5,000 instructions a message).
        self._judge_only_senders = frozenset(f for f, _ in self._sender_feeds if f not in message_read)
        self._tz_offset_s = int(settings.default_tz_offset_h * 3600)

    @classmethod
    def from_settings(cls, settings: Settings, store: StateStore) -> "Engine":
        """The engine with the registry's promoted model behind a template cache."""
        from detector.model import CachedScorer
        from detector.registry import Registry
        model = Registry(settings.models_dir).load_promoted()
        return cls(settings, store, CachedScorer(model, settings.score_cache_size))

    @property
    def model_version(self) -> str:
        return self.scorer.version

    def swap_scorer(self, scorer: Scorer) -> None:
        """Hot reload: the next batch is scored by ``scorer``; a batch in flight finishes with the old one."""
        self.scorer = scorer
        self._explanations.clear()

    # -- the batch ---------------------------------------------------------------------------------
    async def process(self, events: Sequence[Event], *, clock_ms: int | None = None) -> EngineResult:
        """Decide a micro-batch. Windows, rates and expiries run on event time; ``clock_ms`` (the live worker's
        clock when it read the batch) caps the time port states are judged at, so that one message stamped
        hours ahead (within SMSGUARD_MAX_CLOCK_SKEW_S) cannot expire an operator's block or an engine state
        early. Replay passes none: there, event time is the only clock, and the output stays deterministic."""
        result = EngineResult()
        self._read_only.clear()
        sms = [e for e in events if type(e) is SmsEvent]
        ports = sorted({e.port for e in events})     # a repeat's port too: read needlessly, and harmlessly
        fresh, registry = await self._claim(sms, ports, result)
        contexts = self._contexts(fresh, registry or {})
        by_msg = {id(c.event): c for c in contexts}

        # A port's state is judged on its last message of the batch (its counters are then the newest)
        last_of_port = {ctx.event.port: ctx for ctx in contexts}
        ops, slots, shared, groups, complaints = self._build_ops(events, by_msg, last_of_port)
        # The msg_id is marked counted last, in the same ordered call as its counters: a worker that dies
        # before this call leaves nothing marked, and the redelivered message is simply counted then.
        # A store that dies with this process (replay) has no crash window: the mark says "decided" at once,
        # and _persist has nothing to add (one op less per message).
        dedup_s = int(self.settings.dedup_ttl_s)
        read_only = self._read_only
        mark = 1 if self.store.outlives_process else 2
        ops.extend(Counter(tag("msg", ctx.event.msg_id), ctx.event.ts_ms, mark, dedup_s)
                   for ctx in contexts if id(ctx.event) not in read_only)
        read_only.clear()
        states: dict[str, PortAction] = {}
        try:
            outputs, states = await asyncio.gather(self.store.run(ops), self.store.get_port_states(ports))
        except StateUnavailable:
            result.degraded = True
            outputs = []
            states = {p: self._port_cache[p] for p in ports if p in self._port_cache}
        if outputs:
            for index, name, receivers in shared:       # sender feeds: one result per group of messages
                value = outputs[index]
                for group_state in receivers:
                    group_state[name] = value
        for group_state, members, judge, judge_state in groups:
            for ctx in members:
                ctx.state.update(group_state)
            if judge is not None:
                judge.state.update(judge_state)
        for receivers, value in zip(slots, outputs):
            for target, name in receivers:
                target[name] = value
        self._port_cache.update(states)

        port_reasons = self._decide(contexts, states, result, last_of_port, clock_ms, registry is None)
        decided_from = dict(states)     # the records this batch is decided from
        changed_at: dict[str, int] = {}
        changes = [] if result.degraded else self._port_transitions(events, port_reasons, complaints, states,
                                                                    clock_ms, changed_at)
        to_explain = []
        for ctx, decision in zip(contexts, result.decisions):
            # _decide set the state the message was decided under. A state this batch reached holds from the event
            # it was judged on, so only the messages from then on take it (else a block reached on a batch's last
            # message would block the whole batch, and replay would depend on --batch-size).
            since = changed_at.get(decision.port) if changed_at else None
            if since is not None and decision.ts_ms >= since:
                decision.port_state = _state_at(states[decision.port], decision.ts_ms, clock_ms)
                if decision.port_state == "block" and decision.action != "block":     # blocked by this batch
                    decision.action = "block"
                    decision.reasons.append(_port_blocked())
            if ctx.is_spam and decision.action != "allow":
                to_explain.append((ctx, decision))
        if to_explain:
            self._explain_all(to_explain)
        if not result.degraded:
            await self._persist(contexts, changes, result, decided_from)
        return result

    def _build_ops(self, events: Sequence[Event], by_msg: dict[int, MessageContext],
                   last_of_port: dict[str, MessageContext]) -> tuple[list, list, list, list, dict[int, dict[str, Any]]]:
        """The batch's state ops, and who reads each result.

        Returns ``(ops, slots, shared, groups, complaints)``. ``slots[i]`` lists the (dict, key) pairs that
        ``ops[i]``'s result is stored under: a context's state and its feed, or a complaint's counts
        (``complaints``: by ``id()`` of the complaint event); ops after ``len(slots)`` have no reader.
        Sender feeds (per port / provider / signature counters, :data:`SENDER_FEEDS`) get one op per
        (feed, sender, time bucket) with the batch's summed amount: port-level volumes are evaluated per
        micro-batch (deterministic in replay, whose batch size is fixed), and a batch costs the store one
        op per sender instead of one per message. Their results go to ``shared`` ``(op index, feed, [group
        state])`` and each ``groups`` entry ``(group state, contexts, judge, judge state)`` is copied into its
        messages' state, and its judge state into the port's judge (``last_of_port``) when the group holds it: the
        sender feeds only the port's judge reads (``_judge_only_senders``) go there.
        Message feeds get one op per message, except that a repeated Distinct member in one bucket is
        sent once (it would change nothing), and the feeds that read only the sender and the template
        (``DistinctFeed.sender_and_template_only``) are worked out once per sender group, template and marketing
        flag. A Distinct feed that only the port's judge reads (``_judge_only_feeds``) is counted for the port's
        last message (``last_of_port``) only; every other message just adds its member.
        """
        ops: list = []
        slots: list[list[tuple[Any, str | None]]] = []
        merged: dict[tuple, int] = {}
        by_sender: dict[tuple, list] = {}     # (port, sp_id, signature, minute) -> its messages
        # (port, sp_id, signature, minute, template, marketing) -> the template feeds' ops (see below)
        by_template: dict[tuple, tuple[dict, list]] = {}
        complaints: dict[int, dict[str, Any]] = {}
        read_only = self._read_only
        message_feed_sets = self._message_feed_sets
        template_feeds = self._template_feeds
        judge_only = self._judge_only_feeds
        judges_of: dict[tuple, MessageContext] = {}     # sender group -> the port's judge, in the group holding it

        def distinct_readers(name: str, feed: DistinctFeed, ctx: MessageContext, ts_ms: int,
                             count: bool = True) -> list | None:
            """Who reads this message's Distinct op (None: the feed does not apply). A repeated member in the
            same bucket shares the first one's op: adding it again would change nothing."""
            ident = feed.ident(ctx)
            if ident is None:
                return None
            member = feed.member(ctx)
            group = (name, ident, ts_ms // (feed.bucket_s * 1000), member, count)
            index = merged.get(group)
            if index is None:
                index = merged[group] = len(ops)
                ops.append(feed.build(ident, ts_ms, member, count))
                slots.append([])
            return slots[index]

        for event in events:
            ctx = by_msg.get(id(event))
            if ctx is not None:
                ts_ms = event.ts_ms
                group_key = (event.port, event.sp_id, event.signature, ts_ms // 60_000)
                members = by_sender.get(group_key)
                if members is None:
                    by_sender[group_key] = [ctx]
                else:
                    members.append(ctx)
                state = ctx.state
                is_read_only = id(event) in read_only
                is_judge = last_of_port[event.port] is ctx
                if is_judge:
                    judges_of[group_key] = ctx
                template_group = (*group_key, ctx.template_key, ctx.marketing)
                shared = by_template.get(template_group)
                if shared is None:      # (None results of the feeds that do not apply, [(readers, feed)])
                    shared = by_template[template_group] = ({}, [])
                    for name, feed in template_feeds:
                        readers = distinct_readers(name, feed, ctx, ts_ms)
                        if readers is None:
                            shared[0][name] = None
                        else:
                            shared[1].append((readers, name))
                nones, live = shared
                if nones:
                    state.update(nones)
                for readers, name in live:
                    readers.append((state, name))
                message_feeds, nones = message_feed_sets[ctx.marketing + 2 * ctx.is_spam]
                if nones:
                    state.update(nones)
                for name, feed in message_feeds:
                    if type(feed) is DistinctFeed:
                        if not is_judge and name in judge_only:
                            distinct_readers(name, feed, ctx, ts_ms, False)     # add the member; nobody reads it
                            state[name] = None
                            continue
                        readers = distinct_readers(name, feed, ctx, ts_ms)
                        if readers is None:
                            state[name] = None
                        else:
                            readers.append((state, name))
                        continue
                    op = feed(ctx)
                    if op is None:
                        state[name] = None
                        continue
                    if is_read_only and type(op) in _COUNTING_OPS:
                        op = op._replace(amount=0)   # read the count, add nothing: this message was counted
                    ops.append(op)
                    slots.append([(state, name)])
            elif type(event) is OptOutEvent:
                field_name = f"s:{event.signature}" if event.signature else f"p:{event.port}"
                ops.append(HashSet(tag("optout", event.recipient), event.ts_ms, field_name, str(event.ts_ms),
                                   OPTOUT_TTL_S))
                slots.append([])
            elif type(event) is ComplaintEvent:
                counts = complaints[id(event)] = {}
                ops.append(Window(tag("port", event.port, "cmp"), event.ts_ms, 1, 3600, (DAY_S,)))
                slots.append([(counts, "complaints")])
                ops.append(Window(tag("port", event.port, "day"), event.ts_ms, 0, 3600, (DAY_S,)))
                slots.append([(counts, "day")])
        senders: dict[tuple, list] = {}          # (feed, sender, bucket) -> [amount, latest ts, [group state]]
        groups: list[tuple[dict, list, MessageContext | None, dict | None]] = []
        judge_senders = self._judge_only_senders
        for group_key, members in by_sender.items():
            minute = group_key[3]
            group_state: dict[str, Any] = {}
            judge = judges_of.get(group_key)
            judge_state: dict[str, Any] | None = None if judge is None else {}
            groups.append((group_state, members, judge, judge_state))
            counted = [c for c in members if id(c.event) not in read_only] if read_only else members
            latest = max(c.event.ts_ms for c in members)
            first = members[0].event          # the group's messages share their senders
            codes = None                      # the group's one-time codes, for the feeds counting codes only
            for name, feed in self._sender_feeds:
                target = judge_state if name in judge_senders else group_state     # None: no reader in the group
                sender = getattr(first, feed.attr)
                if not sender:
                    if target is not None:
                        target[name] = None     # no provider / no signature: the feed does not apply
                    continue
                entry_key = (name, sender, minute * 60 // feed.bucket_s)
                entry = senders.get(entry_key)
                if entry is None:
                    entry = senders[entry_key] = [0, latest, []]
                adding = counted
                if feed.codes_only:
                    if codes is None:
                        codes = [c for c in counted if c.is_code]
                    adding = codes
                entry[0] += len(adding) if feed.amount is None else sum(feed.amount(c) for c in adding)
                if latest > entry[1]:
                    entry[1] = latest
                if target is not None:
                    entry[2].append(target)
        shared = []
        for (name, sender, _), (amount, ts_ms, receivers) in senders.items():
            shared.append((len(ops), name, receivers))
            ops.append(SENDER_FEEDS[name].build(sender, ts_ms, amount))
        return ops, slots, shared, groups, complaints

    async def _claim(self, sms: list[SmsEvent], ports: list[str],
                     result: EngineResult) -> tuple[list[SmsEvent], dict[str, frozenset[str]] | None]:
        """The batch's messages to decide: neither repeated in the batch nor decided by an earlier one; and the
        signature registry entries of ``ports`` (签名报备), read concurrently with the marks.

        The registry is read here, before the batch's ops are built, because what a message counts depends on it
        (feeds._recipient_day: marketing under a signature registered to its port is not counted per port); read
        beside the marks it costs no round trip of its own. Every message of the batch is counted and judged with
        this one reading: an entry edited meanwhile (``smsguard signatures``, the dashboard) holds from the next
        batch on. When the store fails here, the registry is None: the batch is degraded and counted as if no port
        had an entry (a store back by the time the counters run then counts this batch's registered merchants' ads
        per port too), and the signals that read the registry (``Signal.reads_registry``) are skipped and named.

        A msg_id's mark (``sg:msg:{id}``, a Counter) is 1 once its counters are written (in the same ordered
        store call) and 2 once its decision is (``_persist``). A mark of 1 is the crash window, a worker that
        died between the two: the message is decided again with every counter read-only, so it is decided, and
        counted, exactly once. A mark of 2 is a repeat: it gets the kept decision back while that is kept
        (``SMSGUARD_DECISION_REPLAY_TTL_S``: its first copy may have died with a worker before delivery), and
        nothing after that, however late it comes. Replay keeps no decisions: every repeat is a duplicate.
        """
        if not sms:
            return [], {}
        ttl = int(self.settings.dedup_ttl_s)
        try:        # read-only: a msg_id is marked counted only together with its counters (see process)
            marks, registry = await asyncio.gather(
                self.store.run([Counter(tag("msg", e.msg_id), e.ts_ms, 0, ttl) for e in sms]),
                self.store.registered_signatures(ports))
        except StateUnavailable:
            result.degraded = True          # cannot deduplicate: decide anyway (at least once beats never)
            marks, registry = [0] * len(sms), None
        fresh, seen, decided_before = [], set(), []
        for event, mark in zip(sms, marks):
            if event.msg_id in seen:
                result.duplicates.append(event)          # twice in this batch: decided once, right here
                continue
            seen.add(event.msg_id)
            if not mark:
                fresh.append(event)
            elif mark == 1:                               # counted, never decided: decide, counting nothing
                result.duplicates.append(event)
                self._read_only.add(id(event))
                fresh.append(event)
            else:
                decided_before.append(event)
        if decided_before:
            await self._redeliver(decided_before, result)
        return fresh, registry

    async def _redeliver(self, decided_before: list[SmsEvent], result: EngineResult) -> None:
        """Repeats of decided msg_ids: their kept decisions, to send again, where still kept."""
        result.duplicates.extend(decided_before)
        if int(self.settings.decision_replay_ttl_s) <= 0:
            return
        try:
            kept = await self.store.run([HashGet(tag("dec", e.msg_id), ("d",)) for e in decided_before])
        except StateUnavailable:
            result.degraded = True
            return
        result.redelivered.extend(json.loads(payload) for (payload,) in kept if payload)

    def _contexts(self, events: list[SmsEvent], registry: dict[str, frozenset[str]]) -> list[MessageContext]:
        if not events:
            return []
        contents = [e.content for e in events]
        lookup = self._template_keys.lookup
        keys, masks = zip(*[lookup(c) for c in contents])
        score_keyed = getattr(self.scorer, "score_keyed", None)     # a cached scorer reuses our template keys
        scores = score_keyed(contents, keys) if score_keyed else self.scorer.score(contents)
        threshold = self.scorer.threshold
        contexts = []
        for event, key, may_mask, score in zip(events, keys, masks,
                                               scores.tolist() if hasattr(scores, "tolist") else scores):
            features = self._templates.get(key, event.content)
            template_id, _, has_unsub, cues, lure, code_words, _, offer, disguised, fake_unsub = features
            # a fake unsubscribe line (退订请联系客服) gives no compliance but reads as marketing as a real one does
            mentions_unsub = has_unsub or fake_unsub is not None
            is_spam = bool(score >= threshold)      # plain bools: _decide indexes by them
            declared = event.category
            # Undeclared: unsubscribe text or any cue makes it marketing, except that a text worded as a one-time
            # code is judged as a declared code is. Declared a notification or a code: unsubscribe text alone
            # does not (codes, delivery notices, usage alerts and bank reminders offer 退订 too, and an opt-out
            # must not stop them); wording that sells hard, or promotional wording with unsubscribe text, reads
            # as marketing whatever it says it is (leaving the unsubscribe line out must not make a campaign look
            # more legitimate, nor a code wrapped around a sign-up gift).
            sells = lure or offer or cues == 3 or (mentions_unsub and cues >= 2)
            if declared == "marketing" or is_spam or sells:
                marketing = True
            elif declared is None and not code_words:
                marketing = bool(mentions_unsub or cues)
            else:
                marketing = False
            # A one-time code, declared or not, is worded as one and does not sell. A declared code keeps a code's
            # treatment when only the model calls it spam (real code templates score spam: 财付通, 陌陌, QQ, 淘宝
            # codes in raw_dev.tsv), not when it promotes as well (cues >= 2: the corpus's prize scams quoting a
            # 领奖验证码). The declaration alone made spam a code (red team #6 (b)): it left spam_share's non-code
            # share with the codes it was diluted with, and marketing_frequency's count.
            if declared is None:
                is_code = code_words and not marketing
            elif declared == "verification":
                is_code = code_words and not sells and not (is_spam and cues >= 2)
            else:
                is_code = False
            hour = ((event.ts_ms // 1000 + self._tz_offset_s) // 3600) % 24
            # Positional, in MessageContext's field order: keyword arguments cost 0.6 µs more per message.
            # The explanation stays empty until the action is known: only flagged/blocked messages need one.
            contexts.append(MessageContext(
                event, score, is_spam, marketing, has_unsub, hour, key, template_id, _short_hash(event.content),
                self._templates.bands(features) if marketing else (), registry.get(event.port), (), lure, is_code,
                may_mask, offer, disguised, fake_unsub))
        return contexts

    def _explain_all(self, flagged: list[tuple[MessageContext, Decision]]) -> None:
        """Name the tokens that pushed the classifier in each content_spam reason (operators read these).

        Explanations are kept per template; the batch's new templates are explained in one model call.
        """
        known = self._explanations
        batch = {ctx.template_key: known[ctx.template_key] for ctx, _ in flagged if ctx.template_key in known}
        todo = {ctx.template_key: ctx.event.content for ctx, _ in flagged if ctx.template_key not in batch}
        if todo:
            for key, explanation in zip(todo, self.scorer.explain_many(list(todo.values()), 5)):
                batch[key] = known[key] = tuple(explanation)
            while len(known) > 20_000:
                known.popitem(last=False)
        spam = self.policy.signals["content_spam"].signal
        for ctx, decision in flagged:
            ctx.explanation = batch[ctx.template_key]
            for reason in decision.reasons:
                if reason.signal == spam.name:
                    fired = spam.evaluate(ctx)
                    reason.detail = fired.detail if fired else reason.detail

    def _decide(self, contexts: list[MessageContext], states: dict[str, PortAction], result: EngineResult,
                last_of_port: dict[str, MessageContext], clock_ms: int | None,
                registry_unread: bool = False) -> dict[str, tuple[int, list[Reason], Any]]:
        """Message decisions; returns each port's latest port-level reasons, with the event time they hold at and the
        port's volume feed (port_rate: its messages over the last minute, 10 minutes and hour).

        Signals that only judge ports run once per port and batch, on the port's last message (``last_of_port``).
        """
        port_reasons: dict[str, tuple[int, list[Reason], Any]] = {}
        # Every feed has a result (or None: does not apply) unless the store failed: only then ask each signal.
        check_feeds = result.degraded
        judge_sets = self._judge_sets
        model_version = self.scorer.version
        message_action = self.policy.message_action
        decisions = result.decisions
        for ctx in contexts:
            reasons: list[Reason] = []
            p_reasons: list[Reason] = []
            skipped: list[str] = []
            hard_block = False
            event = ctx.event
            judge_port = last_of_port[event.port] is ctx
            if check_feeds:
                judges = self._judges if judge_port else self._message_judges
            else:
                judges = judge_sets[judge_port][ctx.marketing + 2 * ctx.is_spam + 4 * ctx.is_code]
            for name, signal, weight, port_weight, hard in judges:
                if check_feeds and ((signal.feeds and not signal.available(ctx))
                                    or (registry_unread and signal.reads_registry)):
                    skipped.append(name)
                    continue
                fired = signal.evaluate(ctx)
                if fired is None:
                    continue
                if weight:
                    reasons.append(Reason(name, fired.value, weight, fired.detail))
                    hard_block = hard_block or hard
                if port_weight:
                    p_reasons.append(Reason(name, fired.value, port_weight, fired.detail))
            if skipped:
                reasons.append(Reason("degraded", 1.0, 0.0, "state store unavailable; skipped: " + ", ".join(skipped)))
            port_state = _state_at(states.get(event.port), event.ts_ms, clock_ms)
            action, risk = message_action(reasons, port_state, hard_block)
            if len(reasons) > 1:
                reasons.sort(key=_reason_strength)
            if port_state == "block":       # blocked for its port, whatever its own risk: say so
                reasons.append(_port_blocked())
            decisions.append(Decision(       # positional, in field order (keyword arguments cost 0.6 µs more)
                event.msg_id, event.port, event.ts_ms, action, ctx.score, risk, reasons, port_state, model_version,
                event.recipient, event.content, event.signature, event.sp_id, event.category, None, ctx.may_mask))
            if judge_port and not skipped:
                port_reasons[event.port] = (event.ts_ms, p_reasons, ctx.state.get("port_rate"))
        return port_reasons

    def _port_transitions(self, events: Sequence[Event], port_reasons: dict[str, tuple[int, list[Reason], Any]],
                          complaints: dict[int, dict[str, Any]], states: dict[str, PortAction],
                          clock_ms: int | None, changed_at: dict[str, int]) -> list[PortAction]:
        """Port state changes of this batch (``states`` is updated in place), judged at each message's event
        time, but never later than ``clock_ms`` (see :meth:`process`). ``changed_at`` gets, per changed port, the
        earliest event time a change was judged on: the batch's new state holds from that message (or complaint)
        on. Event time, not the capped time: with the sender's clock ahead of the worker's, every message of a
        batch is past the worker's clock, and the batch's earlier messages must still keep the earlier state."""
        changes: list[PortAction] = []
        for port, (ts_ms, reasons, port_rate) in port_reasons.items():
            risk = sum(r.value * r.weight for r in reasons)
            reasons.sort(key=lambda r: -r.value * r.weight)
            change = self.policy.next_port_state(port, states.get(port), risk, reasons, _judged_at(ts_ms, clock_ms),
                                                 recent_per_min=_recent_per_min(port_rate))
            if change is not None:
                states[port] = change
                changes.append(change)
                changed_at.setdefault(port, ts_ms)
        complaint_cfg = self.policy.signals["complaint_rate"]
        for event in events:
            counts = complaints.get(id(event))
            if not counts or not complaint_cfg.port_weight:
                continue
            fired = complaint_value(counts["complaints"][0], counts["day"][0], complaint_cfg.signal.params)
            if fired is None:
                continue
            reason = Reason("complaint_rate", fired.value, complaint_cfg.port_weight, fired.detail)
            change = self.policy.next_port_state(event.port, states.get(event.port), fired.value * reason.weight,
                                                 [reason], _judged_at(event.ts_ms, clock_ms), escalate_only=True)
            if change is not None:
                states[event.port] = change
                changes.append(change)
                changed_at[event.port] = min(changed_at.get(event.port, event.ts_ms), event.ts_ms)
        return changes

    async def _persist(self, contexts: list[MessageContext], changes: list[PortAction], result: EngineResult,
                       decided_from: dict[str, PortAction]) -> None:
        """Write what this batch decided: kept decisions, opt-out violations, port states.

        A port's new state is stored only over the record it was decided from (``decided_from``, read at the
        start of the batch; then this batch's previous change of the port). If an operator (or another worker,
        during a rebalance) stored a record in between, that one stands: the engine's change is neither stored
        nor announced, and the next batch judges the port from the stored record. (This batch's decisions were
        already made with the change: a block reached here has blocked the batch's messages from its time on.)
        """
        keep_s = int(self.settings.decision_replay_ttl_s)
        ops: list = [HashSet(tag("dec", d.msg_id), d.ts_ms, "d",
                             d.encode().decode(), keep_s)
                     for d in result.decisions] if keep_s > 0 else []
        if self.store.outlives_process:     # each msg_id's mark goes from 1 (counted) to 2 (decided): see _claim
            dedup_s = int(self.settings.dedup_ttl_s)
            ops += [Counter(tag("msg", d.msg_id), d.ts_ms, 1, dedup_s) for d in result.decisions]
        ops += [Window(tag("port", c.event.port, "optv"), c.event.ts_ms, 1, 60, (3600,))
                for c, d in zip(contexts, result.decisions)
                if d.reasons and any(r.signal == "opted_out" for r in d.reasons)]     # most have no reasons
        stored: list[PortAction] = []
        overtaken: set[str] = set()
        try:
            if ops:
                await self.store.run(ops)
            for change in changes:
                if change.port in overtaken:
                    continue
                basis = decided_from.get(change.port)
                if await self.store.put_port_state(change, replaces=basis.ts_ms if basis is not None else None):
                    decided_from[change.port] = change
                    stored.append(change)
                else:
                    overtaken.add(change.port)
        except StateUnavailable:
            result.degraded = True          # the changes not stored are neither announced nor cached
        self._port_cache.update({c.port: c for c in stored})
        result.port_actions.extend(stored)
        if overtaken:       # after the stored changes: a port's first change may be stored and its second overtaken
            log.info("port state changed while a batch was decided (an operator?); kept the stored record "
                     "of %d port(s) and dropped the engine's change", len(overtaken))
            try:
                self._port_cache.update(await self.store.get_port_states(overtaken))
            except StateUnavailable:
                result.degraded = True
