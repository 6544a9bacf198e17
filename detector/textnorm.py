"""The one text normaliser, shared by training and serving, and the fast template key.

Why each step exists:

* full-width → half-width and circled/full-width digits → ASCII (NFKC), traditional → simplified
  (a character table from OpenCC's data; per-character is enough for spam words and is cheap);
* spammers' tricks undone: zero-width and private-use characters, emoji, separators between Chinese
  characters ("加 微 信", "威-信"), phone numbers written as Chinese numerals;
* every digit becomes one class, and the corpus' masking (``xxxxxxxxxxx`` = a phone number) is read
  as digits too, so the model cannot learn "real digit ⇒ normal" from the masked training data;
* URLs, phone numbers, QQ and WeChat ids and amounts become typed tokens (``<url>`` …);
* the signature 【…】 is split off: it names the sender, not the content.

>>> normalize("【京东】加 微 信：abc_12345 领 ５０元 红包 http://t.cn/x 回T退订")
'加微信:<wx> 领 <money>红包 <url> 回t退订'
>>> normalize("詳詢：xxxxxxxxxxx Q：xxxxxxxx 程涛") == normalize("详询：13912345678 Q：12345678 程涛")
True
>>> normalize("威-信 幺三八一二三四五六七八")
'威信 <phone>'
>>> normalize("x月xx日起，全场5折")
'0月0日起,全场0折'
>>> split_signature("您的验证码是123456。【中国银行】")
('中国银行', '您的验证码是123456。')
>>> template_key("验证码123456，5分钟内有效 http://a.cn/x1") == template_key("验证码987654，5分钟内有效 http://b.cn/y")
True
"""
from __future__ import annotations

import re
import unicodedata
from pathlib import Path

from detector.privacy import may_mask

# Typed tokens the normaliser writes; the model and the engine may look for them.
URL, PHONE, QQ, WECHAT, MONEY, EMOJI, SIGNATURE = "<url>", "<phone>", "<qq>", "<wx>", "<money>", "<emoji>", "<sig>"
TYPED_TOKENS = (URL, PHONE, QQ, WECHAT, MONEY, EMOJI, SIGNATURE)
DIGIT = "0"  # every run of digits not typed otherwise collapses to this one class

_HAN = "\u4e00-\u9fff"
# Every format character (Unicode category Cf, as of Unicode 14: soft hyphen, zero-width and bidi marks, Arabic
# number signs, tag characters…) plus variation selectors: invisible, so they only serve to split keywords.
_INVISIBLE_CHARS = ("\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u200b-\u200f"
                    "\u202a-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb\U000110bd\U000110cd"
                    "\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a\U000e0001"
                    "\U000e0020-\U000e007f\ufe00-\ufe0f")
_EMOJI_CHARS = "\ue000-\uf8ff\U0001f000-\U0001faff\u2600-\u27bf\u2b00-\u2bff\U000f0000-\U0010ffff"
_INVISIBLE = re.compile(f"[{_INVISIBLE_CHARS}]")
INVISIBLE_CHARS, INVISIBLE = _INVISIBLE_CHARS, _INVISIBLE     # for events' signatures: the class body, the pattern
_EMOJI = re.compile(f"[{_EMOJI_CHARS}]+")
# Either of the two: one scan finds that a text (nearly every text) has neither, where the two took two
_INVISIBLE_OR_EMOJI = re.compile(f"[{_INVISIBLE_CHARS}{_EMOJI_CHARS}]")
_SPACES = re.compile(r"\s+")
# Separators spammers put between Chinese characters; Chinese punctuation (，。) is left alone.
_SEPARATED_HAN = re.compile(rf"(?<=[{_HAN}])[\s.\-_*·•~|/\\+=^`'#@&]+(?=[{_HAN}])")
_CN_NUMERAL_RUN = re.compile("[0-9零〇一二三四五六七八九壹贰叁肆伍陆柒捌玖幺]{5,}")
_CN_DIGITS = str.maketrans("零〇一二三四五六七八九壹贰叁肆伍陆柒捌玖幺", "001234567891234567891")
_URL = re.compile(
    r"(?:https?://|www\.)[^\s\u4e00-\u9fff，。！、；：“”（）【】<>]+"
    r"|(?<![a-z0-9@.])[a-z0-9][a-z0-9\-]*(?:\.[a-z0-9\-]+)*\.(?:com|cn|net|org|cc|me|tv|info|biz|top|xyz|vip|co|hk|io|la|so|ly|gl)"
    r"(?![a-z])(?::\d+)?(?:/[^\s\u4e00-\u9fff，。！、；：“”（）【】<>]*)?"
)
# 'x' runs stand for masked digits; short ones only when not inside a latin word ("xbox", "max").
_MASKED_DIGITS = re.compile(r"x{3,}|(?<![a-z])x{1,2}(?![a-z])")
# Applied to UTF-8 bytes: ASCII digits are single bytes there and never part of another character's encoding,
# and a bytes table is ten times faster than a str one
_ASCII_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_GROUPED_NUMBER = re.compile(r"(?<!0)0{3,4}[ \-]0{3,4}[ \-]?0{4}(?!0)")
_WECHAT = re.compile(r"(微信|weixin|wechat|vx|wx|v信|威信|薇信|维信|徽信|微x|卫星)(号)?\s*[:：]?\s*[a-z][a-z0-9_\-]{4,19}(?![a-z0-9_\-])")
_QQ = re.compile(r"(qq|扣扣|企鹅|(?<![a-z])q)(号|群)?\s*[:：]?\s*0{5,11}(?!0)")
_MONEY = re.compile(r"[¥$]\s*0+(?:\.0+)?|0+(?:\.0+)?\s*(?:元|块|万元|万|亿|千元|w(?![a-z]))")
_PHONE = re.compile(r"(?<!0)(?:0{3,4}-)?0{7,12}(?!0)")
_NUMBER = re.compile(r"0+(?:[.:]0+)*")

# --- version 2 of the normaliser (models trained from session 15 on; a model's TextNormalizer names its version).
# Each step undoes a trick the red team (docs/redteam.md) found the version-1 model reading as other n-grams.
#: Enclosed digits NFKC leaves as something else: ⑴ → "(1)", ⒈ → "1.", and ❶ ➀ ➊ ⓵ ⓫ ⓿, which are not compatibility
#: characters at all (the emoji class swallowed ❶…). Folded to their digits before NFKC.
_ENCLOSED_DIGIT_OF = {**{chr(0x2474 + i): str(i + 1) for i in range(20)},      # ⑴ … ⒇
                      **{chr(0x2488 + i): str(i + 1) for i in range(20)},      # ⒈ … ⒛
                      **{chr(0x2776 + i): str(i + 1) for i in range(10)},      # ❶ … ❿
                      **{chr(0x2780 + i): str(i + 1) for i in range(10)},      # ➀ … ➉
                      **{chr(0x278A + i): str(i + 1) for i in range(10)},      # ➊ … ➓
                      **{chr(0x24F5 + i): str(i + 1) for i in range(10)},      # ⓵ … ⓾
                      **{chr(0x24EB + i): str(i + 11) for i in range(10)},     # ⓫ … ⓴
                      "\u24ff": "0"}                                          # ⓿
_ENCLOSED_DIGITS = re.compile("[" + "".join(sorted(_ENCLOSED_DIGIT_OF)) + "]")
#: Combining marks left after NFKC (大̶, 刷̲, 加⃝): they never compose with a Chinese character, so on one they
#: only split n-grams. On a latin letter NFKC has already composed the ones that mean something (é).
_COMBINING = re.compile("[\u0300-\u036f\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff\ufe20-\ufe2f]")
#: Version 2's separators between Chinese characters: version 1's plus 、〡丨ㆍ┆│ (NFKC makes ㆍ U+119E), and one
#: character in brackets
#: (加(微)信). 丨 is itself in the Han block, which the look-behind accepts: 加丨微丨信 loses both.
_SEPARATED_HAN_2 = re.compile(rf"(?<=[{_HAN}])[\s.\-_*·•~|/\\+=^`'#@&、〡丨ㆍ\u119e┆│]+(?=[{_HAN}])")
_BRACKETED_HAN = re.compile(rf"(?<=[{_HAN}])\(([{_HAN}])\)(?=[{_HAN}])")
#: A URL's dot written so that no URL pattern sees it: vns88点com, vns88【.】com, vns88。com, vns88(.)com, www点….
#: Only between a latin letter or digit and a top-level domain (or a further label that ends in one).
_TLDS = "com|cn|net|org|cc|top|xyz|vip|me|tv|info|biz|co|hk|io|la"
_DOT_FORMS = r"\s*(?:点|。|【\.】|\[\.\]|\(\.\)|\{\.\}|dot|\.)\s*"
_DISGUISED_DOT = re.compile(rf"(?<=[a-z0-9]){_DOT_FORMS}(?=(?:[a-z0-9][a-z0-9\-]*{_DOT_FORMS})?(?:{_TLDS})(?![a-z]))")
_ANY_TLD = re.compile(_TLDS)
#: A mobile number written 138.1234.5678 (digits already zeroed): 3-4-4 with dots, nothing dotted around it.
_DOTTED_MOBILE = re.compile(r"(?<![0.])000\.0000\.0000(?![0.])")
#: An unsubscribe instruction in normalised text (回t退订, 回复td退订, 退订回n, 拒收请回复r, [回@0td退订短信] …). Version 2
#: models do not read it: in the training data it marks the normal class, so adding 回T退订 to spam was the
#: cheapest way past the model. The engine's rules judge it instead (missing_unsubscribe, compliant_marketing).
#: A bare 退 after the keyword (回TD退) is one, but not the start of 退款 / 退货 / 退出 … (回复1退款: a refund, as in the
#: engine's _UNSUBSCRIBE), which the model must keep reading.
UNSUBSCRIBE_INSTRUCTION = re.compile(
    r"[\[(]?(?:如需?退订[^。!]{0,10}?(?:回复?|发送?)\s*[\"“]?[a-z0-9]{1,5}[\"”]?(?![a-z])|(?:请|可)?(?:回复?|发送?|编辑短信|编辑)\s*[@\"“”']?\s*[a-z0-9@]{1,5}\s*[\"“”']?\s*(?:可?退订|拒收|退阅|退(?![款货费出回票换]))"
    r"(?:短信|本?服务|信息)?|退订(?:请)?(?:回复?|发送?)?\s*[\"“]?[a-z0-9]{1,4}[\"”]?(?![a-z])|拒收请?回复?\s*[a-z]{1,2}(?![a-z]))[\])]?")
# --- version 3 (models from zh-linear-v7 on): what the red team found version 2 left (docs/redteam.md).
#: Variant characters that are neither traditional forms (the T2S table) nor in use in Chinese text: Japanese
#: shinjitai and Taiwan / Hong Kong variants (恵 for 惠, 楽 for 乐, 増 for 增, 銭 for 钱) read as their simplified
#: character. Frozen from OpenCC's JPVariants, TWVariants and HKVariants (reversed, then through the T2S table)
#: minus every variant that is itself a key of TSCharacters or STCharacters or that jieba's dictionary counts 100
#: times or more as a one-character word (著 予 欠 疏 抬 醋 浜 効 変: Chinese characters) and 糸 (a Chinese character,
#: and spammers write it for 系, not 丝: 联糸); a literal, so an OpenCC update cannot change version 3's output. Then
#: two variants of 款 spammers use for it (贷歀, 贷窾).
_VARIANTS = "両乗亀亜仏仮伝価倹児円処剣剤労勅勧勲単厳収呉呪唖営噛団囲図圏圧塁塩増壌壱売奨嬢実寛対専巌巣巻帯帰庁広廃弐弾従徳徴応恵悩悪懐戸戻払抜択拝拠拡挙挿捜掲掻揺摂撃敍斉斎暁暦曁曽枱栄桜桝桟検楡楽様権歓歩歯歳歴毎気汚沢浄渇済渉渋渓溌滝潀瀬焔焼犠猟獣畳痩痺発皐県睪砕稲穂穏穣竃竜簷粋粛粧糭経絵継続総縁縄縦繊繋繍缶聡聴脳臓舎舗茘荘蔵薫薬蛍蝋衞覇覚覧観訳読譲豊賛転軽輌辺逓遅郷酔醗醤醸釈鉄鉱銭鋳錬関闘陥険隠雑霊頼顕駅駆騒験髄髪鴎鶏鹸黒黙鼈齢"
_VARIANTS_SIMPLIFIED = "两乘龟亚佛假传价俭儿圆处剑剂劳敕劝勋单严收吴咒哑营啮团围图圈压垒盐增壤壹卖奖娘实宽对专岩巢卷带归厅广废贰弹从德徵应惠恼恶怀户戾拂拔择拜据扩举插搜揭搔摇摄击叙齐斋晓历暨曾台荣樱枡栈检榆乐样权欢步齿岁历每气污泽净渴济涉涩溪泼泷潨濑焰烧牺猎兽叠瘦痹发皋县睾碎稻穗稳穰灶龙檐粹肃妆粽经绘继续总缘绳纵纤系绣罐聪听脑脏舍铺荔庄藏薰药萤蜡卫霸觉览观译读让丰赞转轻辆边递迟乡醉酦酱酿释铁鑛钱铸炼关斗陷险隐杂灵赖显驿驱骚验髓发鸥鸡碱黑默鳖龄"
_VARIANT_OF = {**dict(zip(_VARIANTS, _VARIANTS_SIMPLIFIED)), "歀": "款", "窾": "款"}
#: Not in Japanese (dev.tsv's normal class has Weibo posts in it), where they are the right characters, but for 歀 and
#: 窾 (no Japanese character). Japanese is a text whose kana are a quarter or more of its kana and Chinese characters:
#: one kana in a Chinese ad (の for 的; dev.tsv's spam has xxろ起 and xxxxえ/坪) must not undo the table.
#: (Kana letters only, not ー ・ ゛ of the same blocks: a line of ー around a Chinese ad is no Japanese.)
_KANA = re.compile("[\u3041-\u3096\u30a1-\u30fa]")
_HAN_CHAR = re.compile(f"[{_HAN}]")
_NOT_JAPANESE = frozenset("歀窾")
#: Look-alikes that are real characters, so only in the words they fake: 袋款 for 贷款 (not after a bag word:
#: 手袋款式), 夭 for 天 after 今 明 当 每 昨 前 后 (逃之夭夭, 夭折 stay).
_LOOKALIKE_WORD = re.compile("(?<![手口皮布纸钱背挎提腰睡福])袋款|(?<=[今明当每昨前后])夭")
_LOOKALIKE_WORD_OF = {"袋款": "贷款", "夭": "天"}
#: Letters written for digits in a number: o for 0, l and i for 1 (5O万, 1O0元, l38…; lower-cased by then). A
#: latin word made only of digits (or dev.tsv's masked x), o, l and i is a number when it ends in a digit or
#: before an amount's unit (万 元 块 千 亿 w) and starts with a digit, or is phone-like (7 characters, 4 digits:
#: l38…, lxxlxxolool in dev.tsv's masking), and has a real digit, two x or the unit: so 5o万, xo元 (dev.tsv's masking
#: of 50元), 3o0, but not o2o, i5, i9300 (a phone model), xxl, xxxl, xoxo, lol. Masked and real digits do not mix
#: (dev.tsv masks every digit of a message), so x beside a real digit is a letter: ix35, xl1 stay. URLs and WeChat
#: ids are typed before this step.
# every such number has one of o l i beside a digit or x (a pattern that starts with the rarer letters: 3x faster)
_DIGIT_LOOKALIKE_NEAR = re.compile("[oil](?:(?<=[0-9x].)|(?=[0-9x]))")
_DIGIT_LOOKALIKE_WORD = re.compile(r"(?<![a-z0-9])[0-9xoil]+(?:(?![a-z0-9])|(?=w(?![a-z0-9])))")
_AMOUNT_UNITS = "万元块千亿w"
_DIGIT_OF_LOOKALIKE = str.maketrans("oil", "011")
_DIGIT_ENDS = "0123456789x"
#: Version 3's disguised dot: the label before it has a letter, or is a number that is not an hour (vns88点com,
#: 163点com, 58点com), so a clock time before a word that is also a domain (今晚8点tv直播, 9点la, 10点cn) stays text.
_DISGUISED_DOT_3 = re.compile(rf"(?<![a-z0-9\-])([a-z0-9\-]+){_DOT_FORMS}"
                              rf"(?=(?:[a-z0-9][a-z0-9\-]*{_DOT_FORMS})?(?:{_TLDS})(?![a-z]))")
_LATIN_LETTER = re.compile("[a-z]")
_SIGNATURE_END = re.compile(r"(?:【([^【】]{2,16})】|\[([^\[\]]{2,16})\])\s*$")
_SIGNATURE_START = re.compile(r"^\s*(?:【([^【】]{2,16})】|\[([^\[\]]{2,16})\])")


def _load_t2s() -> dict[int, str]:
    """Traditional → simplified, one character to one, from OpenCC's TSCharacters table."""
    try:
        import opencc
    except ImportError:  # the table is an improvement, not a requirement
        return {}
    table = {}
    path = Path(opencc.__file__).parent / "dictionary" / "TSCharacters.txt"
    for line in path.read_text(encoding="utf-8").splitlines():
        trad, _, simp = line.partition("\t")
        if len(trad) == 1 and simp:
            candidates = simp.split(" ")
            # 乾 → "干 乾": the character is also a simplified one; mapping it would corrupt 乾坤, 乾元.
            if len(candidates[0]) == 1 and trad not in candidates:
                table[ord(trad)] = candidates[0]
    return table


_T2S = _load_t2s()


def _changed_by(mapping: dict[str, str], beyond_bmp: bool = False) -> re.Pattern:
    """One character class of ``mapping``'s keys (plus every character beyond the BMP if asked): a table lookup
    per character, several times faster than a translate with a dict (a dict lookup and an int object per
    character).

    >>> _changed_by({"b": "", "a": "", "c": "", "x": ""}).pattern, _changed_by({}).search("abc") is None
    ('[a-cx]', True)
    """
    points = sorted(map(ord, mapping))
    runs: list[list[int]] = []
    for point in points:       # ranges, not one item per character: the pattern compiles ~10x faster
        if runs and runs[-1][1] == point - 1:
            runs[-1][1] = point
        else:
            runs.append([point, point])
    ranges = "".join(re.escape(chr(lo)) + ("-" + re.escape(chr(hi)) if hi > lo else "") for lo, hi in runs)
    if beyond_bmp:
        ranges += "\U00010000-\U0010ffff"
    return re.compile(f"[{ranges}]" if ranges else "(?!)")     # an empty mapping matches nothing


# What NFKC makes of each BMP character it changes on its own (~3,000: full-width forms, circled digits, ...)
_NFKC_OF = {c: folded for c in map(chr, range(0x10000))
            if not "\ud800" <= c <= "\udfff" and (folded := unicodedata.normalize("NFKC", c)) != c}
_NFKC_CHANGES = _changed_by(_NFKC_OF)
_T2S_OF = {chr(k): v for k, v in _T2S.items() if k <= 0xFFFF}
_T2S_CHANGES = _changed_by(_T2S_OF, beyond_bmp=bool(_T2S))   # beyond the BMP (rare): looked up in _T2S
_VARIANT_CHANGES = _changed_by(_VARIANT_OF)


def nfkc(text: str) -> str:
    """``unicodedata.normalize("NFKC", text)``, about three times faster on SMS text.

    Each character that NFKC changes on its own is replaced by its own NFKC. If the result is normalised (a
    quick check for Chinese and ASCII), it is the NFKC of the whole text: the two have the same compatibility
    decomposition, and a text has one normal form. Otherwise (combining marks, Hangul jamo, characters beyond
    the BMP) the whole text goes through the library. A test compares the two on both data files and on
    generated text.

    >>> nfkc("加微信：ＡＢＣ１２３，５０元，①") == unicodedata.normalize("NFKC", "加微信：ＡＢＣ１２３，５０元，①")
    True
    """
    folded = _NFKC_CHANGES.sub(_nfkc_of, text)
    return folded if unicodedata.is_normalized("NFKC", folded) else unicodedata.normalize("NFKC", text)


def _nfkc_of(match: re.Match) -> str:
    return _NFKC_OF[match.group()]


def to_simplified(text: str) -> str:
    """Traditional characters to simplified ones (:data:`_T2S`); ``text.translate(_T2S)``, faster.

    >>> to_simplified("詳詢客服熱線")
    '详询客服热线'
    """
    return _T2S_CHANGES.sub(_simplified_of, text)


def _simplified_of(match: re.Match) -> str:
    char = match.group()
    return _T2S.get(ord(char), char)


def split_signature(text: str) -> tuple[str | None, str]:
    """The sender's signature (【…】 or […], at the end or the start) and the body without it.

    >>> split_signature("【顺丰速运】【优质服务】感谢您")
    ('顺丰速运', '【优质服务】感谢您')
    >>> split_signature("没有签名")
    (None, '没有签名')
    """
    match = _SIGNATURE_END.search(text) or _SIGNATURE_START.search(text)
    if match is None:
        return None, text
    signature = match.group(1) or match.group(2)
    body = (text[:match.start()] + text[match.end():]).strip()
    return signature.strip(), body


def _typed_numbers(text: str, version: int = 1) -> str:
    """Digits to one class, then typed tokens for the numbers that mean something. Each pattern is tried only
    when the text has what every match of it contains (tests/test_textnorm.py checks each such claim): most
    texts have no grouped number, QQ number, amount or phone number, and each pass costs 1–5 µs."""
    if "x" in text:
        text = _MASKED_DIGITS.sub(lambda m: DIGIT * len(m.group()), text)
    text = text.encode("utf-8", "surrogatepass").translate(_ASCII_DIGITS_TO_ZERO).decode("utf-8", "surrogatepass")
    if DIGIT not in text:  # most chat-like texts: skip the number patterns
        return text
    if _may_be_grouped_number(text):
        text = _GROUPED_NUMBER.sub(lambda m: DIGIT * (len(m.group()) - m.group().count(" ") - m.group().count("-")),
                                   text)
    if version >= 2 and "000.0000.0000" in text:
        text = _DOTTED_MOBILE.sub(DIGIT * 11, text)
    if _may_be_qq(text):
        text = _QQ.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}:{QQ}", text)
    if _may_be_money(text):
        text = _MONEY.sub(MONEY, text)
    if "0000000" in text:       # every phone number has 7 digits in a row
        text = _PHONE.sub(PHONE, text)
    return _NUMBER.sub(DIGIT, text)


def _may_be_grouped_number(text: str) -> bool:
    return "000 " in text or "000-" in text


def _may_be_qq(text: str) -> bool:
    return "00000" in text and ("q" in text or "扣扣" in text or "企鹅" in text)


def _may_be_money(text: str) -> bool:
    return ("元" in text or "¥" in text or "$" in text or "块" in text or "万" in text or "亿" in text
            or "w" in text)


#: The normaliser's versions: 1 (models up to zh-linear-v4), 2 (zh-linear-v5, v6) and 3 (zh-linear-v7, a candidate;
#: see "version 2" and "version 3" above). A model's TextNormalizer keeps the version it was trained with.
VERSIONS = (1, 2, 3)
#: The version the engine's own rules and MinHash read, and ``smsguard train --normalizer``'s default: the promoted
#: model's, so that the engine's second cleaning of a new template (normalize, after the model's model_text) is a
#: hit in _recently_cleaned. Version 3 changes no rule judgement on either data file (docs/model.md, "v7"); make it 3
#: in the commit that promotes a version-3 model.
LATEST = 2

# The last texts clean() saw and what it made of them, per version. The engine cleans each new template twice,
# once inside the model (model_text) and once for its MinHash bands (normalize), in the same micro-batch: the
# second is a hit when the model reads the latest version.
_recently_cleaned: dict[int, dict[str, str]] = {version: {} for version in VERSIONS}
_RECENT_MAX = 4096


def forget_cleaned() -> None:
    """Forget the recently cleaned texts (a benchmark's every run starts cold)."""
    for recent in _recently_cleaned.values():
        recent.clear()


def clean(text: str, version: int = 1) -> str:
    """Normalise the whole text, signature included (the model sees both parts through this).

    >>> clean("加〡微〡信 vns88点com ❶❸❽❶❷❸❹❺❻❼❽", version=2)
    '加微信 <url> <phone>'
    >>> clean("加〡微〡信 vns88点com", version=1)
    '加〡微〡信 vns0点com'
    """
    recent = _recently_cleaned.get(version)
    if recent is None:
        raise ValueError(f"no text normaliser version {version!r} (known: {VERSIONS})")
    cleaned = recent.get(text)
    if cleaned is None:
        cleaned = _clean(text, version)
        if len(recent) >= _RECENT_MAX:
            recent.clear()
        recent[text] = cleaned
    return cleaned


def _clean(text: str, version: int = 1) -> str:
    """Version 1's steps; version 2 also undoes the tricks of docs/redteam.md (each step marked *), version 3 what
    version 2 left (marked **)."""
    if version >= 2 and _ENCLOSED_DIGITS.search(text) is not None:                     # * ⑴ ❶ ➀ …
        text = _ENCLOSED_DIGITS.sub(lambda m: _ENCLOSED_DIGIT_OF[m.group()], text)
    text = to_simplified(nfkc(text)).lower()
    if version >= 3:
        if _VARIANT_CHANGES.search(text) is not None:                                   # ** 贷歀 恵 楽
            text = _VARIANT_CHANGES.sub(_variant_in_japanese if _japanese(text) else _variant_of, text)
    if _INVISIBLE_OR_EMOJI.search(text) is not None:
        text = _INVISIBLE.sub("", text)
        text = _EMOJI.sub(f" {EMOJI} ", text)
    if version >= 2 and _COMBINING.search(text) is not None:                           # * 大̶促̶
        text = _COMBINING.sub("", text)
    text = _CN_NUMERAL_RUN.sub(lambda m: m.group().translate(_CN_DIGITS), text)
    if version >= 2:
        text = _SEPARATED_HAN_2.sub("", text)                                          # * 、〡丨ㆍ┆│
        if "(" in text:
            text = _BRACKETED_HAN.sub(r"\1", text)                                     # * 加(微)信
        if _ANY_TLD.search(text) is not None:                                          # * vns88点com
            text = _DISGUISED_DOT.sub(".", text) if version == 2 else _DISGUISED_DOT_3.sub(_dotted_label, text)
    else:
        text = _SEPARATED_HAN.sub("", text)
    # after the separators are gone: 袋 款 and 今 夭 are 袋款 and 今夭 only from here on
    if version >= 3 and ("夭" in text or "袋款" in text):                              # ** 袋款 今夭
        text = _LOOKALIKE_WORD.sub(lambda m: _LOOKALIKE_WORD_OF[m.group()], text)
    if "." in text or "http" in text:  # every URL pattern needs one of them
        text = _URL.sub(f" {URL} ", text)
    text = _WECHAT.sub(lambda m: f"{m.group(1)}{m.group(2) or ''}:{WECHAT}", text)
    if version >= 3 and _DIGIT_LOOKALIKE_NEAR.search(text) is not None:               # ** 5o万 1o0元
        text = _DIGIT_LOOKALIKE_WORD.sub(_digits_of_lookalikes, text)
    text = _typed_numbers(text, version)                                               # * 138.1234.5678
    return _SPACES.sub(" ", text).strip()


def _variant_of(match: re.Match) -> str:
    return _VARIANT_OF[match.group()]


def _variant_in_japanese(match: re.Match) -> str:
    variant = match.group()
    return _VARIANT_OF[variant] if variant in _NOT_JAPANESE else variant


def _japanese(text: str) -> bool:
    """Kana are a quarter or more of the text's kana and Chinese characters (see _KANA).

    >>> _japanese("楽しかった"), _japanese("我の店，楽享优恵"), _japanese("优恵多多")
    (True, False, False)
    """
    kana = len(_KANA.findall(text))
    return kana > 0 and 3 * kana >= len(_HAN_CHAR.findall(text))


def _dotted_label(match: re.Match) -> str:
    """A disguised dot after a domain label (version 3): a label with a letter, or a number above 24 (not an hour).

    >>> _DISGUISED_DOT_3.sub(_dotted_label, "vns88点com 今晚8点tv直播 163 点 com 58点com 1-2点cn")
    'vns88.com 今晚8点tv直播 163.com 58.com 1-2点cn'
    """
    label = match.group(1)
    # len() first: int() refuses a string of over 4,300 digits (a hostile label), and any 3-digit number is over 24
    if _LATIN_LETTER.search(label) is not None or (label.isdigit() and (len(label) > 2 or int(label) > 24)):
        return label + "."
    return match.group()


def _digits_of_lookalikes(match: re.Match) -> str:
    """A number with letters written for digits (version 3, :data:`_DIGIT_LOOKALIKE_WORD`), its letters made digits.

    >>> _DIGIT_LOOKALIKE_WORD.sub(_digits_of_lookalikes, "5o万 1o0元 xo元 xxoo元 3o0人 lxxlxxolool 5ow")
    '50万 100元 x0元 xx00元 300人 1xx1xx01001 50w'
    >>> _DIGIT_LOOKALIKE_WORD.sub(_digits_of_lookalikes, "o2o i5 xxl xoxo lol ix35 i9300")
    'o2o i5 xxl xoxo lol ix35 i9300'
    """
    word = match.group()
    end = match.end()
    unit = end < len(match.string) and match.string[end] in _AMOUNT_UNITS
    masked = word.count("x")
    digits = len(word) - word.count("o") - word.count("i") - word.count("l")
    phone_like = len(word) >= 7 and digits >= 4
    if (digits == masked or masked == 0) and (word[-1] in _DIGIT_ENDS or unit or phone_like) \
            and (word[0] in _DIGIT_ENDS or phone_like) and (unit or masked >= 2 or digits > masked):
        return word.translate(_DIGIT_OF_LOOKALIKE)
    return word


def normalize(text: str, version: int = LATEST) -> str:
    """The canonical normalised body: typed tokens, one digit class, signature removed."""
    _, body = split_signature(text)
    return clean(body, version)


_KEY_URL = re.compile(r"(?:https?://|www\.)[!-~]+|[a-z0-9\-.]+\.(?:com|cn|net|org|cc)(?:/[!-~]*)?", re.I)
_KEY_NUMBERISH = re.compile(r"[a-z0-9]*[0-9０-９][a-z0-9０-９]*", re.I)
_KEY_SPACE = re.compile(r"[\s.,:：，。￥¥$-]+")


def template_key(text: str) -> str:
    """Regex-only key shared by texts that differ only in digits, codes, URLs, phone numbers or amounts.

    >>> template_key("您的快递 1093218216211 已到 http://x.cn/a") == template_key("您的快递 77 已到 www.y.com/b")
    True
    """
    if "." in text or "ttp" in text or "TTP" in text:  # every URL pattern needs one of them
        text = _KEY_URL.sub("U", text)
    text = _KEY_SPACE.sub("", text)  # separators first: "1,200.50" is one number
    return _KEY_NUMBERISH.sub("#", text)


class TemplateKeys:
    """:func:`template_key` memoised on the content with its ASCII digits zeroed.

    The key cannot depend on which digit a digit is (every digit run becomes ``#``), so messages of one
    template that differ only in codes and numbers share one entry. Computing the key (three regex passes)
    cost more than anything else the engine did once per message; zeroing takes one ``bytes.translate``.
    The engine and :class:`~detector.model.CachedScorer` key their caches with it. Each entry also keeps
    :func:`detector.privacy.may_mask` of the content, which the digits' positions decide as well.

    >>> keys = TemplateKeys()
    >>> keys.get("您的验证码是482913，5分钟内有效") == keys.get("您的验证码是100377，5分钟内有效")
    True
    >>> keys.get("退款 1,200.50 元") == template_key("退款 1,200.50 元")
    True
    >>> keys.lookup("请致电13812345678"), keys.lookup("请致电13987654321"), keys.lookup("验证码482913")
    (('请致电#', True), ('请致电#', True), ('验证码#', False))
    """

    def __init__(self, size: int = 100_000):
        self._cache: dict[bytes, tuple[str, bool]] = {}
        self._size = size

    def lookup(self, content: str) -> tuple[str, bool]:
        """``(template key, whether masking numbers may change the content)``."""
        probe = content.encode("utf-8", "surrogatepass").translate(_ASCII_DIGITS_TO_ZERO)
        entry = self._cache.get(probe)
        if entry is None:
            entry = (template_key(content), may_mask(content))
            if len(self._cache) >= self._size:      # evict the oldest entry (dicts keep insertion order)
                del self._cache[next(iter(self._cache))]
            self._cache[probe] = entry
        return entry

    def get(self, content: str) -> str:
        return self.lookup(content)[0]
