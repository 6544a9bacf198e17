"""The event parser's fast path for well-formed SMS events against the field-by-field checks."""
from __future__ import annotations

from hypothesis import example, given, settings, strategies as st

from detector.errors import InvalidEvent
from detector.events import EventParser
from detector.privacy import RecipientHasher

PARSER = EventParser(RecipientHasher("k" * 16), max_content_chars=40, now_ms=1_731_326_400_000,
                     max_future_ms=3_600_000, max_age_ms=86_400_000)
VALID = {"msg_id": "m-1", "ts": 1_731_326_000_000, "port": "10690001", "recipient": "13812345678",
         "content": "【京东】您的验证码是482913", "category": "verification", "signature": "京东", "sp_id": "sp1"}
MISSING = object()

# Values at and beyond every rule's edge: lengths on both sides of each limit, NULs, blanks, wrong types.
_EDGE_TEXT = st.one_of(*(st.builds(lambda n=n, c=c: c * n) for n in (0, 1, 3, 24, 25, 32, 33, 40, 41, 64, 65, 128, 129)
                         for c in ("1", "a", " ", "京")),
                       st.text(st.sampled_from("ab1\x00 \n\t【】[]京-+x"), max_size=45),
                       # a final newline: re.match with "$" let these through (see the test below)
                       st.sampled_from(["1" * 24 + "\n", "a" * 128 + "\n", "13812345678\n", "1" * 31 + "\n"]))
_WRONG = st.one_of(st.none(), st.booleans(), st.integers(-5, 2 ** 70), st.floats(allow_nan=False),
                   st.lists(st.integers(), max_size=2), st.just({"a": 1}))
_TS = st.one_of(st.integers(1_731_200_000_000, 1_731_400_000_000), st.just("2024-11-11T20:00:00+08:00"),
                st.just("2024-11-11 20:00:00"), st.just(1.5))
_CATEGORY = st.sampled_from(["verification", "notification", "marketing", "Marketing", "", "x" * 40])
CHANGES = st.lists(st.tuples(st.sampled_from(sorted(VALID)),
                             st.one_of(_EDGE_TEXT, _WRONG, _TS, _CATEGORY, st.just(MISSING))), max_size=2)


def _event(changes):
    event = dict(VALID)
    for name, value in changes:
        if value is MISSING:
            event.pop(name, None)
        else:
            event[name] = value
    return event


def _outcome(parse, obj):
    try:
        return parse(obj)
    except InvalidEvent as exc:
        return f"InvalidEvent: {exc}"


@settings(max_examples=4000, deadline=None)
@given(CHANGES)
def test_the_fast_path_accepts_and_rejects_exactly_what_the_field_checks_do(changes):
    event = _event(changes)
    assert _outcome(PARSER._sms, event) == _outcome(PARSER._sms_checked, event)


def test_the_fast_path_is_exercised_and_gives_the_checked_event():
    assert PARSER._sms(VALID) == PARSER._sms_checked(VALID)
    assert PARSER._sms(VALID).signature == "京东" and PARSER._sms(VALID).recipient.startswith("r_")


def test_a_final_newline_makes_a_port_msg_id_or_recipient_invalid():
    """re.match with "$" accepted "10690001\\n" as a port: a port of its own, with none of the real port's state."""
    for name, value in (("port", "10690001\n"), ("msg_id", "m-1\n"), ("recipient", "13812345678\n")):
        for parse in (PARSER._sms, PARSER._sms_checked):
            assert _outcome(parse, {**VALID, name: value}).startswith(f"InvalidEvent: {name}"), (name, parse)
    optout = {"ts": VALID["ts"], "recipient": "13812345678", "port": "10690001\n"}
    assert _outcome(PARSER.parse_optout, optout) == "InvalidEvent: port: '10690001\\n' is not a valid port"


def test_the_signature_the_recipient_sees_wins_and_has_one_spelling():
    """Opt-outs, the signature registry and the counters compare signatures as strings: the content's signature
    counts over the declared field (a port registered for 京东 must not send 【淘宝】 as "京东"), and bracket and
    full-width variants are one signature."""
    def signature(content, declared=MISSING):
        return PARSER.parse_sms(_event([("content", content), ("signature", declared)])).signature

    assert signature("【淘宝】双11大促", "京东") == "淘宝"
    assert signature("双11大促，回T退订", "【京东】") == "京东"        # the gateway adds it later
    assert signature("〖ＪＤ〗双11大促") == signature("［JD］双11大促") == signature("双11大促[JD]") == "JD"
    assert signature("双11大促") is None and signature("双11大促", "【】") is None
    optout = PARSER.parse_optout({"ts": 1_731_326_000_000, "recipient": "13812345678", "port": "10690001",
                                  "signature": "［ＪＤ］"})
    assert optout.signature == "JD"
    # second QA pass: invisible characters and traditional characters hid the signature; a leading bracket
    # that is no merchant (【温馨提示】, 【EBM141024001】) beat the declared one the text ends with
    assert signature("\u200b【淘宝】双11大促", "京东") == signature("\ufeff【淘宝】双11大促") == "淘宝"
    assert signature("【淘\u200b宝】双11大促") == signature("【淘寶】双11大促") == "淘宝"
    assert signature("双11大促【淘宝】\u200b") == "淘宝"
    # red team: spaces inside the brackets made a new signature, past the recipient's opt-out from 优品汇
    assert signature("【优 品 汇】双11大促") == signature("【优\u3000品汇】双11大促") == signature("【优品汇】双11大促") == "优品汇"
    assert signature("【Apple Store】新品上市", "Apple Store") == "AppleStore"
    assert signature("【EBM141024001】您的账户余额变动【工商银行】", "工商银行") == "工商银行"
    assert signature("【EBM141024001】您的账户余额变动【工商银行】", "京东") == "EBM141024001"


_SIGNATURE_PIECES = st.lists(st.sampled_from(["【", "】", "[", "]", "［", "］", "〖", "〗", "京", "东", "京东", "ab", "-", " ",
                                              "\t\n", "\u3000", "\x1c", "\u200b", "\ufeff", "0123456789"]),
                             max_size=12).map("".join)


@settings(max_examples=1500, deadline=None)
@given(st.one_of(_SIGNATURE_PIECES, st.text(st.sampled_from("【】[]［］〖〗京东ab- \t\n\u3000\x1c\u200b\ufeff"),
                                            max_size=24)))
@example("【--】促销【京东】")       # the leading match is no signature: the answer is None, not the trailing one
@example("【京】促销")               # one character is no signature
@example("【京东〗促销")             # any closing bracket closes
@example("【京]东】促销")            # the first closing bracket closes...
@example("【京东〗促销】")
@example("【京东］促销】")
def test_signature_from_content_finds_what_the_whole_pattern_finds(content):
    """signature_from_content tries the leading half, then the trailing half only for texts that end in a
    closing bracket; the whole pattern, searched at once, is the reference."""
    import re

    from detector.events import _GAP, canonical_signature, signature_from_content
    whole = re.compile(rf"^{_GAP}[【\[［〖]([^】\]］〗]{{2,16}})[】\]］〗]|[【\[［〖]([^】\]］〗]{{2,16}})[】\]］〗]{_GAP}$")
    m = whole.search(content)
    assert signature_from_content(content) == (canonical_signature(m.group(1) or m.group(2)) if m else None)
