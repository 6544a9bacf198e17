"""Port-health signals on given counts: spam_share judged over the whole port and beside its one-time codes."""
from __future__ import annotations

import pytest

from detector.events import SmsEvent
from detector.signals.base import MessageContext
from detector.signals.feeds import FEEDS
from detector.signals.port_health import SpamShare


def state(rate, spam, codes=(0, 0), code_spam=(0, 0)):
    """A port's feeds: its messages over (1 min, 10 min, hour), spam units, codes and codes' spam units over
    (10 min, hour). Abusive spam counts 4 units a message, compliant marketing 1."""
    return {"port_rate": rate, "port_spam": spam, "port_codes": codes, "port_code_spam": code_spam}


def share(feeds):
    ctx = MessageContext(SmsEvent("m", 0, "10690001", "r", "x"), 0.1, False, False, False, 12, "k", "t", "c")
    ctx.state = feeds
    return SpamShare().evaluate(ctx)


def test_one_spam_in_five_diluted_with_codes_is_all_spam_codes_aside():
    """Red team #6: 100 spam and 400 codes in 10 minutes is 20% spam (spam_share's low: nothing); codes aside it
    is all spam."""
    fired = share(state((50, 500, 1500), (400, 1200), codes=(400, 1200)))
    assert fired is not None and fired.value == 1.0 and fired.detail == "100% of the last 10 min spam, codes aside"


def test_diluted_with_anything_but_codes_it_is_still_20_percent():
    """The next dilution (notices instead of codes) is judged as before: the share is the whole port's."""
    assert share(state((50, 500, 1500), (400, 1200))) is None


def test_a_code_port_is_not_judged_on_its_spam_scored_codes_against_its_few_other_messages():
    """A code template the classifier calls spam (the corpus labels some real codes spam: QQ, 财付通) leaves the
    non-code share with its code: 50 of 1,000 codes scored spam beside 30 clean notices is no 100% spam port."""
    assert share(state((100, 1030, 3000), (200, 600), codes=(1000, 2900), code_spam=(200, 600))) is None


def test_a_code_port_is_not_judged_on_a_handful_of_other_messages():
    """Fewer than min_volume non-code messages in the hour: not judged on them, however spammy."""
    assert share(state((100, 1010, 3010), (40, 40), codes=(1000, 3000))) is None


def test_spam_declared_a_code_still_counts_in_the_whole_ports_share():
    """Declaring spam `verification` takes it out of the non-code share, not out of the port's: a port of such
    spam is judged as before."""
    fired = share(state((50, 500, 1500), (2000, 6000), codes=(500, 1500), code_spam=(2000, 6000)))
    assert fired is not None and fired.value == 1.0 and fired.detail == "100% of the last 10 min spam"


def test_a_quiet_port_is_judged_beside_its_codes_on_its_hour():
    """Under min_volume non-code messages in 10 minutes but that many in the hour: judged on the hour, as the whole
    port's share is (red team #3, drip-feeding)."""
    fired = share(state((5, 60, 400), (40, 240), codes=(50, 340), code_spam=(0, 0)))
    assert fired is not None and fired.value == 1.0 and fired.detail == "100% of the last hour spam, codes aside"


@pytest.mark.parametrize("is_code,is_spam,compliant,expected", [
    (True, False, False, (1, 0)), (True, True, False, (1, 4)), (True, True, True, (1, 1)),
    (False, True, False, (0, 0)), (False, False, False, (0, 0))])
def test_the_code_feeds_count_codes_and_their_spam_units(is_code, is_spam, compliant, expected):
    event = SmsEvent("m", 60_000, "10690001", "r", "x", signature="京东" if compliant else None)
    ctx = MessageContext(event, 0.9 if is_spam else 0.1, is_spam, is_spam, compliant, 12, "k", "t", "c",
                         is_code=is_code)
    codes, code_spam = FEEDS["port_codes"](ctx), FEEDS["port_code_spam"](ctx)
    assert (codes.amount, code_spam.amount) == expected
    assert codes.key == "sg:port:{10690001}:code" and code_spam.key == "sg:port:{10690001}:cspam"
    assert codes.spans_s == code_spam.spans_s == FEEDS["port_spam"](ctx).spans_s
