"""Keep MSISDNs out of every output: keyed hashes for recipients, masks for numbers in text.

>>> h = RecipientHasher("k" * 16)
>>> h("+8613812345678") == h("13812345678") == h("8613812345678")
True
>>> h("13812345678")[:2], len(h("13812345678"))
('r_', 22)
>>> mask_numbers("call 13812345678 or 021-62345678 now")
'call 138****5678 or 021-****5678 now'
>>> mask_numbers("call +86 138-1234-5678")
'call +86 138-****-5678'
>>> scrub_msisdns(b'{"recipient": "13812345678"}', h) == b'{"recipient": "' + h("13812345678").encode() + b'"}'
True
>>> scrub_msisdns(b'to +86 138-1234-5678', h) == b'to ' + h("13812345678").encode()
True
"""
from __future__ import annotations

import hashlib
import re

# Mainland mobile numbers with an optional +86 / 86 / 0086 prefix, and other long digit runs.
_MSISDN_BYTES = re.compile(rb"(?<!\d)(?:(?:\+?86|0086)[ \-]?)?(1[3-9]\d[ \-]?\d{4}[ \-]?\d{4})(?!\d)")
_NUMBER_TEXT = re.compile(r"(?<!\d)(\d{3}-?|\d{4}-)(\d{2,4})(\d{4})(?!\d)")
# A mobile number in 3-4-4 groups (138 1234 5678, 138-1234-5678) or after China's country code (+86, 86, 0086,
# with or without a separator; any other 13 digits, a waybill or order number, is left alone): its second group
# is masked. _NUMBER_TEXT alone saw none of these (too many digits,
# or spaces). Like _NUMBER_TEXT, it looks at where the digits are, never at which digits they are (may_mask).
_GROUPED_MOBILE = re.compile(r"(?<!\d)((?:\+|00)?86[ \-]?)?(\d{3}[ \-]?)\d{4}([ \-]?\d{4})(?!\d)")
# Where _GROUPED_MOBILE can mask what _NUMBER_TEXT does not: a separator before a group of 4 digits, or a country code
# glued to the number (12 digits or more). Elsewhere its only match is a plain 11-digit number, which _NUMBER_TEXT
# masks the same way; and its optional prefix makes it try hard at every digit (2.5x _NUMBER_TEXT's time).
_GROUPED_HINT = re.compile(r"\d[ \-]\d{4}|\d{12}")
# What every match of either contains: 9 digits in a row, or a digit, a separator and 4 digits. Most texts
# (verification codes, notices) have neither, and this search costs a third of _NUMBER_TEXT's.
_MAYBE_NUMBER_TEXT = re.compile(r"\d(?:\d{8}|[ \-]\d{4})")


def canonical_msisdn(value: str) -> str:
    """Strip separators and the China country code so one subscriber has one hash."""
    if len(value) == 11 and value[0] == "1" and value.isdigit():     # how most arrive: nothing to strip
        return value
    digits = value if value.isdigit() else re.sub(r"[\s\-()]", "", value)   # bare, with a country code
    if digits.startswith("+"):
        digits = digits[1:]
    if digits.startswith("0086"):
        digits = digits[4:]
    elif digits.startswith("86") and len(digits) == 13:
        digits = digits[2:]
    return digits


_IPAD = bytes(x ^ 0x36 for x in range(256))     # RFC 2104's inner and outer pads, as translate tables
_OPAD = bytes(x ^ 0x5C for x in range(256))


class RecipientHasher:
    """HMAC-SHA256 of the canonical MSISDN, truncated: stable per subscriber, useless without the key.

    The HMAC is computed from SHA-256 states primed with the padded key once, the same bytes as
    ``hmac.new(secret, msisdn, sha256)`` (tests/test_privacy.py checks), at a third of its cost: every
    message's recipient is hashed at ingress, and OpenSSL 3 sets up a keyed MAC slowly.
    """

    __slots__ = ("_inner", "_outer", "_cache")

    def __init__(self, secret: str):
        key = secret.encode()
        if len(key) > 64:                   # the block size: longer keys are hashed first (RFC 2104)
            key = hashlib.sha256(key).digest()
        key = key.ljust(64, b"\0")
        self._inner = hashlib.sha256(key.translate(_IPAD))
        self._outer = hashlib.sha256(key.translate(_OPAD))
        self._cache: dict[str, str] = {}

    def __call__(self, msisdn: str) -> str:
        hit = self._cache.get(msisdn)
        if hit is not None:
            return hit
        inner = self._inner.copy()
        inner.update(canonical_msisdn(msisdn).encode())
        outer = self._outer.copy()
        outer.update(inner.digest())
        digest = outer.hexdigest()[:20]
        value = f"r_{digest}"
        if len(self._cache) > 200_000:  # bounded: recipients are mostly distinct
            self._cache.clear()
        self._cache[msisdn] = value
        return value


def may_mask(text: str) -> bool:
    """Whether :func:`mask_numbers` may change ``text``. It depends only on where the digits are, not on which
    digits they are, so it can be cached per template (:class:`detector.textnorm.TemplateKeys`).

    >>> may_mask("验证码482913"), may_mask("致电13812345678"), may_mask("致电010-62345678")
    (False, True, True)
    """
    return _MAYBE_NUMBER_TEXT.search(text) is not None


def mask_numbers(text: str) -> str:
    """Mask the middle of phone-like numbers for display (operators see 138****5678).

    >>> mask_numbers("致电13812345678或010-62345678，验证码482913")
    '致电138****5678或010-****5678，验证码482913'
    """
    if _MAYBE_NUMBER_TEXT.search(text) is None:
        return text
    return _mask_all(text)


def _mask_all(text: str) -> str:
    """:func:`mask_numbers` without its pre-check.

    >>> _mask_all("联系 +86 138 1234 5678 或 8613812345678")
    '联系 +86 138 **** 5678 或 86138****5678'
    """
    if _GROUPED_HINT.search(text) is not None:
        text = _GROUPED_MOBILE.sub(lambda m: f"{m.group(1) or ''}{m.group(2)}****{m.group(3)}", text)
    return _NUMBER_TEXT.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)


def scrub_msisdns(raw: bytes, hasher: RecipientHasher) -> bytes:
    """Replace every mobile number in raw bytes by its keyed hash (dead letters keep everything else)."""
    return _MSISDN_BYTES.sub(lambda m: hasher(canonical_msisdn(m.group(1).decode())).encode(), raw)
