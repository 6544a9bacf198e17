"""The shared normaliser on real message shapes from the corpus and on spammers' tricks."""
from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings, strategies as st

from detector.textnorm import (_T2S, MONEY, PHONE, QQ, URL, WECHAT, clean, nfkc, normalize, split_signature,
                               template_key, to_simplified)
from conftest import DATA_DIR


def test_masked_training_digits_and_real_digits_normalise_alike():
    # dev.tsv masks every spam digit as x; raw traffic has real digits. Both must look the same to the model.
    masked = "代办驾照免学，免考xx天包拿证，C证xxxx元，询：xxxxxxxxxxx Q：xxxxxxxx 程涛"
    real = "代办驾照免学，免考15天包拿证，C证3800元，询：13912345678 Q：87654321 程涛"
    assert normalize(masked) == normalize(real)
    assert PHONE in normalize(real) and QQ in normalize(real) and MONEY in normalize(real)


def test_dates_and_counts_collapse_to_one_digit_class():
    assert normalize("x月xx日至x月xx日") == normalize("5月12日至6月30日") == "0月0日至0月0日"


def test_latin_words_with_x_are_not_digits():
    assert "xbox" in normalize("xbox 全新 出售") and "max" in normalize("iPhone Max")


@pytest.mark.parametrize("text, token", [
    ("详情点击：http://go.10086.cn/nd/lhO/Xv9Za", URL),
    ("登陆 i.sf-express.com 完善个人信息", URL),
    ("猛戳 t.cn/RvBtueI 提前抢优惠券", URL),
    ("咨询电话：4006985859【富亿投资】", PHONE),
    ("请致电 010-62345678 联系", PHONE),
    ("热线 138 1234 5678", PHONE),
    ("扣扣822497333", QQ),
    ("加微信：abc_12345 领红包", WECHAT),
    ("关注EMS微信服务号ems-cnpl并绑定手机", None),
    ("万宁核心大盘36万/套起", MONEY),
    ("交易875.00元", MONEY),
    ("原价￥148", MONEY),
])
def test_typed_tokens(text, token):
    normal = normalize(text)
    if token is None:
        assert WECHAT not in normal  # "服务号" is not an id: only ids right after the keyword are typed
    else:
        assert token in normal, normal


def test_full_width_and_traditional_forms():
    assert normalize("ＱＱ：１２３４５６７８") == normalize("QQ:12345678")
    assert normalize("東方錦鯉 貸款") == "东方锦鲤贷款"
    assert normalize("建行乾元理财") == "建行乾元理财"  # 乾 is simplified too: not turned into 干


@pytest.mark.parametrize("trick", ["加 微 信", "加-微-信", "加.微.信", "加\u200b微\u200b信", "加*微*信", "加　微　信"])
def test_separator_tricks_between_chinese_characters(trick):
    assert normalize(trick) == "加微信"


def test_homophone_wechat_with_separator_and_numeral_phone():
    assert normalize("威-信 幺三八一二三四五六七八") == f"威信 {PHONE}"
    assert normalize("电话①③⑧①②③④⑤⑥⑦⑧") == f"电话{PHONE}"


def test_emoji_and_private_use_glyphs_become_one_token():
    assert normalize("新品\U0001F525上市\ue310") == normalize("新品😀上市🎉") == "新品 <emoji> 上市 <emoji>"


def test_chinese_punctuation_is_kept():
    assert normalize("你好，明天见。") == "你好,明天见。"


def test_signature_at_end_or_start():
    assert split_signature("您的验证码是123456。【中国银行】") == ("中国银行", "您的验证码是123456。")
    assert split_signature("【大众点评】抱歉，预订已满！") == ("大众点评", "抱歉，预订已满！")
    assert split_signature("理财非存款。[建设银行]") == ("建设银行", "理财非存款。")
    assert split_signature("普通短信没有签名") == (None, "普通短信没有签名")
    assert normalize("回T退订【京东】") == "回t退订"


def test_template_key_groups_digit_and_url_variants_only():
    a = "【顺丰速运】您的快件1093218216211已到，取件码5566，详情 http://sf.cn/a1"
    b = "【顺丰速运】您的快件5520398812734已到，取件码0981，详情 http://sf.cn/zz9"
    c = "【顺丰速运】您的快件5520398812734已签收，详情 http://sf.cn/zz9"
    assert template_key(a) == template_key(b) != template_key(c)
    assert template_key("尾号8899账户支出1,200.50元") == template_key("尾号1234账户支出37.00元")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_normalize_never_leaves_invisible_or_private_use_characters(text):
    normal = normalize(text)
    assert not any(unicodedata.category(ch) in ("Cf", "Co") for ch in normal)
    assert normal == normal.strip()


def test_every_format_character_is_dropped():
    """Exhaustive over this Python's Unicode table (hypothesis once found U+0890, an Arabic number sign)."""
    import sys

    formats = [chr(c) for c in range(sys.maxunicode + 1) if unicodedata.category(chr(c)) == "Cf"]
    assert normalize("加" + "".join(formats) + "微信") == "加微信"


# -- the fast NFKC and traditional -> simplified steps give exactly what the library calls give -------------

_SMS_LIKE = st.text(alphabet=st.sampled_from(
    "加微信领红包验证码詳詢熱線，。！：（）【】ＡＢＣａｂｃ１２３①②㈠ｶﾞﾟ＄￥　 abc123.-é\u0301\u3099\u1100\u1161\u11a8"
    "\U0001d400\U00020000\u2fa1d\ufb01\u2460"), max_size=60)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=60), _SMS_LIKE))
def test_nfkc_is_the_library_nfkc(text):
    assert nfkc(text) == unicodedata.normalize("NFKC", text)


@settings(max_examples=200, deadline=None)
@given(st.one_of(st.text(max_size=60), _SMS_LIKE))
def test_to_simplified_is_the_table_translation(text):
    assert to_simplified(text) == text.translate(_T2S)


def test_nfkc_and_to_simplified_on_every_message_of_both_files():
    if not DATA_DIR.exists():
        pytest.skip("shared data not present")
    texts = [line.rstrip("\n").split("\t")[-1]
             for name in ("dev.tsv", "raw_dev.tsv")
             for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines()]
    assert len(texts) > 90_000
    assert [nfkc(t) for t in texts] == [unicodedata.normalize("NFKC", t) for t in texts]
    assert [to_simplified(t) for t in texts] == [t.translate(_T2S) for t in texts]
    assert sum(t != nfkc(t) for t in texts) > 10_000         # the comparison covers the changed texts too


# -- the normaliser skips a pattern when the text lacks what every match of it contains ---------------------

def _skip_claims():
    """(pattern, check) pairs: the normaliser runs ``pattern`` only when ``check(text)`` is true."""
    from detector import textnorm as tn
    return [(tn._GROUPED_NUMBER, tn._may_be_grouped_number), (tn._QQ, tn._may_be_qq),
            (tn._MONEY, tn._may_be_money), (tn._PHONE, lambda t: "0000000" in t),
            (tn._INVISIBLE, lambda t: tn._INVISIBLE_OR_EMOJI.search(t) is not None),
            (tn._EMOJI, lambda t: tn._INVISIBLE_OR_EMOJI.search(t) is not None),
            (tn._DOTTED_MOBILE, lambda t: "000.0000.0000" in t), (tn._BRACKETED_HAN, lambda t: "(" in t),
            (tn._DISGUISED_DOT, lambda t: tn._ANY_TLD.search(t) is not None),
            (tn._ENCLOSED_DIGITS, lambda t: tn._ENCLOSED_DIGITS.search(t) is not None),
            (tn.UNSUBSCRIBE_INSTRUCTION, lambda t: _may_instruct(t)),
            (tn._VARIANT_CHANGES, lambda t: tn._VARIANT_CHANGES.search(t) is not None),
            (tn._LOOKALIKE_WORD, lambda t: "夭" in t or "袋款" in t),
            (tn._DISGUISED_DOT_3, lambda t: tn._ANY_TLD.search(t) is not None),
            (_LookalikeDigits(), lambda t: tn._DIGIT_LOOKALIKE_NEAR.search(t) is not None)]


class _LookalikeDigits:
    """Version 3's letters-for-digits step as a pattern that "matches" where it changes the text."""
    pattern = "_DIGIT_LOOKALIKE_WORD"

    def search(self, text):
        from detector import textnorm as tn
        return tn._DIGIT_LOOKALIKE_WORD.sub(tn._digits_of_lookalikes, text) != text or None


def _may_instruct(text: str) -> bool:
    from detector.model import _MAY_INSTRUCT_UNSUBSCRIBE
    return _MAY_INSTRUCT_UNSUBSCRIBE.search(text) is not None


_NUMBERISH = st.lists(st.sampled_from(["0", "00000", "0000000", " ", "-", ".", "q", "qq", "扣扣", "企鹅", "号", "群",
                                       ":", "：", "¥", "$", "元", "块", "万", "亿", "千元", "w", "wx", "a", "验",
                                       "000.0000.0000", "(", ")", "点", "。", "com", "c", "n", "回", "t", "退订",
                                       "拒收", "回复", "【.】", "加", "微", "o", "i", "l", "x", "万", "夭", "今",
                                       "袋款", "歀", "恵", "tv", "8点", "ぁ",
                                       "\u200b", "\U0001f600", "\ue000"]), max_size=25).map("".join)


@settings(max_examples=1000, deadline=None)
@given(st.one_of(_NUMBERISH, st.text(max_size=40)))
def test_a_pattern_is_skipped_only_when_it_cannot_match(text):
    for pattern, check in _skip_claims():
        assert check(text) or pattern.search(text) is None, pattern.pattern


def test_the_skips_change_no_normalised_message_of_either_file():
    """Every message of both files, lowercased with its digits zeroed (as the number patterns see it): no skip
    would miss a match."""
    from detector import textnorm as tn
    if not DATA_DIR.exists():
        pytest.skip("shared data not present")
    texts = [line.rstrip("\n").split("\t")[-1]
             for name in ("dev.tsv", "raw_dev.tsv")
             for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines()]
    zeroed = [t.lower().translate(str.maketrans("123456789", "000000000")) for t in texts]
    for pattern, check in _skip_claims():
        assert all(check(t) or pattern.search(t) is None for t in zeroed), pattern.pattern
    assert sum(tn._may_be_money(t) and tn._MONEY.search(t) is not None for t in zeroed) > 1_000


# -- version 2 (models from zh-linear-v5 on): the red team's tricks against the model (docs/redteam.md) ----------

@pytest.mark.parametrize("trick, plain", [
    ("加〡微〡信领红包", "加微信领红包"), ("加、微、信领红包", "加微信领红包"), ("加丨微丨信领红包", "加微信领红包"),
    ("加ㆍ微ㆍ信领红包", "加微信领红包"), ("加┆微┆信领红包", "加微信领红包"), ("加（微）信领红包", "加微信领红包"),
    ("加̶微̶信̶领红包", "加微信领红包"), ("刷̲单̲日结", "刷单日结"), ("大̶促̶", "大促"),
    ("注册送彩金 vns88点com", "注册送彩金 www.vns88.com"), ("注册送彩金 vns88【.】com", "注册送彩金 vns88.com"),
    ("注册送彩金 vns88。com", "注册送彩金 vns88.com"), ("注册送彩金 vns88(.)com", "注册送彩金 vns88.com"),
    ("注册送彩金 www点vns88点com", "注册送彩金 www.vns88.com"), ("注册送彩金 vns88 . com", "注册送彩金 vns88.com"),
    ("贷款详询⑴⑶⑻⑴⑵⑶⑷⑸⑹⑺⑻", "贷款详询13812345678"), ("贷款详询❶❸❽❶❷❸❹❺❻❼❽", "贷款详询13812345678"),
    ("贷款详询➀➂➇➀➁➂➃➄➅➆➇", "贷款详询13812345678"), ("贷款详询138.1234.5678", "贷款详询13812345678"),
])
def test_version_2_undoes_the_red_teams_tricks(trick, plain):
    assert normalize(trick, 2) == normalize(plain, 2)
    assert normalize(trick, 1) != normalize(plain, 1)       # version 1 (zh-linear-v4) keeps reading them as it did


@pytest.mark.parametrize("text", [
    "苹果、香蕉和梨", "请于3日（周三）前还款", "下午3点到店", "版本1.2.3已发布", "交易12.50元", "订单(已发货)请查收",
    "会议室3点开会", "尾号1234.56元到账", "股票代码600519.sh",
])
def test_version_2_leaves_ordinary_text_as_version_1_reads_it_but_for_enumeration_commas(text):
    assert normalize(text, 2) == normalize(text, 1).replace("、", "")


def test_version_2_model_text_leaves_the_unsubscribe_instruction_to_the_rules():
    from detector.model import model_text
    for line in ("回T退订", "回复TD退订", "退订回N", "拒收请回复R", "[回@0TD退订短信]", "退订回复“TD”", "回复A退订", "如需退订,请回复CK"):
        text = f"无抵押贷款，当天放款，详询13812345678{line}【某贷】"
        assert model_text(text, 2) == model_text("无抵押贷款，当天放款，详询13812345678【某贷】", 2), line
        assert model_text(text, 1) != model_text("无抵押贷款，当天放款，详询13812345678【某贷】", 1)
    # ordinary mentions of unsubscribing stay: they are words, not an instruction
    assert "退订" in model_text("我发了很多次退订短信但还是收到", 2)
    # nor is a reply keyword before 退款 / 退货 / 退出 (a refund scam's 回复1退款 kept only "款")
    from detector.textnorm import clean
    for text in ("您的包裹丢失，理赔请回复1退款", "质量问题回复2退货", "回复Y退出群聊"):
        assert model_text(text, 2) == clean(text, 2), text


def test_an_unknown_normaliser_version_is_refused():
    from detector.textnorm import clean
    with pytest.raises(ValueError, match="version"):
        clean("你好", 4)


# -- version 3 (zh-linear-v7): what version 2 left (docs/redteam.md, "Text normalisation issues") ------------------

@pytest.mark.parametrize("trick, plain", [
    # look-alike characters that are neither traditional forms nor in use: the red team's 贷歀, and dev.tsv's spam
    ("无抵押贷歀，当天放歀", "无抵押贷款，当天放款"), ("可办理xx-xxxW信用貸歀，可当天放歀", "可办理xx-xxxW信用贷款，可当天放款"),
    ("无抵压无担保信用贷窾", "无抵压无担保信用贷款"), ("礼恵山城", "礼惠山城"), ("佰佳楽", "佰佳乐"), ("下午扛銭回家", "下午扛钱回家"),
    ("《増》∷《扣》", "《增》∷《扣》"), ("溢水生茶荘急转", "溢水生茶庄急转"),
    # real characters, only in the words they fake
    ("无抵押袋款，今夭到账", "无抵押贷款，今天到账"), ("当夭放款", "当天放款"), ("明夭截止", "明天截止"),
    # letters for digits: the red team's, and dev.tsv's (its spam digits are masked as x)
    ("最高可贷5O万", "最高可贷50万"), ("注册送1O0元", "注册送100元"), ("最高5Ow", "最高50w"), ("额度5l万", "额度51万"),
    ("吊牌满xOO元减xo元", "吊牌满x00元减x0元"), ("学费xxoo元", "学费xx00元"), ("xOxx年，开年大戏", "xxxx年，开年大戏"),
    ("电话：lxxxxxxxxxx：见货给钱", "电话：xxxxxxxxxxx：见货给钱"), ("漂↓付 lxxlxxOlOOl 刘", "漂↓付 xxxxxxxxxxx 刘"),
    ("详询l3812345678", "详询13812345678"), ("办正xxxxOxxxOxx", "办正xxxxxxxxxxx"),
])
def test_version_3_undoes_what_version_2_left(trick, plain):
    assert normalize(trick, 3) == normalize(plain, 3)
    assert normalize(trick, 2) != normalize(plain, 2)       # version 2 (zh-linear-v5, v6) reads them as it did


@pytest.mark.parametrize("text", [
    "逃之夭夭", "夭折的计划", "夭寿啦", "新款手袋款式多样", "口袋款式", "o2o平台", "i5处理器", "三星I9300手机", "xxl码", "XXXL",
    "xoxo", "lol", "现代ix35", "大众XL1", "mp3", "win10", "10l水", "2o2o年", "DatewithNanain有楽町です", "楽しかった",
    "今晚8点TV直播", "9点la", "晚上10点cn", "1-2点cn",
])
def test_version_3_leaves_real_words_numbers_and_clock_times_as_version_2_reads_them(text):
    assert URL not in normalize(text, 3)
    if URL not in normalize(text, 2):           # the clock times were version 2's false links
        assert normalize(text, 3) == normalize(text, 2)


def test_version_3_reads_a_clock_time_before_a_domain_word_as_text_and_keeps_real_disguised_links():
    assert normalize("今晚8点TV直播", 2) == f"今晚 {URL} 直播"           # version 2's false link (review of session 15)
    assert normalize("今晚8点TV直播", 3) == "今晚0点tv直播"
    for link in ("vns88点com", "vns88【.】com", "vns88。com", "vns88(.)com", "www点vns88点com", "vns88 . com",
                 "www点163点com", "163点com", "58点com", "dk88 dot cn"):
        assert normalize(f"注册送彩金 {link}", 3) == f"注册送彩金 {URL}", link


# Every message of both files and the red team's tricks, as versions 1 and 2 read them before version 3 existed
# (main at ca40c7e): what zh-linear-v1..v6 read must not change by a byte. The digests depend on OpenCC's table.
_MODEL_TEXT_SHA256 = {1: "24979404874e48fc8f26d1b40a0d9499a910e1d5e9309a8143639efb59551152",
                      2: "d6a426275a3762d21361aadd984596910139088ad997b194abb1b8bcdc1751ba"}
_V3_TRICKS_AS_READ_BEFORE = [       # (text, version 1, version 2): version 3 reads each otherwise than 2
    ("无抵押贷歀，当夭放歀", "无抵押贷歀,当夭放歀", "无抵押贷歀,当夭放歀"),
    ("无抵押袋款，今夭到账", "无抵押袋款,今夭到账", "无抵押袋款,今夭到账"),
    ("最高可贷5O万", "最高可贷0o万", "最高可贷0o万"), ("注册送1O0元", "注册送0o<money>", "注册送0o<money>"),
    ("满xOO元减xo元", "满xoo元减xo元", "满xoo元减xo元"), ("详询l3812345678", "详询l<phone>", "详询l<phone>"),
    ("礼恵山城", "礼恵山城", "礼恵山城"), ("今晚8点TV直播", "今晚0点tv直播", "今晚 <url> 直播"), ("9点la", "0点la", "<url>"),
]


def test_versions_1_and_2_read_every_message_as_before_version_3():
    import hashlib

    from detector.model import model_text
    from detector.textnorm import _T2S
    for text, one, two in _V3_TRICKS_AS_READ_BEFORE:
        assert (normalize(text, 1), normalize(text, 2)) == (one, two), text
        assert normalize(text, 3) != two, text
    if not DATA_DIR.exists() or not _T2S:
        pytest.skip("shared data or OpenCC not present")
    texts = [line.rstrip("\n").split("\t")[-1]
             for name in ("dev.tsv", "raw_dev.tsv")
             for line in (DATA_DIR / name).read_text(encoding="utf-8").splitlines()]
    for version, digest in _MODEL_TEXT_SHA256.items():
        read = "\n".join(model_text(t, version) for t in texts)
        assert hashlib.sha256(read.encode()).hexdigest() == digest, version


def test_version_3_reads_a_hostile_run_of_digits_before_a_disguised_dot():
    """Review: version 3's disguised dot converted the label before it with int(), which refuses a string of over
    4,300 digits (Python's integer string limit): clean() raised ValueError on such a text, which a model reading
    version 3 scores (SMSGUARD_MAX_CONTENT_CHARS may be raised above 4,300; training and evaluate read any file).
    A number that long is no hour: its dot is a dot, as version 2 reads it."""
    label = "1" * 5_000
    assert clean(f"{label}点com", version=3) == clean(f"{label}点com", version=2)
    assert clean(f"详询 0{label}点cn", version=3) == clean(f"详询 0{label}点cn", version=2)
    assert clean("今晚08点tv直播", version=3) == "今晚0点tv直播"       # an hour written with a leading zero stays text


def test_version_3_look_alikes_are_not_given_up_for_one_kana_in_a_chinese_ad():
    """Review: version 3 read no look-alike at all in a text holding any kana (kept for Japanese posts, where 恵 and
    楽 are the right characters), so one の, which Chinese ads write for 的, undid it: 贷歀 and 优恵 stayed as
    written. dev.tsv's spam has such lone kana (xxろ起, xxxxえ/坪). A text is now read as Japanese when kana are a
    quarter of its kana and Chinese characters, and 歀 / 窾 (no Japanese character) are read as 款 in any text."""
    assert clean("无抵押贷歀の，优恵多多，当夭放款", version=3) == clean("无抵押贷款の，优惠多多，当天放款", version=3)
    assert clean("我の店，楽享优恵", version=3) == "我の店,乐享优惠"
    # Japanese stays as written, but for 歀
    assert clean("楽しかった", version=3) == "楽しかった"
    assert clean("AKB48の楽屋は、もっと、汗臭くて", version=3) == clean("AKB48の楽屋は、もっと、汗臭くて", version=2)
    assert "款" in clean("楽しかった贷歀", version=3)


@pytest.mark.parametrize("written, meant", [("无抵押袋 款", "无抵押贷款"), ("无抵押袋\u200b款", "无抵押贷款"),
                                            ("袋-款当日到账", "贷款当日到账"), ("今 夭放款", "今天放款"),
                                            ("当〡夭到账", "当天到账"), ("明(夭)见", "明天见")])
def test_version_3_reads_look_alike_words_through_the_separators_it_removes(written, meant):
    """Review: version 3 read 袋款 and 今夭 before it removed the separators, zero-width and bracketed characters
    between Chinese characters, so one space between them (袋 款, 今 夭) kept the look-alike, and the text the model
    read then held 袋款 and 今夭 joined up: two tricks the red team uses together undid the step."""
    assert clean(written, version=3) == clean(meant, version=3)
    assert clean("手袋 款式", version=3) == "手袋款式" and clean("逃之 夭夭", version=3) == "逃之夭夭"


def test_version_3_does_not_take_a_line_of_prolonged_sound_marks_for_japanese():
    """Review: ー (U+30FC) and ・ (U+30FB) sit in the katakana block but are no kana of a word: a rule line of ー
    around a Chinese ad made it Japanese by the share of kana, and 优恵 stayed as written."""
    line = "ー" * 16
    assert clean(f"{line}优恵多多{line}", version=3) == clean(f"{line}优惠多多{line}", version=3)
    assert clean("楽しかった", version=3) == "楽しかった" and clean("ゲーム楽しい", version=3) == "ゲーム楽しい"
