"""Realistic outbound traffic of bulk-SMS (106) ports, deterministic by seed, in event time.

Texts come from the labeled data in ``settings.data_dir`` (``dev.tsv`` and ``raw_dev.tsv``):
verification codes from a set of templates, notifications from real normal messages
with their digits varied, consented marketing with a signature and unsubscribe text,
and spam from the label-1 messages (mostly unsigned, without unsubscribe text).

Each :class:`PortProfile` is a Poisson process at its rate, silent outside its local
active hours; :meth:`TrafficSimulator.events` merges them in event-time order and
yields ``sms.outbound`` payloads. The same seed gives the same events.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "dev.tsv").write_text("1\\t加微信xxxxxxxx领红包\\n0\\t今天天气不错\\n", encoding="utf-8")
>>> _ = (d / "raw_dev.tsv").write_text("0\\t您尾号7544卡支出400元。【工商银行】\\n", encoding="utf-8")
>>> sim = TrafficSimulator(d, seed=1)
>>> evs = list(sim.events([PortProfile("10690001", "verification", rate_per_min=60, signatures=("支付宝",))],
...                       start_ms=1_731_326_400_000, duration_s=60))
>>> 30 < len(evs) < 100, evs[0]["port"], evs[0]["content"].startswith("【支付宝】") or evs[0]["content"].endswith("【支付宝】")
(True, '10690001', True)
>>> evs == list(TrafficSimulator(d, seed=1).events(
...     [PortProfile("10690001", "verification", rate_per_min=60, signatures=("支付宝",))], 1_731_326_400_000, 60))
True
"""
from __future__ import annotations

import csv
import functools
import hashlib
import heapq
import json
import random
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Iterator, Sequence

KINDS = ("verification", "notification", "marketing", "spam")
_HOUR_MS = 3_600_000
_DAY_MS = 24 * _HOUR_MS

# Verification codes: (template, code length). Placeholders: {sig} signature, {code}, {min} minutes.
VERIFICATION_TEMPLATES = (
    ("【{sig}】您的验证码是{code}，{min}分钟内有效，请勿泄露。", 6),
    ("【{sig}】验证码{code}，用于登录，{min}分钟内有效。如非本人操作，请忽略本短信。", 6),
    ("【{sig}】{code}（动态验证码），请在{min}分钟内完成验证，切勿告知他人。", 6),
    ("【{sig}】您正在进行身份验证，验证码{code}，{min}分钟内有效，工作人员不会向您索取，请勿泄露。", 4),
    ("【{sig}】您的注册验证码为：{code}，有效期{min}分钟，感谢您的使用。", 4),
    ("【{sig}】验证码：{code}。您正在修改登录密码，若非本人操作请立即联系客服。", 6),
    ("验证码{code}，您正在绑定手机号，{min}分钟内有效，请勿转发。【{sig}】", 6),
    ("【{sig}】您的支付验证码为{code}，请在{min}分钟内输入，任何人索要验证码都是诈骗。", 6),
    ("【{sig}】登录验证码{code}，{min}分钟有效。为保障账户安全，请勿将验证码提供给他人。", 6),
    ("{code}是您的{sig}验证码，{min}分钟内有效，请勿泄露给他人。【{sig}】", 6),
    ("【{sig}】您好，您本次操作的短信校验码为{code}，有效时间{min}分钟。", 6),
    ("【{sig}】您的提现验证码为{code}，如非本人操作，请忽略。", 4),
)

# Notifications of our own, besides the real ones from raw_dev.tsv (digits are varied later).
NOTIFICATION_TEMPLATES = (
    "【{sig}】您尾号6621的储蓄卡于11月11日20:15消费支出人民币328.50元，余额4512.37元。",
    "【{sig}】您的快递已到达菜鸟驿站（学府路店），取件码3-2-1108，请于18:00前取件。",
    "【{sig}】您的订单3419823310已发货，运单号SF1302948822011，预计明天送达。",
    "【{sig}】尊敬的客户，您本月账单已出，应还金额1288.00元，最后还款日12月05日。",
    "【{sig}】您户号0031884520的电费余额不足20元，为避免停电请及时缴费。",
    "【{sig}】您预订的11月12日CA1831航班将于08:35起飞，请提前90分钟到达机场办理值机。",
    "【{sig}】您的包裹正在派送中，快递员电话95338，请保持电话畅通。",
    "【{sig}】您尾号2290的信用卡11月11日21:02网上支付人民币59.90元。",
    "【{sig}】您的话费余额为12.36元，本月已用流量3.2GB，剩余6.8GB。",
    "【{sig}】您预约的11月13日10:00就诊已成功，就诊序号18，请携带身份证按时就诊。",
)

MARKETING_TEMPLATES = (
    "【{sig}】双11狂欢开启！全场满300减50，会员再享9折，点击 https://m.{dom}.com/a/{code} 抢购。",
    "【{sig}】亲爱的会员，您有一张20元无门槛优惠券即将到期，快来使用吧。",
    "【{sig}】618年中大促，爆款低至5折，今晚8点准时开抢，详情见APP首页。",
    "【{sig}】感谢您的支持！本周末到店消费满200元即送精美礼品一份，期待您的光临。",
    "【{sig}】新品上市，会员专享8.8折，活动截至11月30日，详询门店。",
    "【{sig}】您的积分1860分将于月底清零，可在积分商城兑换好礼。",
    "【{sig}】年货节来了！坚果礼盒第二件半价，戳 https://{dom}.cn/{code} 查看。",
    "【{sig}】尊敬的会员，生日月专享双倍积分及生日礼券，已放入您的账户。",
)

UNSUBSCRIBE_TEXTS = ("回T退订", "拒收请回复R", "退订回TD", "回复TD退订")

_NOTIFICATION_WORDS = re.compile(r"银行|尾号|账户|快递|包裹|账单|话费|余额|订单|取件|还款|交易|缴费|航班|流量|支出|存入|扣款|派送|签收|到账")
_PROMO_WORDS = re.compile(r"优惠|活动|折|礼|会员|特惠|促销|抢购|新品|大促|秒杀|免费|抽奖|红包")
_EDGE_SIGNATURE = re.compile(r"^\s*[【\[][^】\]]{1,20}[】\]]|[【\[][^】\]]{1,20}[】\]]\s*$")
_UNSUBSCRIBE = re.compile(r"[，,。\s]?(?:回复?\s*[A-Z0-9]{1,4}\s*退订|退订\s*(?:请)?回复?\s*[A-Z0-9]{1,4}|拒收请?回复?\s*[A-Z]{1,2})")
_DIGITS = re.compile(r"\d+")
_MASKED = re.compile(r"(?<![A-Za-z])x+(?![A-Za-z])")

SIGNATURES = {
    "verification": ("支付宝", "京东", "美团", "淘宝", "滴滴出行", "携程旅行", "拼多多", "饿了么", "哔哩哔哩", "微博",
                     "抖音", "网易", "小红书", "招商银行", "高德地图"),
    "notification": ("招商银行", "工商银行", "建设银行", "顺丰速运", "中通快递", "中国移动", "国家电网", "中国国航",
                     "菜鸟裹裹", "平安银行"),
    "marketing": ("京东", "唯品会", "苏宁易购", "天猫", "屈臣氏", "肯德基", "星巴克", "良品铺子", "优衣库", "名创优品"),
    "spam": ("金牌理财", "葡京娱乐", "房产直销", "贷款中心"),
}


@dataclass(frozen=True)
class PortProfile:
    """How one port sends: what kind of traffic, how fast, when, to how many people."""
    port: str
    kind: str                                   # "verification" | "notification" | "marketing" | "spam"
    rate_per_min: float
    sp_id: str = "sp01"
    signatures: tuple[str, ...] = ("京东",)
    recipients: int = 10_000                    # size of this port's recipient pool
    declare_category: bool = True               # put `category` in the event (spam ports lie)
    unsubscribe: bool = True                    # marketing gets 回T退订
    active_hours: tuple[int, int] | None = None  # local hours [start, end) the port sends; start > end wraps midnight
    start_ms: int | None = None
    end_ms: int | None = None
    templates: int | None = None                # use only N distinct templates

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, got {self.kind!r}")
        if self.rate_per_min < 0 or self.recipients < 1:
            raise ValueError("rate_per_min must be >= 0 and recipients >= 1")


@dataclass(frozen=True)
class _Pools:
    spam: tuple[str, ...]
    notification: tuple[str, ...]
    marketing: tuple[str, ...]


def _read_tsv(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        return []
    with path.open(encoding="utf-8", newline="") as f:
        return [(int(row[0]), row[1]) for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                if len(row) >= 2 and row[0] in ("0", "1") and row[1].strip()]


def strip_signature(text: str) -> str:
    """Remove a leading or trailing 【…】 signature so the sending port's own can be put on.

    >>> strip_signature("您尾号7544卡支出400元。【工商银行】"), strip_signature("[招商银行]您好")
    ('您尾号7544卡支出400元。', '您好')
    """
    return _EDGE_SIGNATURE.sub("", _EDGE_SIGNATURE.sub("", text)).strip()


@functools.lru_cache(maxsize=4)
def _load_pools(data_dir: str) -> _Pools:
    root = Path(data_dir)
    raw = _read_tsv(root / "raw_dev.tsv")
    dev = _read_tsv(root / "dev.tsv")
    spam = [t for label, t in raw + dev if label == 1 and 8 <= len(t) <= 300]
    normal_raw = [t for label, t in raw if label == 0 and 8 <= len(t) <= 300]
    notification = [strip_signature(t) for t in normal_raw if _NOTIFICATION_WORDS.search(t) and not _PROMO_WORDS.search(t)]
    marketing = [strip_signature(t) for t in normal_raw if _PROMO_WORDS.search(t) and not _NOTIFICATION_WORDS.search(t)]
    return _Pools(spam=tuple(spam), notification=tuple(t for t in notification if t),
                  marketing=tuple(t for t in marketing if t))


def _mix64(x: int) -> int:
    """splitmix64: a cheap, well-spread 64-bit hash of an integer."""
    x = (x + 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & 0xFFFFFFFFFFFFFFFF
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & 0xFFFFFFFFFFFFFFFF
    return x ^ (x >> 31)


def _stable_int(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


def msisdn(key: int, index: int) -> str:
    """The ``index``-th subscriber of a recipient pool: a mainland mobile number 1[3-9]xxxxxxxxx.

    >>> msisdn(7, 0) == msisdn(7, 0), len(msisdn(7, 0)), msisdn(7, 0)[0], msisdn(7, 0)[1] in "3456789"
    (True, 11, '1', True)
    """
    h = _mix64(key ^ (index * 0x100000001B3))
    return f"1{3 + h % 7}{(h >> 8) % 1_000_000_000:09d}"


def _is_active(ts_ms: int, hours: tuple[int, int] | None, tz_offset_h: int) -> bool:
    if hours is None:
        return True
    start, end = hours
    hour = ((ts_ms // _HOUR_MS) + tz_offset_h) % 24
    return start <= hour < end if start <= end else (hour >= start or hour < end)


def _next_active_ms(ts_ms: int, hours: tuple[int, int], tz_offset_h: int) -> int:
    """The next full local hour at or after ``ts_ms`` at which the port is active."""
    t = (ts_ms // _HOUR_MS + 1) * _HOUR_MS
    for _ in range(25):
        if _is_active(t, hours, tz_offset_h):
            return t
        t += _HOUR_MS
    return t


class _Port:
    """One profile's random stream: arrivals, texts and recipients."""

    def __init__(self, sim: "TrafficSimulator", profile: PortProfile, index: int):
        self.sim = sim
        self.p = profile
        self.index = index
        self.rng = random.Random(_stable_int(sim.seed, index, profile.port, profile.kind))
        self.recipient_key = _stable_int(sim.seed, "recipients", profile.port, profile.kind)
        self.templates = self._template_pool()
        self.n = 0

    def _template_pool(self) -> list:
        kind = self.p.kind
        if kind == "verification":
            pool = list(VERIFICATION_TEMPLATES)
        elif kind == "notification":
            pool = list(NOTIFICATION_TEMPLATES) + list(self.sim.pools.notification)
        elif kind == "marketing":
            pool = list(MARKETING_TEMPLATES) + list(self.sim.pools.marketing)
        else:
            pool = list(self.sim.pools.spam) or ["加微信xxxxxxxx领取红包，日赚xxx元"]
        if self.p.templates is not None:
            pool = self.rng.sample(pool, min(max(1, self.p.templates), len(pool)))
        return pool

    # -- text ------------------------------------------------------------------------------------
    def _digits(self, m: re.Match) -> str:
        run = m.group(0)
        if len(run) <= 2 or (len(run) == 4 and run[:2] in ("19", "20")):   # keep dates, times and years readable
            return run
        if len(run) == 11 and run[0] == "1":                 # phone numbers stay phone-shaped
            return msisdn(self.rng.getrandbits(48), 0)
        first = str(self.rng.randint(1, 9)) if len(run) > 1 else ""
        return first + "".join(str(self.rng.randint(0, 9)) for _ in range(len(run) - len(first)))

    def vary(self, text: str) -> str:
        return _DIGITS.sub(self._digits, text)

    def content(self) -> tuple[str, str | None, str | None]:
        """(content, signature or None, declared category or None)."""
        rng, kind = self.rng, self.p.kind
        sig = rng.choice(self.p.signatures) if self.p.signatures else None
        template = rng.choice(self.templates)
        if kind == "verification":
            text, code_len = template
            sig = sig or "验证"
            content = text.format(sig=sig, code=f"{rng.randrange(10 ** code_len):0{code_len}d}", min=rng.choice((5, 10, 15)))
            category = "verification"
        elif kind in ("notification", "marketing"):
            body = template.format(sig=sig or "", dom="shop", code=f"{rng.getrandbits(24):06x}") if "{sig}" in template \
                else template
            body = self.vary(strip_signature(body))
            if kind == "marketing":               # the profile decides about unsubscribe text, not the source text
                body = _UNSUBSCRIBE.sub("", body)
            if kind == "marketing" and self.p.unsubscribe:
                body = f"{body.rstrip()}{rng.choice(UNSUBSCRIBE_TEXTS)}"
            content = (f"【{sig}】{body}" if rng.random() < 0.7 else f"{body}【{sig}】") if sig else body
            category = kind
        else:
            body = self.vary(_MASKED.sub(lambda m: "1" * len(m.group(0)) if len(m.group(0)) == 11 else "0" * len(m.group(0)),
                                         template))
            if not self.p.signatures or rng.random() < 0.7:   # spam is mostly unsigned
                sig = None
            content = f"【{sig}】{body}" if sig else body
            if self.p.unsubscribe and rng.random() < 0.2:
                content += rng.choice(UNSUBSCRIBE_TEXTS)
            category = rng.choice(("notification", "marketing"))  # spammers declare whatever passes
        return content, sig, (category if self.p.declare_category else None)

    def recipient(self) -> str:
        return msisdn(self.recipient_key, self.rng.randrange(self.p.recipients))

    # -- time ------------------------------------------------------------------------------------
    def arrivals(self, start_ms: int, end_ms: int) -> Iterator[int]:
        """Poisson arrivals at the profile's rate, skipping hours the port is silent (memoryless, so exact)."""
        p = self.p
        lo = max(start_ms, p.start_ms) if p.start_ms is not None else start_ms
        hi = min(end_ms, p.end_ms) if p.end_ms is not None else end_ms
        if p.rate_per_min <= 0:
            return
        rate_per_ms = p.rate_per_min / 60_000
        t = float(lo)
        while True:
            if not _is_active(int(t), p.active_hours, self.sim.tz_offset_h):
                t = float(_next_active_ms(int(t), p.active_hours, self.sim.tz_offset_h))
                if t >= hi:
                    return
                continue
            t += self.rng.expovariate(rate_per_ms)
            if t >= hi:
                return
            if _is_active(int(t), p.active_hours, self.sim.tz_offset_h):
                yield int(t)

    def events(self, start_ms: int, end_ms: int) -> Iterator[tuple[int, int, int, dict]]:
        for ts in self.arrivals(start_ms, end_ms):
            content, sig, category = self.content()
            self.n += 1
            event = {
                "type": "sms", "msg_id": f"sim{self.sim.seed}-{self.index}-{self.p.port}-{self.n}", "ts": ts,
                "port": self.p.port, "recipient": self.recipient(), "content": content, "sp_id": self.p.sp_id,
            }
            if sig:
                event["signature"] = sig
            if category:
                event["category"] = category
            yield ts, self.index, self.n, event


class TrafficSimulator:
    """Outbound SMS traffic for scenario tests, the demo and benchmarks. Deterministic by ``seed``."""

    def __init__(self, data_dir: str | Path, seed: int = 0, *, tz_offset_h: int = 8):
        self.data_dir = Path(data_dir)
        self.seed = seed
        self.tz_offset_h = tz_offset_h        # recipients' local time for active hours (China: +8)
        self.pools = _load_pools(str(self.data_dir.resolve()))
        self._rng = random.Random(_stable_int(seed, "simulator"))

    def events(self, profiles: Sequence[PortProfile], start_ms: int, duration_s: float) -> Iterator[dict]:
        """``sms.outbound`` payloads of every profile, merged in event-time order."""
        end_ms = start_ms + int(duration_s * 1000)
        streams = [_Port(self, p, i).events(start_ms, end_ms) for i, p in enumerate(profiles)]
        for _ts, _i, _n, event in heapq.merge(*streams, key=lambda item: item[:3]):
            yield event

    def optout(self, event: dict, keyword: str = "T") -> dict:
        """The recipient of ``event`` replies ``keyword`` 30 s later (an ``sms.optouts`` payload)."""
        out = {"type": "optout", "ts": int(event["ts"]) + 30_000, "recipient": event["recipient"],
               "port": event["port"], "keyword": keyword}
        if event.get("signature"):
            out["signature"] = event["signature"]
        return out

    def complaint(self, event: dict) -> dict:
        """The recipient of ``event`` reports it to 12321 a minute later (an ``sms.complaints`` payload)."""
        return {"type": "complaint", "ts": int(event["ts"]) + 60_000, "recipient": event["recipient"],
                "port": event["port"], "content": event["content"]}

    def default_profiles(self, n_ports: int = 20) -> list[PortProfile]:
        """A realistic mix: mostly verification and notification volume, daytime marketing, a few spam ports,
        and one notification port that starts blasting unsigned spam at night (00:00-05:00 local).

        >>> import tempfile
        >>> ps = TrafficSimulator(tempfile.mkdtemp()).default_profiles(20)
        >>> len({p.port for p in ps}), sorted({p.kind for p in ps})
        (20, ['marketing', 'notification', 'spam', 'verification'])
        """
        rng = random.Random(_stable_int(self.seed, "profiles", n_ports))
        n_ports = max(4, n_ports)
        n_spam = max(1, n_ports // 10)
        n_marketing = max(1, n_ports // 5)
        n_notification = max(1, (n_ports - n_spam - n_marketing - 1) // 2)
        n_verification = n_ports - n_spam - n_marketing - n_notification - 1
        ports = iter(f"1069{rng.randrange(10 ** 8):08d}" for _ in range(n_ports * 4))
        seen: set[str] = set()

        def port() -> str:
            for p in ports:
                if p not in seen:
                    seen.add(p)
                    return p
            raise RuntimeError("port space exhausted")

        def sigs(kind: str, k: int) -> tuple[str, ...]:
            return tuple(rng.sample(SIGNATURES[kind], k))

        profiles: list[PortProfile] = []
        # Legitimate ports reach each of their subscribers about once a day (one_a_day): a port sending 900
        # codes a minute serves more than a million people. Smaller pools would have the simulated day send
        # one number dozens of codes, which is what SMS bombing looks like (the code_flood signal). The port
        # is drawn before the rate, as it was when the pools were fixed sizes: the same seed, the same ports.
        for i in range(n_verification):
            name, rate = port(), rng.choice((120, 240, 480, 900))
            profiles.append(PortProfile(name, "verification", rate_per_min=rate, sp_id=f"sp{1 + i % 4:02d}",
                                        signatures=sigs("verification", 1), recipients=one_a_day(rate)))
        for i in range(n_notification):
            name, rate = port(), rng.choice((60, 120, 300))
            profiles.append(PortProfile(name, "notification", rate_per_min=rate, sp_id=f"sp{1 + i % 4:02d}",
                                        signatures=sigs("notification", 1), recipients=one_a_day(rate)))
        daytime = (8, 21)
        for i in range(n_marketing):
            name, rate = port(), rng.choice((30, 60, 120))
            profiles.append(PortProfile(name, "marketing", rate_per_min=rate, sp_id=f"sp{5 + i % 2:02d}",
                                        signatures=sigs("marketing", 1), recipients=one_a_day(rate, daytime),
                                        active_hours=daytime))
        for i in range(n_spam):
            profiles.append(PortProfile(port(), "spam", rate_per_min=rng.choice((60, 120)), sp_id="sp09",
                                        signatures=(), recipients=1_000_000, unsubscribe=False, templates=12))
        # A resold port: quiet notifications by day, unsigned spam blasts to fresh numbers at night.
        blaster = port()
        profiles.append(PortProfile(blaster, "notification", rate_per_min=20, sp_id="sp07",
                                    signatures=sigs("notification", 1), recipients=one_a_day(20)))
        profiles.append(PortProfile(blaster, "spam", rate_per_min=600, sp_id="sp07", signatures=(),
                                    recipients=2_000_000, unsubscribe=False, active_hours=(0, 5), templates=6))
        return profiles

    def malformed(self, n: int, *, ts_ms: int = 1_731_326_400_000) -> list[bytes]:
        """``n`` events that break the contract in different ways (cycled), several with raw MSISDNs inside.

        ``ts_ms``: the event time of the ones whose timestamp is fine (so a live worker's clock bounds
        do not reject them before their real fault is found).
        """
        rng = self._rng
        out: list[bytes] = []
        for i in range(n):
            phone = msisdn(_stable_int(self.seed, "malformed"), i)
            good = {"msg_id": f"bad{self.seed}-{i}", "ts": ts_ms + i, "port": "10690001",
                    "recipient": phone, "content": "【京东】您的订单已发货", "sp_id": "sp01"}
            kind = i % 16
            if kind == 0:
                raw = json.dumps(good, ensure_ascii=False).encode()[: rng.randint(5, 40)]      # truncated JSON
            elif kind == 1:
                raw = json.dumps({k: v for k, v in good.items() if k != "recipient"}).encode()
            elif kind == 2:
                raw = json.dumps({**good, "ts": True}).encode()
            elif kind == 3:
                raw = json.dumps({**good, "port": 10690001}).encode()
            elif kind == 4:
                raw = json.dumps({**good, "content": ["not", "a", "string"]}).encode()
            elif kind == 5:
                raw = json.dumps(good, ensure_ascii=False).encode().replace("京东".encode(), b"\xff\xfe\xfd")
            elif kind == 6:
                raw = json.dumps({**good, "content": "垃" * 350_000}, ensure_ascii=False).encode()   # > 1 MB
            elif kind == 7:
                raw = b""
            elif kind == 8:
                raw = json.dumps([good]).encode()
            elif kind == 9:
                raw = json.dumps({**good, "v": 2}).encode()
            elif kind == 10:
                raw = json.dumps({**good, "ts": 1_731_326_400}).encode()                         # seconds, not ms
            elif kind == 11:
                raw = json.dumps({**good, "category": "lottery"}).encode()
            elif kind == 12:
                raw = json.dumps({**good, "content": "   "}).encode()
            elif kind == 13:
                raw = json.dumps({**good, "port": "port-abc"}).encode()
            elif kind == 14:
                raw = b"[" * 5_000                                                             # too deep
            else:
                raw = json.dumps({**good, "recipient": "call me maybe", "msg_id": "has space"}).encode()
            out.append(raw)
        return out


def one_a_day(rate_per_min: float, active_hours: tuple[int, int] | None = None) -> int:
    """A recipient pool in which each subscriber gets about one message a day from a port with this rate.

    >>> one_a_day(900), one_a_day(120, (8, 21))
    (1296000, 93600)
    """
    start, end = active_hours or (0, 24)
    hours = (end - start) % 24 or 24
    return max(1, round(rate_per_min * 60 * hours))


def scaled(profiles: Sequence[PortProfile], total_per_s: float, at_ms: int | None = None,
           tz_offset_h: int = 8) -> list[PortProfile]:
    """The same profiles with their rates scaled so all together send ``total_per_s`` messages a second
    (at event time ``at_ms``, counting only the profiles active then; all of them without it).

    Recipient pools scale with the rates, so each subscriber gets as many messages a day as before: a
    benchmark at 60 times the traffic is 60 times the people, not one number getting 60 times the codes.

    >>> [p.rate_per_min for p in scaled([PortProfile("1", "spam", 10), PortProfile("2", "spam", 30)], 2)]
    [30.0, 90.0]
    >>> night = PortProfile("2", "spam", 30, active_hours=(0, 5))
    >>> [p.rate_per_min for p in scaled([PortProfile("1", "spam", 10), night], 2, at_ms=1_731_326_400_000)]
    [120.0, 360.0]
    """
    total = sum(p.rate_per_min for p in profiles
                if at_ms is None or (_is_active(at_ms, p.active_hours, tz_offset_h)
                                     and (p.start_ms or at_ms) <= at_ms < (p.end_ms or at_ms + 1))) / 60
    factor = total_per_s / total if total else 0.0
    return [replace(p, rate_per_min=p.rate_per_min * factor, recipients=max(1, round(p.recipients * factor)))
            for p in profiles]


def resolve_data_dir(value: str | Path) -> Path:
    """``SMSGUARD_DATA_DIR``: a relative path is tried against the working directory, then the repository."""
    path = Path(value)
    if path.is_absolute() or path.exists():
        return path
    return Path(__file__).resolve().parents[1] / path


def write_jsonl(events, path: str | Path, *, extra: Iterable[bytes] = ()) -> int:
    """Write events as JSON lines (UTF-8), then ``extra`` raw lines as they are; returns how many lines.

    ``extra`` is for :meth:`TrafficSimulator.malformed`: bytes, not always UTF-8, never holding a newline.
    """
    n = 0
    with open(path, "wb") as f:
        for event in events:
            f.write(json.dumps(event, ensure_ascii=False).encode() + b"\n")
            n += 1
        for raw in extra:
            f.write(raw + b"\n")
            n += 1
    return n


async def publish(bootstrap: str, topic: str, events, *, start_ms: int | None = None, extra=(),
                  max_request_size: int = 4 * 1024 * 1024) -> int:
    """Produce ``events`` (dicts, keyed by port) and then ``extra`` raw bytes to ``topic``; returns how many.

    With ``start_ms`` each event is held until its event time has come, counted from now.
    """
    import asyncio
    import time

    from aiokafka import AIOKafkaProducer

    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, max_request_size=max_request_size, linger_ms=5)
    await producer.start()
    n = 0
    began = time.monotonic()
    try:
        for event in events:
            if start_ms is not None:
                wait = (event["ts"] - start_ms) / 1000 - (time.monotonic() - began)
                if wait > 0:
                    await asyncio.sleep(wait)
            await producer.send(topic, json.dumps(event, ensure_ascii=False).encode(), key=event["port"].encode())
            n += 1
        for raw in extra:
            await producer.send(topic, raw)
            n += 1
        await producer.flush()
    finally:
        await producer.stop()
    return n


__all__ = ["PortProfile", "TrafficSimulator", "KINDS", "msisdn", "scaled", "strip_signature", "write_jsonl", "publish", "resolve_data_dir"]
