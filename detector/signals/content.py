"""Signals about the message text itself: the classifier, unsubscribe text, quiet hours, compliance.

>>> from detector.events import SmsEvent
>>> from detector.signals.base import MessageContext
>>> ev = SmsEvent("m", 0, "1069", "r", "【店】大促", signature="店", category="marketing")
>>> night = MessageContext(ev, 0.97, True, True, False, 23, "k", "t", "c")
>>> QuietHours().evaluate(night), MissingUnsubscribe().evaluate(night).value
(Fired(value=1.0, detail='marketing at 23:00 local'), 1.0)
>>> ContentSpam().evaluate(night).value
0.97
"""
from __future__ import annotations

import re

from detector.signals.base import Fired, MessageContext, Signal

# Job / task scams (刷单返利, 兼职日结) ask the reader to move to a private chat. Read on the normalised text
# (detector.textnorm.normalize: lower case, de-obfuscated, WeChat / QQ ids typed as <wx> / <qq>). The
# classifier misses the short ones (neither data file has many: docs/model.md, "Known blind spot").
_PRIVATE_CONTACT = re.compile(r"(?:加|\+)\s*(?:个|我)?\s*(?:微信|微|v|vx|wx|威信|薇信|维信|徽信|卫星|wei信|weixin|wechat|"
                              r"q|qq|扣扣|企鹅|好友)|<wx>|<qq>|私聊|私信|(?<![a-z])v\s*[:：]\s*[a-z0-9_]{2,}")
_JOB_LURE = re.compile(r"日赚|日结|日入|月入|兼职|刷单|返利|返现|佣金|垫付|做单|点赞|轻松赚|在家赚|手机赚|赚钱|高薪|躺赚")
# anti-fraud notices from banks, platforms and the police name the same words
_WARNING = re.compile(r"诈骗|警惕|谨防|提防|骗局|反诈|公安|报警|冒充")


def scam_lure(body: str, rule_text: str = "") -> str | None:
    """The lure in a normalised text: a private contact with a job / easy-money offer, unless it warns of them.

    ``rule_text``, when given, is read too: the engine's reading of the same message with every symbol between
    two Chinese characters dropped (detector.engine._rule_text), where the normaliser leaves some (加、微、信, 刷̲单).

    >>> scam_lure("加微信领红包日赚三百刷单兼职")
    '加微信 + 日赚'
    >>> scam_lure("招聘兼职打字员,日结工资,v:xk0")      # a WeChat id after "v:"
    'v:xk0 + 兼职'
    >>> scam_lure("警惕刷单诈骗,加微信返利都是骗局") is None, scam_lure("兼职招聘会明天9点在体育馆举行") is None
    (True, True)
    """
    text = f"{body}\n{rule_text.lower()}" if rule_text else body
    if _WARNING.search(text):
        return None
    contact = _PRIVATE_CONTACT.search(text)
    if contact is None:
        return None
    offer = _JOB_LURE.search(text)
    return None if offer is None else f"{contact.group()} + {offer.group()}"


class ContentSpam(Signal):
    """The classifier says spam (value = its probability); detail names the tokens that pushed it."""
    name = "content_spam"
    only_for = "spam"

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if not ctx.is_spam:
            return None
        detail = ", ".join(f"{tok}:{w:+.2f}" for tok, w in ctx.explanation[:5]) or None
        return Fired(ctx.score, detail)


class ScamLure(Signal):
    """A private-chat contact (加微信, QQ, a WeChat id) with a job or easy-money offer (刷单, 日结, 返利): a task scam."""
    name = "scam_lure"

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        return Fired(1.0, ctx.lure) if ctx.lure else None


class MissingUnsubscribe(Signal):
    """Marketing without a way to refuse (回T退订, 拒收请回复R …): the rules require one."""
    name = "missing_unsubscribe"
    only_for = "marketing"

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if ctx.marketing and not ctx.has_unsubscribe:
            return Fired(1.0)
        return None


class QuietHours(Signal):
    """Marketing sent in the recipient's quiet hours (default 21:00–08:00 local)."""
    name = "quiet_hours"
    only_for = "marketing"
    defaults = {"start_hour": 21, "end_hour": 8}

    def in_quiet_hours(self, hour: int) -> bool:
        start, end = self.params["start_hour"], self.params["end_hour"]
        return (hour >= start or hour < end) if start > end else start <= hour < end

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        if ctx.marketing and self.in_quiet_hours(ctx.local_hour):
            return Fired(1.0, f"marketing at {ctx.local_hour:02d}:00 local")
        return None


class CompliantMarketing(Signal):
    """Marketing that names its sender and offers unsubscribe (a negative weight: it lowers the risk)."""
    name = "compliant_marketing"
    only_for = "marketing"

    def evaluate(self, ctx: MessageContext) -> Fired | None:
        return Fired(1.0) if ctx.compliant_marketing else None
