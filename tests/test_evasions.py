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
from test_engine import CodeTemplateScorer, FixedScorer

T0 = 1_731_290_400_000          # 2024-11-11 10:00 China time
NIGHT = T0 + 13 * 3_600_000     # 23:00 China time
parser = EventParser(RecipientHasher("test-secret-0123456789"))


def decide(events, scorer=None, store=None):
    engine = Engine(Settings.from_env({}), store or MemoryStore(), scorer or NullScorer())
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


# Task-scam lures (刷单, 日赚) with the private contact or the offer disguised: symbols textnorm leaves between the
# characters (、 〡 丨 ㆍ ┆ （）), combining marks, a space after 加, and other spellings of WeChat.
DISGUISED_LURES = ["加、微、信领红包日赚三百刷单兼职", "加〡微〡信领红包日赚三百刷单兼职", "加丨微丨信领红包日赚三百兼职",
                   "加ㆍ微ㆍ信领红包日赚三百兼职", "加（微）信领红包日赚三百兼职", "加̶微̶信̶领红包日赚三百兼职",
                   "刷̲单̲兼̲职̲，加微信abc12345", "刷┆单┆兼┆职，加微信abc12345", "加 V 领红包 日 赚 三 百",
                   "加徽信领红包日赚三百", "加卫星领红包日赚三百", "加wei信领红包日赚三百", "+微领红包日赚三百",
                   "jia wei xin ling hong bao, ri zhuan san bai", "JIA V ling qian, shua dan jian zhi"]


@pytest.mark.parametrize("text", DISGUISED_LURES)
def test_a_task_scam_lure_with_its_words_disguised_is_flagged(text):
    """Red team: each of these scores below the model's threshold (0.01-0.27 with zh-linear-v4, 0.01-0.22 with v5:
    the data files hold few such lures, disguised or not), so only scam_lure stands between it and the recipient;
    read on the normalised text alone it missed them."""
    sms = parser.parse_sms({"msg_id": "l1", "ts": T0, "port": "10690001", "recipient": "13800000001",
                            "content": text})
    (decision,) = decide([sms])
    assert decision.action == "flag", decision
    assert [r.signal for r in decision.reasons if r.signal == "scam_lure"] == ["scam_lure"], decision


def test_warnings_about_disguised_lures_stay_allowed():
    warnings = ["【某银行】警惕刷单返利诈骗：加、微、信垫付的都是骗子", "【反诈中心】日赚三百？加 V 刷单是骗局"]
    events = [parser.parse_sms({"msg_id": f"w{i}", "ts": T0 + i, "port": "10690001", "recipient": "13800000001",
                                "content": text}) for i, text in enumerate(warnings)]
    for decision in decide(events):
        assert decision.action == "allow" and not decision.reasons, decision


def drip(port, per_10min, minutes, text_of, category_of=lambda k: None):
    """``per_10min`` messages every 10 minutes, evenly spaced, each to a fresh recipient."""
    gap = 600_000 // per_10min
    return [parser.parse_sms({"msg_id": f"{port}-{k}", "ts": T0 + k * gap, "port": port,
                              "recipient": f"139{k:08d}", "content": text_of(k), "category": category_of(k)})
            for k in range(minutes * 60_000 // gap)]


def port_states(events, scorer, rates=None):
    """Each port's (state, port-level reasons) in order; ``rates`` gets their rate_limit_per_min."""
    engine = Engine(Settings.from_env({}), MemoryStore(), scorer)
    states, rates = {}, {} if rates is None else rates
    for i in range(0, len(events), 50):
        for action in asyncio.run(engine.process(events[i:i + 50])).port_actions:
            states.setdefault(action.port, []).append((action.state, [r.signal for r in action.reasons]))
            rates.setdefault(action.port, []).append(action.rate_limit_per_min)
    return states


def test_a_port_dripping_spam_under_the_ten_minute_volume_floor_is_judged_on_its_hour():
    """Red team: spam_share needs 20 messages in 10 minutes; a port sending 19 (2,700 a day), all of them loan spam,
    was never judged and stayed normal for 6 hours of replay. Judged on its last hour it is throttled; a quiet port
    whose spam-scored share is what the classifier's false positives make (1 in 10) is not touched, nor is one
    sending fewer than 20 messages in the hour."""
    spam = drip("10690001", 19, 120, lambda k: f"无抵押贷款当天放款，加微信dk{k:04d}")     # FixedScorer: spam
    noisy = drip("10690002", 19, 120, lambda k: "加微信领取" if k % 10 == 0 else f"【京东】您的订单{k}已发货")
    rare = drip("10690003", 3, 120, lambda k: "无抵押贷款当天放款，加微信")      # 18 an hour
    rates = {}
    states = port_states(sorted(spam + noisy + rare, key=lambda e: e.ts_ms), FixedScorer(), rates)
    assert states.get("10690001") and states["10690001"][0] == ("throttle", ["spam_share"]), states
    # and the throttle slows it (case 14): half its ~1.9 a minute, where the fixed 60 a minute slowed nothing
    assert rates["10690001"][0] == 1, rates
    assert "10690002" not in states and "10690003" not in states, states


@pytest.mark.parametrize("text", [
    "🎰🎰🎰澳门🎲线上🎲娱乐🎰注册送💰88💰彩金👉vns88点com",          # the model scored it 0.29: allowed
    "【鑫融贷】无抵押信用贷款，当天放款，最高50万，dk88点com，回T退订",
    "无抵押信用贷款，当天放款，详见 dk88【.】com",
    "无抵押信用贷款，当天放款，联系王经理⑴⑶⑻⑴⑵⑶⑷⑸⑹⑺⑻",
    "无抵押信用贷款，当天放款，联系王经理❶❸❽❶❷❸❹❺❻❼❽",
])
def test_a_link_or_number_written_to_slip_past_filters_is_flagged_by_itself(text):
    """Red team, text tricks (case 13): links and numbers disguised from the normaliser (vns88点com, ⑴⑶⑻…) also
    hide them from the model's <url> / <phone> features. Disguising them is the tell: disguised_contact flags."""
    [d] = decide([parser.parse_sms({"msg_id": "m1", "ts": T0, "port": "10690001", "recipient": "13800000001",
                                    "content": text})])
    assert d.action in ("flag", "block") and "disguised_contact" in {r.signal for r in d.reasons}, d


def test_links_and_numbers_written_plainly_are_no_disguise():
    texts = ["【京东】您的订单已发货，详见 www.jd.com 或拨打950618", "【12306】您的车票已出票，详见12306.cn",
             "【招商银行】您尾号1234的账户于11月11日消费100元", "会议室在三楼。COM项目组请准时参加"]
    events = [parser.parse_sms({"msg_id": f"m{i}", "ts": T0, "port": "10690001", "recipient": f"1380000000{i}",
                                "content": t}) for i, t in enumerate(texts)]
    assert all("disguised_contact" not in {r.signal for r in d.reasons} for d in decide(events))


# The red team's text tricks against the classifier (case 13, s15), each around spam the model catches written
# plainly. zh-linear-v4 scored them 0.01-0.68 (threshold 0.406); the promoted model reads them through textnorm
# version 2 (docs/model.md, "v5").
MODEL_TRICKS = [
    "澳门威尼斯人线上娱乐，注册送88元彩金，网址 vns88点com",
    "澳门威尼斯人线上娱乐，注册送88元彩金，网址 vns88【.】com",
    "澳门威尼斯人线上娱乐，注册送88元彩金，网址 vns88。com",
    "🎰🎰🎰澳门🎲线上🎲娱乐🎰注册送💰88💰彩金👉vns88点com",
    "无抵押信用贷款，当天放款，详询⑴⑶⑻⑴⑵⑶⑷⑸⑹⑺⑻王经理",
    "【鑫融贷】无抵押信用贷款，当天放款，最高50万，详询13812345678王经理，回T退订",
    "【鑫融贷】无抵押信用贷款，当天放款，最高50万，dk88点com，回T退订",
    "【鑫融贷】无〡抵〡押信用贷款，当天放款，最高50万，详询13812345678王经理，回T退订",
]


@pytest.mark.parametrize("text", MODEL_TRICKS)
def test_the_promoted_model_reads_spam_through_the_red_teams_text_tricks(text):
    from detector.registry import Registry
    model = Registry().load_promoted()
    [score] = model.score([text])
    assert score >= model.threshold, (model.name, score)


def test_the_model_reads_spam_wrapped_as_compliant_marketing_as_spam():
    """A signature and 回T退订 around a loan ad pulled zh-linear-v4's score from 0.99 to 0.49: the training data's
    normal class carries the unsubscribe line far more often than its spam. Version 2 leaves it to the rules."""
    from detector.registry import Registry
    model = Registry().load_promoted()
    ad = "无抵押信用贷款，当天放款，最高50万，详询13812345678王经理"
    # the first is stripped by textnorm version 2 (v5); the others are real senders' wordings it does not strip,
    # which v5 still read as "normal" (0.70-0.85) and v6 was trained with on spam too (docs/model.md, "v6")
    lines = ["回T退订", "拒收所有短信直接回复TD", '请发送"TDZJ"办理退订', "如需退订该提醒服务，请发送QXTCMX至10086"]
    plain, *wrapped = model.score([ad] + [f"【鑫融贷】{ad}，{line}" for line in lines])
    for line, score in zip(lines, wrapped):
        assert score >= model.threshold and plain - score < 0.05, (model.name, line, plain, score)


class LoanScorer:
    """A model that scores the red team's loan ad spam but below 0.75 (zh-linear-v4 gave s12's ads 0.60-0.98)."""
    version = "loan@1"
    threshold = 0.406

    def score(self, texts):
        return [0.6 for _ in texts]

    def explain_many(self, texts, k=5):
        return [[("贷款", 1.0)] for _ in texts]


LOAN_AD = "【鑫融贷】无抵押信用贷款，当天放款，最高50万，详询13812345678王经理，"
# s12's tails: five that only pretend to be a way to refuse, and real ones that must still count
FAKE_TAILS = {"退订请联系客服": 0.5, "本短信无需退订": 0.5, "退订回复T(1元/条)": 0.5, "退订请加微信dk888abc": 1.0,
              "退订请致电客服": 0.5}
REAL_TAILS = ["拒收请回复R", "回T退订", "退订回T", "回复TD退订", "退订请回复TD", "回TD退"]


def sms_with_tails(tails):
    return [parser.parse_sms({"msg_id": f"u{i}", "ts": T0 + i * 1000, "port": "10691012",
                              "recipient": f"1390000{i:04d}", "content": LOAN_AD + tail, "category": "marketing",
                              "sp_id": "sp-x"}) for i, tail in enumerate(tails)]


def test_a_fake_unsubscribe_line_earns_no_compliance_and_gets_the_ad_flagged():
    """Red team case 11 (s12): 【签名】 + a line that talks of unsubscribing but gives no free self-service way to
    (退订请联系客服, 无需退订, a charge, a WeChat to add) counted as unsubscribe text: compliant_marketing took 1 off the
    risk and the loan ad (model 0.60) was allowed. Now it is marketing without an unsubscribe method, the line is named
    (fake_unsubscribe), and the ad is flagged; the same ad with a real reply keyword is still allowed."""
    fakes = decide(sms_with_tails(FAKE_TAILS), LoanScorer())
    for decision, (tail, value) in zip(fakes, FAKE_TAILS.items()):
        signals = {r.signal: r.value for r in decision.reasons}
        assert decision.action == "flag" and "compliant_marketing" not in signals, (tail, decision)
        assert signals.get("missing_unsubscribe") == 1.0 and signals.get("fake_unsubscribe") == value, (tail, decision)
    for decision in decide(sms_with_tails(REAL_TAILS), LoanScorer()):
        signals = {r.signal for r in decision.reasons}
        assert decision.action == "allow" and "compliant_marketing" in signals, decision
        assert not signals & {"missing_unsubscribe", "fake_unsubscribe"}, decision


def test_an_unsubscribe_line_through_a_private_chat_is_flagged_by_itself():
    """退订请加微信 sends the recipient into a private chat with the sender: a lure. Flagged whatever the model says
    (NullScorer); the other fake lines only lose the compliance credit."""
    decisions = decide(sms_with_tails(FAKE_TAILS))
    assert [d.action for d in decisions] == ["flag" if v == 1.0 else "allow" for v in FAKE_TAILS.values()], decisions


@pytest.mark.parametrize("text", ["【中国移动】尊敬的客户，您订购的5元流量包已生效，该业务当月不可退订。",
                                  "【某酒店】您的预付订单已确认，该房型不可退订，入住时请出示身份证。"])
def test_a_notice_that_a_service_cannot_be_cancelled_is_no_fake_unsubscribe_line(text):
    """不可退订 here says a service or a booking cannot be cancelled: the unsubscribe rule never read it as a line
    ((?<!可)退订), so it does not pretend to be one either, and an undeclared notice stays a notice (at night too)."""
    sms = parser.parse_sms({"msg_id": "n1", "ts": NIGHT, "port": "10690001", "recipient": "13800000001",
                            "content": text})
    (decision,) = decide([sms])
    assert decision.action == "allow" and not decision.reasons, decision

def to_one_number(texts, port_of=lambda i: "10691013", category="marketing", every_ms=60_000):
    """One message a minute (``every_ms``) to the same recipient."""
    return [parser.parse_sms({"msg_id": f"r{i}", "ts": T0 + i * every_ms, "port": port_of(i), "recipient": "13900000999",
                              "content": text, "sp_id": "sp-x", **({"category": category} if category else {})})
            for i, text in enumerate(texts)]


def signals_of(decision):
    return {r.signal: r for r in decision.reasons}


def test_a_port_rotating_signatures_to_one_number_is_capped_per_port():
    """Red team case 12 (s13): 60 compliant-looking ads a day to one number, the signature rotated over 6 (10 each:
    recipient_frequency's per-signature cap of 50 never fires) and one character changed per message (identical_content
    never fires) were all allowed. Counted per (recipient, port) under any signature, the 11th ad starts
    marketing_frequency and from the 50th (Huawei's daily cap) it flags; the same 60 over 6 ports is 10 a port, left
    alone."""
    texts = [f"【店{i % 6}】会员专享福利，全场低至5折{'!' * (i % 7)}，回T退订" for i in range(60)]
    decisions = decide(to_one_number(texts))
    assert [d.action for d in decisions] == ["allow"] * 49 + ["flag"] * 11, [(d.action, d.risk) for d in decisions]
    assert not any("marketing_frequency" in signals_of(d) for d in decisions[:10])
    assert all("marketing_frequency" in signals_of(d) for d in decisions[10:])
    last = signals_of(decisions[-1])["marketing_frequency"]
    assert last.value == 1.0 and last.detail.startswith("60 marketing messages through port 10691013"), last
    assert not any("recipient_frequency" in signals_of(d) or "identical_content" in signals_of(d) for d in decisions)
    spread = decide(to_one_number(texts, port_of=lambda i: f"1069101{i % 6}"))
    assert all(d.action == "allow" and "marketing_frequency" not in signals_of(d) for d in spread)


@pytest.mark.parametrize("category,text", [
    ("verification", "【站点{s}】您的验证码是{c}，5分钟内有效，请勿泄露。"),
    (None, "【站点{s}】{c}（动态密码），用于登录，请勿告诉他人。"),
    ("notification", "【银行{s}】您尾号1234的账户于11月11日支出{c}元"),
])
def test_codes_and_notices_to_one_number_are_not_capped_per_port(category, text):
    """A user retrying a login gets code after code, and a busy account one alert per payment: through one port, under
    6 signatures, 60 a day. Codes are code_flood's (it fires past 10, as before), notices only recipient_frequency's
    per sender: marketing_frequency counts neither."""
    texts = [text.format(s=i % 6, c=100000 + i * 7919 % 800000) for i in range(60)]
    decisions = decide(to_one_number(texts, category=category))
    assert not any("marketing_frequency" in signals_of(d) for d in decisions), decisions[-1]
    if category == "notification":
        assert all(d.action == "allow" and not d.reasons for d in decisions), decisions[-1]
    else:
        assert "code_flood" in signals_of(decisions[-1])


MERCHANTS = [f"商户{i:02d}" for i in range(60)]


def registered(signatures, port="10691013"):
    """An in-process store whose signature registry gives ``port`` these signatures (None: no entry)."""
    store = MemoryStore()
    if signatures is not None:
        asyncio.run(store.register_signatures(port, signatures))
    return store


def one_ad_per_merchant(merchants=MERCHANTS):
    """One ad from each merchant to one number, one every 10 minutes from 10:00 (6 signatures an hour: under
    port_signatures' 10, not a resold port's traffic)."""
    return to_one_number([f"【{m}】会员专享福利，全场低至5折，回T退订" for m in merchants], every_ms=600_000)


def test_a_platform_ports_registered_merchants_are_not_capped_per_port():
    """Review of red team case 12: on a shared platform port many merchants each send one ad a day, and the
    platforms' daily caps are per customer account, not per port. 60 merchants sending one number one compliant ad
    each through one port were 49 allowed and 11 flagged by marketing_frequency, which from the 11th on added up to
    +2.9 risk to each (enough, with a spam score, to flag a legitimate merchant). Registered to the port (签名报备),
    they are not counted per port: none is flagged, and recipient_frequency still caps each one."""
    decisions = decide(one_ad_per_merchant(), store=registered(MERCHANTS))
    assert all(d.action == "allow" and set(signals_of(d)) == {"compliant_marketing"} for d in decisions), \
        [(d.action, d.reasons) for d in decisions]
    one_merchant = decide(to_one_number([f"【商户00】第{k}期会员福利，全场5折，回T退订" for k in range(51)]),
                          store=registered(MERCHANTS))
    assert ["recipient_frequency" in signals_of(d) for d in one_merchant] == [False] * 50 + [True]
    assert not any("marketing_frequency" in signals_of(d) for d in one_merchant)


@pytest.mark.parametrize("registry", [None, ["某平台"]], ids=["no registry entry", "merchants not registered"])
def test_the_same_ads_under_signatures_not_registered_to_the_port_are_capped_as_before(registry):
    """The same 60 ads on a port with no registry entry, or whose entry names none of the merchants (each ad then
    also fires unregistered_signature): counted per port as before, marketing_frequency from the 11th, and from the
    50th it flags on its own."""
    decisions = decide(one_ad_per_merchant(), store=registered(registry))
    assert not any("marketing_frequency" in signals_of(d) for d in decisions[:10])
    assert all("marketing_frequency" in signals_of(d) for d in decisions[10:])
    last = signals_of(decisions[-1])["marketing_frequency"]
    assert last.value == 1.0 and last.detail.startswith("60 marketing messages through port 10691013"), last
    if registry is None:
        assert [d.action for d in decisions] == ["allow"] * 49 + ["flag"] * 11, [(d.action, d.risk) for d in decisions]
        assert "any signature" in last.detail
    else:
        assert "unregistered signatures" in last.detail


def test_a_platform_port_counts_only_its_unregistered_and_unsigned_marketing_per_port():
    """30 merchants registered to the port, 30 not, and unsigned ads, taking turns: 90 ads to one number. Only the
    unregistered merchants' and the unsigned ads are counted per port (60): marketing_frequency fires from the 11th
    of them on, never on a registered merchant's ad."""
    def text(k):
        if k % 3 == 2:
            return f"会员专享福利第{k}期，全场低至5折，回T退订"
        return f"【{MERCHANTS[k // 3 + 30 * (k % 3)]}】会员专享福利，全场低至5折，回T退订"
    decisions = decide(to_one_number([text(k) for k in range(90)]), store=registered(MERCHANTS[:30]))
    registered_ads = [d for k, d in enumerate(decisions) if k % 3 == 0]
    counted = [d for k, d in enumerate(decisions) if k % 3]
    assert not any("marketing_frequency" in signals_of(d) for d in registered_ads)
    assert [("marketing_frequency" in signals_of(d)) for d in counted] == [False] * 10 + [True] * 50
    last = signals_of(counted[-1])["marketing_frequency"]
    assert last.detail.startswith("60 marketing messages through port 10691013"), last


def code_text(k):
    return f"您的验证码是{100000 + k * 7919 % 900000}，5分钟内有效，请勿泄露。"


def loan_spam(k):
    return f"无抵押贷款当天放款，加微信dk{k:04d}"       # FixedScorer: spam


@pytest.mark.parametrize("declared", [False, True])
def test_a_port_diluting_its_spam_with_codes_is_judged_on_the_rest_of_its_traffic(declared):
    """Red team #6 (s04, s04b): 1 message in 5 is spam, the others are one-time codes, worded as codes or declared
    `verification`. The port was 20% spam (spam_share's low): it stayed normal and its spam was only flagged. Codes
    aside it is all spam: throttled at once. A code port whose notices the classifier sometimes calls spam (1 in 10
    of them) is not touched, however many codes it sends."""
    diluted = drip("10690004", 500, 30, lambda k: loan_spam(k) if k % 5 == 0 else code_text(k),
                   lambda k: "verification" if declared and k % 5 else None)
    noisy = drip("10690005", 500, 30, lambda k: code_text(k) if k % 10 else
                 ("【京东】加微信领取会员礼包" if k % 100 == 0 else f"【京东】您的订单{k}已发货"))
    states = port_states(sorted(diluted + noisy, key=lambda e: e.ts_ms), FixedScorer())
    assert states.get("10690004") and states["10690004"][0][0] == "throttle", states
    assert "spam_share" in states["10690004"][0][1], states
    assert "10690005" not in states, states


@pytest.mark.parametrize("spam_of", [loan_spam, lambda k: f"您的验证码是{100000 + k}，{loan_spam(k)}"],
                         ids=["not worded as a code", "worded as a code"])
def test_spam_declared_a_code_among_real_codes_is_judged_as_the_spam_it_is(spam_of):
    """Red team #6 (b) (s04c, s04d): every message declared `verification`, 1 in 5 of them spam, the others real codes.
    A declared code counted as one whatever it said, so the spam left the port's non-code share with the codes:
    20% spam, port normal, spam only flagged. Not worded as a code, or promoting (贷款) beside its code wording, it is
    no code: throttled at once, as s04b. A code port whose real code template the model scores spam (1 in 10 of its
    codes) beside a few notices keeps those codes as codes and is not touched."""
    diluted = drip("10690006", 500, 30, lambda k: spam_of(k) if k % 5 == 0 else code_text(k),
                   lambda k: "verification")
    mislabelled = drip("10690007", 500, 30, lambda k: f"【京东】您的订单{k}已发货" if k % 10 == 0 else
                       (f"您正在开通快捷验证银行卡信息，验证码：{100000 + k}【财付通】" if k % 10 == 1 else code_text(k)),
                       lambda k: None if k % 10 == 0 else "verification")
    states = port_states(sorted(diluted + mislabelled, key=lambda e: e.ts_ms), CodeTemplateScorer())
    assert states.get("10690006") and states["10690006"][0][0] == "throttle", states
    assert "spam_share" in states["10690006"][0][1], states
    assert "10690007" not in states, states


def test_ads_declared_codes_to_one_number_are_capped_per_port_not_counted_as_codes():
    """s13's 60 compliant-looking ads a day to one number under 6 signatures, declared `verification`: counted as
    codes, they went to code_flood's count (from every sender) and escaped marketing_frequency. They are marketing
    through the port: marketing_frequency from the 11th, and the false declaration (declared_code_mismatch, 2) on
    each brings the first flag forward from the 50th to the 30th."""
    texts = [f"【店{i % 6}】会员专享福利，全场低至5折{'!' * (i % 7)}，回T退订" for i in range(60)]
    decisions = decide(to_one_number(texts, category="verification"))
    assert not any("code_flood" in signals_of(d) for d in decisions), decisions[-1]
    assert all("declared_code_mismatch" in signals_of(d) for d in decisions), decisions[0]
    assert [i for i, d in enumerate(decisions) if "marketing_frequency" in signals_of(d)] == list(range(10, 60))
    assert [d.action for d in decisions] == ["allow"] * 29 + ["flag"] * 31, [(d.action, d.risk) for d in decisions]


def test_a_port_hovering_at_watch_on_spam_is_throttled_once_it_lasts():
    """Red team #7 (s10b): 50 a minute, 35% spam for 10 minutes, then 10%, over and over for 2 hours, notices in
    between (codes no longer dilute). The port reached watch and stayed there, never slowed. Kept at watch on spam
    evidence for half an hour (persistence.after_s), spam arriving again, it is throttled, and stays throttled."""
    def text(k):
        return loan_spam(k) if (k % 50) / 50 < (0.35 if (k // 500) % 2 == 0 else 0.10) else f"【京东】您的订单{k}已发货"
    states = port_states(drip("10690010", 500, 120, text), FixedScorer())
    seen = [state for state, _ in states["10690010"]]
    assert seen[0] == "watch" and "throttle" in seen, states
    first = seen.index("throttle")
    assert all(state == "throttle" for state in seen[first:]), seen
