"""A spammer's cheap ways past smsguard (the red-team pass), each pinned where the engine now catches it.

The model is left out (NullScorer: every message scores 0) wherever the rule under test is what must catch the
message: the classifier's own blind spots to text tricks are reported for a retrain, not fixed here.
"""
from __future__ import annotations

import asyncio

import pytest

from detector.engine import Engine, NullScorer
from detector.events import EventParser
from detector.privacy import RecipientHasher
from detector.settings import Settings
from detector.state.memory import MemoryStore

T0 = 1_731_290_400_000          # 2024-11-11 10:00 China time
NIGHT = T0 + 13 * 3_600_000     # 23:00 China time
parser = EventParser(RecipientHasher("test-secret-0123456789"))


def decide(events, scorer=None):
    engine = Engine(Settings.from_env({}), MemoryStore(), scorer or NullScorer())
    return asyncio.run(engine.process(events)).decisions


# Declared notifications that sell hard, their selling words hidden from NFKC-only rules: spaces or symbols between
# the characters (textnorm's separators and others), traditional characters, combining marks.
DISGUISED_NOTICES = ["【优品汇】会员日，全场商品五 折，限 时 抢 购", "【优品汇】会员日，全场商品五〡折，限〡时〡抢〡购",
                     "【优品汇】會員日，新品限時搶購，滿100減50", "【优品汇】周末清倉，全場包郵",
                     "【优品汇】会员日大̶促̶，全场包̶邮̶", "【优品汇】会员日，全场秒♥杀，包♥邮"]


@pytest.mark.parametrize("text", DISGUISED_NOTICES)
def test_a_notice_that_hides_its_selling_words_is_still_marketing_to_an_opted_out_recipient_at_night(text):
    """Red team: declared `notification`, the hard-selling cue written so that NFKC alone does not read it, sent at
    night to a recipient who opted out of the signature. Read like the plain wording, it is marketing: blocked for
    the opt-out, and in quiet hours."""
    optout = parser.parse_optout({"ts": NIGHT - 60_000, "recipient": "13800000001", "port": "10690001",
                                  "signature": "优品汇"})
    sms = parser.parse_sms({"msg_id": "n1", "ts": NIGHT, "port": "10690001", "recipient": "13800000001",
                            "content": text, "category": "notification"})
    (decision,) = decide([optout, sms])
    assert decision.action == "block", decision
    assert {"opted_out", "quiet_hours"} <= {r.signal for r in decision.reasons}, decision


def test_a_plain_notice_stays_a_notice_however_it_is_spaced():
    """The other side: the rule text joins characters, so a notice's words must not turn into selling ones."""
    notices = ["【京东】您的订单 已发货，运单号SF123", "【順豐速運】您的快件已簽收，如有疑問請致電客服",
               "【某银行】您尾号1234的账户 消费 5 元", "【某大学】考试成绩按笔试占50%、面试占50%折算"]
    events = [parser.parse_sms({"msg_id": f"n{i}", "ts": NIGHT + i, "port": "10690001", "recipient": "13800000001",
                                "content": text, "category": "notification"}) for i, text in enumerate(notices)]
    for decision in decide(events):
        assert decision.action == "allow" and not decision.reasons, decision
