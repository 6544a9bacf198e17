"""The spam classifier at serving time: one scikit-learn Pipeline in one skops artifact.

The pipeline is ``TextNormalizer`` (detector.textnorm) → features (jieba words and character 1–3-grams
hashed per batch by :class:`HashedTokenCounts`, TF-IDF, plus a few structural flags) → a calibrated
logistic regression. Its pieces live here, not in ``training/``, because loading the artifact needs them.
Models before v2 hash :func:`analyze`'s tokens with a HashingVectorizer; they still load, score and explain.

Loading never unpickles: :func:`load_model` checks the artifact's sha256 against ``manifest.json``
and then ``skops.io.load`` with an explicit list of trusted types; anything else is a ModelError.

>>> analyze("加微信:<wx> 领<money>")[:6]
['w:加微信', 'w:Ⓦ', 'w:领', 'w:Ⓜ', 'c:加微', 'c:微信']
>>> model_text("回T退订【京东】")
'回t退订 <sig> 京东'
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import re
from collections import OrderedDict
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from scipy import sparse
from sklearn.base import BaseEstimator, ClassifierMixin, TransformerMixin

from detector.errors import ModelError
from detector.textnorm import (EMOJI, MONEY, PHONE, QQ, SIGNATURE, TYPED_TOKENS, UNSUBSCRIBE_INSTRUCTION, URL,
                               WECHAT, clean, split_signature, TemplateKeys)

log = logging.getLogger(__name__)

ARTIFACT = "model.skops"
MANIFEST = "manifest.json"

# Typed tokens become one circled letter each inside the analyzer, so a character n-gram never splits
# "<url>" into "<u", "ur"… and explanations stay readable. They cannot occur in normalised text: NFKC
# turns circled letters into plain ones.
_SENTINEL = {URL: "Ⓤ", PHONE: "Ⓟ", QQ: "Ⓠ", WECHAT: "Ⓦ", MONEY: "Ⓜ", EMOJI: "Ⓔ", SIGNATURE: "Ⓢ"}
_TYPED = re.compile("|".join(re.escape(t) for t in TYPED_TOKENS))
_SENTINELS = "".join(_SENTINEL.values())
_WORDISH = re.compile(f"[\u4e00-\u9fff]+|[a-z]+|0|[{_SENTINELS}]")
# No punctuation words and no length feature, on purpose: in dev.tsv "normal" is mostly unpunctuated news
# and chat fragments, so "has a comma" or "is long" would be learned as spam and flag every real notification.
# Punctuation stays inside character n-grams ("!回", "【"), where it carries meaning.
_UNSUBSCRIBE = re.compile(r"退订|退定|回t|回复t|回td|拒收|退回|取消订阅|unsubscribe|回n")
# Every match of UNSUBSCRIBE_INSTRUCTION has one of these (tests/test_textnorm.py checks it): most texts have none.
_MAY_INSTRUCT_UNSUBSCRIBE = re.compile("退|拒收")

# Words of today's SMS that jieba's 2013 dictionary lacks ("微信" would come out as 微/信).
DOMAIN_WORDS = ("微信", "加微信", "微信号", "威信", "薇信", "公众号", "二维码", "扫码", "验证码", "退订", "回复", "红包",
                "支付宝", "淘宝", "天猫", "京东", "app", "客服", "贷款", "无抵押", "代开", "发票", "刷单", "兼职")

_segment_cache: dict[str, tuple[str, ...]] = {}
_lengths_cache: dict[str, tuple[int, ...]] = {}
_SEGMENT_CACHE_MAX = 200_000


_cutter = None
_MISSING = object()


def _jieba():
    import jieba

    if not jieba.dt.initialized:
        jieba.setLogLevel(logging.WARNING)
        jieba.dt.initialize()
        for word in DOMAIN_WORDS:
            jieba.dt.add_word(word)
    return jieba.dt


class _DagCutter:
    """jieba's no-HMM cut of an all-Chinese run (``jieba.cut(run, HMM=False)``), in one pass.

    Same dictionary, same scores in the same float order, same tie-break (the longer word), so the same
    words; but word log-probabilities are computed once instead of per call, and the DAG and the best route
    are built together. That halves the cost of the step that dominates an uncached score.
    """

    def __init__(self, tokenizer):
        log_total = math.log(tokenizer.total)
        # One lookup per step: a word's log-probability, or None for a prefix that is not a word itself.
        self.table = {w: (math.log(f) - log_total if f else None) for w, f in tokenizer.FREQ.items()}
        self.unknown = math.log(1) - log_total

    def cut(self, run: str) -> tuple[str, ...]:
        table, missing = self.table, _MISSING
        n = len(run)
        score = [0.0] * (n + 1)
        end = [0] * n
        for start in range(n - 1, -1, -1):
            best, best_end = None, start
            i, frag = start, run[start]
            while i < n:
                p = table.get(frag, missing)
                if p is missing:
                    break
                if p is not None:
                    s = p + score[i + 1]
                    if best is None or s >= best:
                        best, best_end = s, i
                i += 1
                frag = run[start:i + 1]
            if best is None:
                best = self.unknown + score[start + 1]
            score[start], end[start] = best, best_end
        words, x = [], 0
        while x < n:
            y = end[x] + 1
            words.append(run[x:y])
            x = y
        return tuple(words)


def _segmenter() -> _DagCutter:
    """The word segmenter, built on first use (~0.3 s, once per process)."""
    global _cutter
    if _cutter is None:
        _cutter = _DagCutter(_jieba())
    return _cutter


def _segment(run: str) -> tuple[str, ...]:
    """jieba words of one run of Chinese characters (without HMM: faster, and steadier on short SMS).

    Runs are clauses, which repeat across messages, so the result is cached.
    """
    words = _segment_cache.get(run)
    if words is None:
        words = _segmenter().cut(run)
        if len(_segment_cache) >= _SEGMENT_CACHE_MAX:
            _segment_cache.clear()
        _segment_cache[run] = words
    return words


def _segment_lengths(run: str) -> tuple[int, ...]:
    """Word lengths of :func:`_segment` (what the span hasher needs), cached like the words."""
    lengths = _lengths_cache.get(run)
    if lengths is None:
        lengths = tuple(map(len, _segment(run)))
        if len(_lengths_cache) >= _SEGMENT_CACHE_MAX:
            _lengths_cache.clear()
        _lengths_cache[run] = lengths
    return lengths


def clear_segment_caches() -> None:
    """Forget every cached clause segmentation (benchmarks measure a cold start with it)."""
    _segment_cache.clear()
    _lengths_cache.clear()


def model_text(text: str, version: int = 1) -> str:
    """What the model reads: the normalised body, then ``<sig>`` and the normalised signature if any.
    ``version`` is the normaliser's (:data:`detector.textnorm.VERSIONS`)."""
    signature, body = split_signature(text)
    normal = clean(body, version)
    if version >= 2 and _MAY_INSTRUCT_UNSUBSCRIBE.search(normal) is not None:
        # Left to the rules: in the training data an unsubscribe line marks the normal class, so spam wearing
        # one (回T退订) read as normal. Measured in session 15 (docs/model.md): leaving it out costs nothing.
        normal = " ".join(UNSUBSCRIBE_INSTRUCTION.sub(" ", normal).split())
    return f"{normal} {SIGNATURE} {clean(signature, version)}" if signature else normal


def analyze(text: str) -> list[str]:
    """Features of one model text: ``w:`` jieba words and ``c:`` character 2- and 3-grams."""
    compact = _TYPED.sub(lambda m: _SENTINEL[m.group()], text)
    features = []
    for piece in _WORDISH.findall(compact):
        if len(piece) > 1 and piece[0] >= "\u4e00":
            features.extend("w:" + w for w in _segment(piece))
        else:
            features.append("w:" + piece)
    chars = compact.replace(" ", "")
    features.extend("c:" + chars[i:i + 2] for i in range(len(chars) - 1))
    features.extend("c:" + chars[i:i + 3] for i in range(len(chars) - 2))
    return features


_WORD, _CHAR = 1, 2
_KIND_PREFIX = {_WORD: "w:", _CHAR: "c:"}
_U64 = np.uint64
_BASE = 0x9E3779B97F4A7C15                       # odd, so it has an inverse modulo 2**64
_BASE_INVERSE = pow(_BASE, -1, 1 << 64)
_powers = np.ones(1, dtype=np.uint64)
_inverse_powers = np.ones(1, dtype=np.uint64)


def _power_tables(n: int) -> tuple[np.ndarray, np.ndarray]:
    """BASE**i and BASE**-i modulo 2**64 for i < n (grown on demand, shared by every batch)."""
    global _powers, _inverse_powers
    if len(_powers) < n:
        size = max(n, 2 * len(_powers), 1 << 16)
        _powers = np.concatenate([[_U64(1)], np.cumprod(np.full(size - 1, _BASE, dtype=np.uint64))])
        _inverse_powers = np.concatenate([[_U64(1)], np.cumprod(np.full(size - 1, _BASE_INVERSE, dtype=np.uint64))])
    return _powers, _inverse_powers


def _token_spans(texts: Sequence[str], ngram_min: int, ngram_max: int, words: bool = True,
                 keep_spaces: bool = False):
    """One batch as one string plus every feature as a span of it: (buffer, starts, lengths, kinds, docs).

    Per text the buffer holds the compact text (typed tokens as one sentinel character each), whose jieba
    words and latin/digit/sentinel pieces are ``w:`` spans (unless ``words`` is false), then the same text
    without spaces (with them if ``keep_spaces``), whose character n-grams are ``c:`` spans. Only the words
    need Python per token; the n-grams are numpy ranges.
    """
    pieces: list[str] = []
    word_starts: list[int] = []
    word_lengths: list[int] = []
    words_per_text: list[int] = []
    char_lo: list[int] = []
    char_hi: list[int] = []
    position = 0
    for text in texts:
        compact = _TYPED.sub(lambda m: _SENTINEL[m.group()], text) if "<" in text else text
        before = len(word_starts)
        for match in _WORDISH.finditer(compact) if words else ():
            piece, start = match.group(), position + match.start()
            if len(piece) > 1 and piece[0] >= "\u4e00":
                for length in _segment_lengths(piece):
                    word_starts.append(start)
                    word_lengths.append(length)
                    start += length
            else:
                word_starts.append(start)
                word_lengths.append(len(piece))
        words_per_text.append(len(word_starts) - before)
        chars = compact if keep_spaces else compact.replace(" ", "")
        position += len(compact)
        char_lo.append(position)
        position += len(chars)
        char_hi.append(position)
        pieces.append(compact)
        pieces.append(chars)
    n_texts = len(texts)
    starts = [np.asarray(word_starts, dtype=np.int64)]
    lengths = [np.asarray(word_lengths, dtype=np.int64)]
    kinds = [np.full(len(word_starts), _WORD, dtype=np.uint64)]
    docs = [np.repeat(np.arange(n_texts), words_per_text)]
    lo = np.asarray(char_lo, dtype=np.int64)
    size = np.asarray(char_hi, dtype=np.int64) - lo
    for n in range(ngram_min, ngram_max + 1):
        count = np.maximum(size - n + 1, 0)
        total = int(count.sum())
        first = np.cumsum(count) - count
        starts.append(np.repeat(lo - first, count) + np.arange(total))
        lengths.append(np.full(total, n, dtype=np.int64))
        kinds.append(np.full(total, _CHAR, dtype=np.uint64))
        docs.append(np.repeat(np.arange(n_texts), count))
    return ("".join(pieces), np.concatenate(starts), np.concatenate(lengths), np.concatenate(kinds),
            np.concatenate(docs))


def _span_indices(buffer: str, starts: np.ndarray, lengths: np.ndarray, kinds: np.ndarray,
                  n_features_log2: int) -> np.ndarray:
    """Feature index of every span in a hashed feature space: the top bits of :func:`_span_hashes`."""
    return (_span_hashes(buffer, starts, lengths, kinds) >> _U64(64 - n_features_log2)).astype(np.int64)


def _span_hashes(buffer: str, starts: np.ndarray, lengths: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """A 64-bit hash of every span: a polynomial hash of its characters (position-free, via prefix sums
    modulo 2**64), mixed with its length and kind, then splitmix64's finaliser."""
    codes = np.frombuffer(buffer.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    powers, inverse_powers = _power_tables(len(codes) + 1)
    prefix = np.zeros(len(codes) + 1, dtype=np.uint64)
    np.cumsum(codes * powers[:len(codes)], out=prefix[1:])
    x = (prefix[starts + lengths] - prefix[starts]) * inverse_powers[starts]
    x ^= lengths.astype(np.uint64) * _U64(0xD6E8FEB86659FD93) + kinds * _U64(0xA0761D6478BD642F)
    x ^= x >> _U64(30)
    x *= _U64(0xBF58476D1CE4E5B9)
    x ^= x >> _U64(27)
    x *= _U64(0x94D049BB133111EB)
    x ^= x >> _U64(31)
    return x


_BUCKET_BITS = 20


def _vocabulary_columns(vocabulary: np.ndarray, bounds: np.ndarray, hashes: np.ndarray) -> np.ndarray:
    """Each hash's index in the sorted ``vocabulary``, or -1. ``bounds[b]`` is where the hashes whose top
    ``_BUCKET_BITS`` bits are ``b`` start; a bucket holds well under one entry on average, so most lookups are
    one comparison and the loop runs as many rounds as the fullest bucket searched has entries.

    >>> vocabulary = np.array([3, 7, 1 << 62, (1 << 62) + 5], dtype=np.uint64)
    >>> bounds = np.searchsorted(vocabulary, np.arange((1 << _BUCKET_BITS) + 1, dtype=np.uint64)
    ...                          << np.uint64(64 - _BUCKET_BITS))
    >>> bounds[-1] = len(vocabulary)
    >>> _vocabulary_columns(vocabulary, bounds, np.array([7, 5, (1 << 62) + 5, 3], dtype=np.uint64)).tolist()
    [1, -1, 3, 0]
    """
    bucket = (hashes >> _U64(64 - _BUCKET_BITS)).astype(np.int64)
    position, end = bounds[bucket], bounds[bucket + 1]
    columns = np.full(len(hashes), -1, dtype=np.int64)
    todo = np.flatnonzero(position < end)
    while len(todo):
        at = position[todo]
        found = vocabulary[at] == hashes[todo]
        columns[todo[found]] = at[found]
        todo = todo[~found]
        position[todo] += 1
        todo = todo[position[todo] < end[todo]]
    return columns


class HashedTokenCounts(TransformerMixin, BaseEstimator):
    """Pipeline step: model texts → counts of hashed ``w:`` jieba words and ``c:`` character n-grams.

    The features of :func:`analyze` (plus n-grams from ``ngram_min``), hashed in one vectorised pass per
    batch instead of building a Python string per token for a HashingVectorizer.

    >>> counts = HashedTokenCounts(n_features_log2=16).transform(["加微信领<money>", "加微信"])
    >>> counts.shape, int(counts[1].sum())        # w:加微信 + c: 加 微 信 加微 微信 加微信
    ((2, 65536), 7)
    >>> sorted(HashedTokenCounts(n_features_log2=16).token_names("领<money>").values())
    [['c:Ⓜ'], ['c:领'], ['c:领Ⓜ'], ['w:Ⓜ'], ['w:领']]

    ``min_df`` set: a fitted vocabulary instead of a hashed space. ``fit`` keeps the tokens found in at least
    ``min_df`` training texts, one column each (found by their 64-bit hash, so still no Python string per
    token); other tokens are dropped. Hashing into 2**20 columns cannot drop a token seen once: it shares its
    column with useful ones and adds noise to them, and most character 3-grams are seen once.
    ``words=False`` leaves out the jieba words (character n-grams only). ``keep_spaces=True`` cuts the
    n-grams from the text with its spaces (the normaliser already joined Chinese characters split by spaces;
    the spaces left mark word and signature boundaries, ``款 Ⓢ``), not from a space-free copy.

    >>> vocab = HashedTokenCounts(min_df=2, words=False).fit(["加微信", "加微信领红包", "红包"])
    >>> vocab.n_features, sorted(name for names in vocab.token_names("加微信抢红包").values() for name in names)
    (9, ['c:信', 'c:加', 'c:加微', 'c:加微信', 'c:包', 'c:微', 'c:微信', 'c:红', 'c:红包'])
    """

    def __init__(self, n_features_log2: int = 20, ngram_min: int = 1, ngram_max: int = 3,
                 min_df: int | None = None, words: bool = True, keep_spaces: bool = False):
        self.n_features_log2 = n_features_log2
        self.ngram_min = ngram_min
        self.ngram_max = ngram_max
        self.min_df = min_df
        self.words = words
        self.keep_spaces = keep_spaces

    def __setstate__(self, state):
        # artifacts saved before min_df / words / keep_spaces existed (v1–v3): hashed, with words, spaceless
        state.setdefault("min_df", None)
        state.setdefault("words", True)
        state.setdefault("keep_spaces", False)
        super().__setstate__(state)

    def __getstate__(self):
        state = super().__getstate__()
        state.pop("_buckets", None)         # an index rebuilt from vocabulary_ on first use; not saved
        return state

    def fit(self, X, y=None):
        if self.min_df is None:
            return self
        X = list(X)
        per_text = []
        for lo in range(0, len(X), 4096):       # chunks bound the memory of the span arrays
            buffer, starts, lengths, kinds, docs = _token_spans(X[lo:lo + 4096], self.ngram_min, self.ngram_max,
                                                                self.words, self.keep_spaces)
            hashes = _span_hashes(buffer, starts, lengths, kinds)
            order = np.lexsort((hashes, docs))
            hashes, docs = hashes[order], docs[order]
            first = np.ones(len(hashes), dtype=bool)      # each token once per text: document frequency
            first[1:] = (hashes[1:] != hashes[:-1]) | (docs[1:] != docs[:-1])
            per_text.append(hashes[first])
        tokens, df = np.unique(np.concatenate(per_text) if per_text else np.zeros(0, np.uint64), return_counts=True)
        self.vocabulary_ = tokens[df >= self.min_df]
        return self

    def transform(self, X):
        X = list(X)
        docs, columns = self.spans(X)
        counts = sparse.csr_matrix((np.ones(len(columns), dtype=np.float64), (docs, columns)),
                                   shape=(len(X), self.n_features))
        counts.sum_duplicates()
        return counts

    def _columns(self, buffer: str, starts: np.ndarray, lengths: np.ndarray, kinds: np.ndarray) -> np.ndarray:
        """Each span's column; -1 for a token outside the fitted vocabulary."""
        if self.min_df is None:
            return _span_indices(buffer, starts, lengths, kinds, self.n_features_log2)
        hashes = _span_hashes(buffer, starts, lengths, kinds)
        return _vocabulary_columns(self.vocabulary_, self._bucket_index(), hashes)

    def _bucket_index(self) -> np.ndarray:
        """Where each run of vocabulary hashes with the same top bits starts (a binary search over the
        whole vocabulary is a cache miss per step: about half of the feature cost)."""
        buckets = getattr(self, "_buckets", None)
        if buckets is None or buckets[0] is not self.vocabulary_:
            top = np.arange((1 << _BUCKET_BITS) + 1, dtype=np.uint64) << _U64(64 - _BUCKET_BITS)
            bounds = np.searchsorted(self.vocabulary_, top).astype(np.int32)     # 4 MB
            bounds[-1] = len(self.vocabulary_)            # the last boundary, 2**64, wrapped to 0
            buckets = self._buckets = (self.vocabulary_, bounds)
        return buckets[1]

    def spans(self, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """``(docs, columns)``: the text and the feature index of every token span (repeats not yet summed;
        tokens outside a fitted vocabulary left out)."""
        buffer, starts, lengths, kinds, docs = _token_spans(texts, self.ngram_min, self.ngram_max, self.words,
                                                            self.keep_spaces)
        columns = self._columns(buffer, starts, lengths, kinds)
        if self.min_df is None:
            return docs, columns
        known = columns >= 0
        return docs[known], columns[known]

    @property
    def n_features(self) -> int:
        return (1 << self.n_features_log2) if self.min_df is None else len(self.vocabulary_)

    def token_names(self, text: str) -> dict[int, list[str]]:
        """Feature index → the tokens of ``text`` counted in it (for explanations)."""
        buffer, starts, lengths, kinds, _ = _token_spans([text], self.ngram_min, self.ngram_max, self.words,
                                                      self.keep_spaces)
        columns = self._columns(buffer, starts, lengths, kinds)
        names: dict[int, set[str]] = {}
        for start, length, kind, column in zip(starts.tolist(), lengths.tolist(), kinds.tolist(), columns.tolist()):
            if column >= 0:
                names.setdefault(column, set()).add(_KIND_PREFIX[kind] + buffer[start:start + length])
        return {column: sorted(tokens) for column, tokens in names.items()}

    def word_contributions(self, text: str, by_column: dict[int, float]) -> list[tuple[str, float]]:
        """Per-feature contributions (column → coef × value) regrouped for a reader: each jieba word with the
        character n-grams inside it (``w:贷款`` = w:贷款 + c:贷 + c:款 + c:贷款), and every n-gram that crosses
        a word boundary or is punctuation on its own (``c:款,``). A column hit by several spans is shared
        equally between them, so the parts still add up to the text's total. With ``words=False`` the words
        are not features (``w:贷款`` = c:贷 + c:款 + c:贷款) but still group the n-grams.

        >>> hasher = HashedTokenCounts(n_features_log2=16)
        >>> columns = {c: 1.0 for c in hasher.token_names("贷款,")}
        >>> sorted(hasher.word_contributions("贷款,", columns))
        [('c:,', 1.0), ('c:款,', 1.0), ('c:贷款,', 1.0), ('w:贷款', 4.0)]
        """
        # the words are cut even when they are not features (words=False): they group the n-grams for a reader
        buffer, starts, lengths, kinds, _ = _token_spans([text], self.ngram_min, self.ngram_max, True,
                                                      self.keep_spaces)
        columns = self._columns(buffer, starts, lengths, kinds)
        if not self.words:
            columns[kinds == _WORD] = -1
        columns = columns.tolist()           # -1 (not a feature, or not in the vocabulary): no share
        starts, lengths, kinds = starts.tolist(), lengths.tolist(), kinds.tolist()
        spans_per_column: dict[int, int] = {}
        for column in columns:
            spans_per_column[column] = spans_per_column.get(column, 0) + 1
        # Where each word lies in the copy that the n-grams are cut from (space-free unless keep_spaces).
        n_words = kinds.count(_WORD)
        keep = self.keep_spaces
        compact_length = len(buffer) // 2 if keep else (len(buffer) + buffer.count(" ")) // 2
        compact = buffer[:compact_length]
        offset_in_chars = [0] * (compact_length + 1)
        seen = 0
        for position, char in enumerate(compact):
            offset_in_chars[position] = seen
            seen += keep or char != " "
        offset_in_chars[compact_length] = seen
        word_of_char: dict[int, int] = {}
        totals: dict[str, float] = {}
        word_names = []
        for w in range(n_words):
            lo = offset_in_chars[starts[w]]
            for c in range(lo, lo + lengths[w]):
                word_of_char[c] = w
            word_names.append("w:" + buffer[starts[w]:starts[w] + lengths[w]])
        for start, length, kind, column in zip(starts, lengths, kinds, columns):
            share = by_column.get(column, 0.0) / spans_per_column[column]
            if kind == _WORD:
                name = "w:" + buffer[start:start + length]
            else:
                first = start - compact_length
                owner = word_of_char.get(first)
                # a word is one run of characters: the n-gram lies inside it when its last character does too
                inside = owner is not None and word_of_char.get(first + length - 1) == owner
                # a space shown as ␣: "c:␣" reads as a token, "c: " as nothing
                name = word_names[owner] if inside else "c:" + buffer[start:start + length].replace(" ", "␣")
            totals[name] = totals.get(name, 0.0) + share
        return list(totals.items())


class TextNormalizer(TransformerMixin, BaseEstimator):
    """Pipeline step: raw SMS → :func:`model_text` with the normaliser version the model was trained with.

    Artifacts saved before versions existed hold no ``version``: the class attribute gives them 1, so a
    model keeps reading text as it was trained to.
    """

    version = 1

    def __init__(self, version: int = 1):
        self.version = version

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        version = self.version
        return [model_text(t, version) for t in X]


STRUCTURAL_FEATURES = ("has_url", "has_phone", "has_qq_or_wechat", "has_money", "has_signature",
                       "has_unsubscribe")


class StructuralFeatures(TransformerMixin, BaseEstimator):
    """Pipeline step: a few message-level flags from the model text (see STRUCTURAL_FEATURES)."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        rows = [_structure(t) for t in X]
        return sparse.csr_matrix(np.asarray(rows, dtype=np.float64).reshape(len(rows), len(STRUCTURAL_FEATURES)))

    def get_feature_names_out(self, input_features=None):
        return np.asarray(STRUCTURAL_FEATURES, dtype=object)


def _structure(text: str) -> tuple[float, ...]:
    return (float(URL in text), float(PHONE in text), float(QQ in text or WECHAT in text), float(MONEY in text),
            float(SIGNATURE in text), float(_UNSUBSCRIBE.search(text) is not None))


def log_count_ratio(X, y, weight, alpha: float = 1.0) -> np.ndarray:
    """NB-SVM's per-column log-count ratio |log(p_spam / p_normal)| over (weighted) presence counts.

    >>> X = sparse.csr_matrix(np.array([[1.0, 1.0], [1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]))
    >>> np.round(log_count_ratio(X, np.array([1, 1, 0, 0]), np.ones(4)), 3)
    array([0.182, 0.223])
    """
    present = X.copy().tocsr()
    present.data[:] = 1.0
    y = np.asarray(y)
    spam = alpha + np.asarray(present.T @ (weight * (y == 1))).ravel()
    normal = alpha + np.asarray(present.T @ (weight * (y == 0))).ravel()
    return np.abs(np.log(spam / spam.sum()) - np.log(normal / normal.sum()))


def fit_linear(X, y, weight, C: float, nb_scale: float = 0.0, domain=None, domain_share: float = 1.0,
               plain_share: float = 0.0):
    """One L2 logistic regression (liblinear) whose ``coef_`` reads the unscaled features, so a column's
    contribution to the decision is always ``coef_ × value`` (what explanations show).

    ``nb_scale`` > 0: fitted on columns scaled by ``log_count_ratio ** nb_scale`` (NB-SVM), the scale then
    folded into ``coef_``. ``domain`` (bool per row): feature augmentation for domain adaptation — the rows of
    that domain get a second copy of their features, so the model learns shared weights plus corrections
    for that domain, each regularised; the served weights are ``shared + domain_share × correction``.
    ``plain_share`` > 0: a second, plain regression on the same rows is blended in — an average of the two
    models' log-odds, which is itself one linear model, so explanations still add up to the decision.

    >>> X = sparse.csr_matrix(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0], [0.0, 1.0]]))
    >>> y, w = np.array([1, 1, 0, 0]), np.ones(4)
    >>> a, b = fit_linear(X, y, w, 1.0, nb_scale=1.0), fit_linear(X, y, w, 1.0)
    >>> blend = fit_linear(X, y, w, 1.0, nb_scale=1.0, plain_share=0.5)
    >>> bool(np.allclose(blend.decision_function(X), (a.decision_function(X) + b.decision_function(X)) / 2))
    True
    """
    from sklearn.linear_model import LogisticRegression

    if plain_share and (nb_scale or domain is not None):
        model = fit_linear(X, y, weight, C, nb_scale, domain, domain_share)
        plain = fit_linear(X, y, weight, C)
        model.coef_ = (1 - plain_share) * model.coef_ + plain_share * plain.coef_
        model.intercept_ = (1 - plain_share) * model.intercept_ + plain_share * plain.intercept_
        return model
    model = LogisticRegression(C=C, solver="liblinear")
    n_columns = X.shape[1]
    if domain is not None:
        X = sparse.hstack([X, sparse.diags(np.asarray(domain, dtype=float)) @ X], format="csr")
    scale = log_count_ratio(X, y, weight) ** nb_scale if nb_scale else None
    model.fit(X if scale is None else X @ sparse.diags(scale), y, sample_weight=weight)
    coef = model.coef_ if scale is None else model.coef_ * scale
    if domain is not None:
        coef = coef[:, :n_columns] + domain_share * coef[:, n_columns:]
        model.n_features_in_ = n_columns
    model.coef_ = coef
    return model


def columns_in_rows(X, min_rows: int) -> np.ndarray:
    """Which columns of a csr matrix (no explicit zeros) have a value in at least ``min_rows`` rows.

    >>> columns_in_rows(sparse.csr_matrix(np.array([[1.0, 0.0, 2.0], [3.0, 0.0, 0.0]])), 2).tolist()
    [True, False, False]
    """
    return np.bincount(X.indices, minlength=X.shape[1]) >= min_rows


class CalibratedLinear(ClassifierMixin, BaseEstimator):
    """Logistic regression with Platt scaling fitted on its own out-of-fold decision values.

    Unlike CalibratedClassifierCV it also exposes those out-of-fold probabilities (``oof_proba_``),
    which is what the decision threshold is picked on; the model kept is one fit on all data.
    ``nb_scale`` and ``domain_share`` are :func:`fit_linear`'s; everything fitted from labels (log-count
    ratios, domain corrections) is fitted inside each fold, so out-of-fold scores never see their own labels.

    ``fold_min_df``: the features come from a vocabulary fitted on all rows (``HashedTokenCounts(min_df)``), in
    which a text's n-gram has a column when one other text has it too. A new message's n-gram needs two
    *training* texts. So each fold drops the columns that fewer than ``fold_min_df`` of its training rows have,
    and its out-of-fold scores see the features a new message would. Without this, out-of-fold scores were
    more confident than a new message's, and the threshold picked on them was too.
    """

    nb_scale = 0.0       # artifacts saved before these parameters existed load without them
    domain_share = 1.0
    plain_share = 0.0
    fold_min_df = None

    def __init__(self, C: float = 30.0, folds: int = 3, seed: int = 42, nb_scale: float = 0.0,
                 domain_share: float = 1.0, plain_share: float = 0.0, fold_min_df: int | None = None):
        self.C = C
        self.folds = folds
        self.seed = seed
        self.nb_scale = nb_scale
        self.domain_share = domain_share
        self.plain_share = plain_share
        self.fold_min_df = fold_min_df

    def fit(self, X, y, sample_weight=None, groups=None, domain=None):
        """``groups`` (template keys) keep a template inside one fold, so out-of-fold scores look like scores
        of unseen templates, which is what the threshold is picked on. ``domain``: rows whose features get a
        domain copy (see :func:`fit_linear`); None for none."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

        y = np.asarray(y)
        weight = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        oof = np.empty(len(y))
        if groups is None:
            folds = StratifiedKFold(self.folds, shuffle=True, random_state=self.seed).split(X, y)
        else:
            folds = StratifiedGroupKFold(self.folds, shuffle=True, random_state=self.seed).split(X, y, groups)
        X = sparse.csr_matrix(X)
        for train, test in folds:
            X_train, X_test = X[train], X[test]
            if self.fold_min_df:
                keep = sparse.diags(columns_in_rows(X_train, self.fold_min_df).astype(np.float64))
                X_train, X_test = (X_train @ keep).tocsr(), (X_test @ keep).tocsr()
            fold = fit_linear(X_train, y[train], weight[train], self.C, self.nb_scale,
                              None if domain is None else np.asarray(domain)[train], self.domain_share,
                              self.plain_share)
            oof[test] = fold.decision_function(X_test)
        platt = LogisticRegression(C=1e4).fit(oof.reshape(-1, 1), y, sample_weight=weight)
        self.slope_, self.intercept_ = float(platt.coef_[0, 0]), float(platt.intercept_[0])
        self.oof_proba_ = self._sigmoid(oof)
        self.estimator_ = fit_linear(X, y, weight, self.C, self.nb_scale, domain, self.domain_share,
                                     self.plain_share)
        self.classes_ = self.estimator_.classes_
        return self

    def _sigmoid(self, decision):
        return 1.0 / (1.0 + np.exp(-(self.slope_ * decision + self.intercept_)))

    def decision_function(self, X):
        return self.estimator_.decision_function(X)

    def predict_proba(self, X):
        p = self._sigmoid(self.estimator_.decision_function(X))
        return np.column_stack([1.0 - p, p])

    def predict(self, X):
        return self.classes_[(self.predict_proba(X)[:, 1] >= 0.5).astype(int)]


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# Every type an smsguard artifact may contain. skops refuses anything else, so a crafted artifact
# cannot make the loader run arbitrary code.
TRUSTED_TYPES = [
    "detector.model.TextNormalizer",
    "detector.model.StructuralFeatures",
    "detector.model.analyze",
    "detector.model.HashedTokenCounts",
    "detector.model.CalibratedLinear",
    "sklearn.pipeline.Pipeline",
    "sklearn.pipeline.FeatureUnion",
    "sklearn.feature_extraction.text.HashingVectorizer",
    "sklearn.feature_extraction.text.TfidfTransformer",
    "sklearn.calibration.CalibratedClassifierCV",
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.linear_model._logistic.LogisticRegression",
    "sklearn.model_selection._split.StratifiedKFold",
    "builtins.slice",
    "numpy.float64",
    "numpy.int64",
    "numpy.dtype",
]


class SpamModel:
    """A loaded model: ``score`` gives P(spam) per text, ``explain`` the features behind a score."""

    def __init__(self, pipeline: Any, manifest: dict[str, Any], artifact_sha256: str):
        self.pipeline = pipeline
        self.manifest = manifest
        self.name: str = manifest["name"]
        self.threshold: float = float(manifest["threshold"])
        self.version = f"{self.name}@{artifact_sha256[:12]}"
        self._direct = _direct_scoring(pipeline, self.name)
        # Explanations cut jieba words even when the model has none as features (v4): build the segmenter now,
        # or a worker's first flagged batch would wait for it.
        _segmenter()

    def __repr__(self) -> str:
        return f"SpamModel({self.version!r}, threshold={self.threshold:.3f})"

    def score(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros(0)
        if self._direct is not None:
            return self._direct(texts)
        return self.pipeline.predict_proba(texts)[:, 1]

    def explain(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        """The k features that pushed this text most towards spam, with coef × value (log-odds)."""
        return explain_pipeline(self.pipeline, text, k)

    def explain_many(self, texts: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        """:meth:`explain` of several texts with one pass through the features (the engine's flagged batch)."""
        return explain_pipeline_many(self.pipeline, list(texts), k, self._direct)


def explain_pipeline(pipeline: Any, text: str, k: int = 5) -> list[tuple[str, float]]:
    return explain_pipeline_many(pipeline, [text], k)[0]


def explain_pipeline_many(pipeline: Any, texts: list[str], k: int = 5,
                          direct: Any = None) -> list[list[tuple[str, float]]]:
    """``direct``: the pipeline's :class:`~detector.direct_scoring.DirectScoring`, which gives the same
    contributions without scikit-learn's per-call overhead (the engine explains a few texts per batch)."""
    if not texts:
        return []
    normalizer, union, classifier = (step for _, step in pipeline.steps)
    hasher = union.transformer_list[0][1].steps[0][1]
    if not isinstance(hasher, HashedTokenCounts):
        return [_explain_v1(normalizer, union, classifier, hasher, text, k) for text in texts]
    normal = normalizer.transform(texts)
    n_text = hasher.n_features
    weighted = direct.contributions(normal) if direct is not None else _contributions(union, classifier, normal)
    explained = []
    for text, by_column in zip(normal, weighted):
        contributions = hasher.word_contributions(text, by_column)
        contributions += [(f"[{name}]", by_column.get(n_text + j, 0.0)) for j, name in enumerate(STRUCTURAL_FEATURES)]
        explained.append(sorted((c for c in contributions if c[1] > 0), key=lambda c: -c[1])[:k])
    return explained


def _contributions(union: Any, classifier: Any, normal: list[str]) -> list[dict[int, float]]:
    """Per model text, feature column → coef × value, through the pipeline's own steps."""
    values = union.transform(normal).tocsr()      # one featurisation for all: its fixed cost dominates one text
    coef = classifier.estimator_.coef_[0]
    out = []
    for row in range(len(normal)):
        start, end = values.indptr[row], values.indptr[row + 1]
        out.append({int(i): float(coef[i] * v) for i, v in zip(values.indices[start:end], values.data[start:end])})
    return out


def _explain_v1(normalizer: Any, union: Any, classifier: Any, hasher: Any, text: str,
                k: int) -> list[tuple[str, float]]:
    from sklearn.feature_extraction.text import HashingVectorizer

    normal = normalizer.transform([text])
    values = union.transform(normal).tocsr()
    coef = classifier.estimator_.coef_[0]
    n_text = hasher.n_features
    names: dict[int, list[str]] = {}
    tokens = sorted(set(analyze(normal[0])))
    if tokens:  # models before v2: a HashingVectorizer over analyze(), explained token by token
        lookup = HashingVectorizer(analyzer=_identity, n_features=n_text, alternate_sign=hasher.alternate_sign,
                                   norm=None)
        indices = lookup.transform([[t] for t in tokens]).indices
        for token, index in zip(tokens, indices):
            names.setdefault(int(index), []).append(token)
    for j, name in enumerate(STRUCTURAL_FEATURES):
        names[n_text + j] = [f"[{name}]"]
    contributions = [(" | ".join(names.get(int(i), [f"#{i}"])), float(coef[i] * v))
                     for i, v in zip(values.indices, values.data)]
    towards_spam = sorted((c for c in contributions if c[1] > 0), key=lambda c: -c[1])
    return towards_spam[:k]


def _identity(tokens):
    return tokens


def load_model(path: str | Path) -> SpamModel:
    """Load a model folder (``model.skops`` + ``manifest.json``), refusing tampered or unsafe artifacts."""
    import skops.io as sio

    folder = Path(path)
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelError(f"model {folder.name!r}: no {MANIFEST} in {folder}") from None
    except ValueError as exc:
        raise ModelError(f"model {folder.name!r}: {MANIFEST} is not valid JSON ({exc})") from None
    artifact = folder / manifest.get("artifact", ARTIFACT)
    if not artifact.is_file():
        raise ModelError(f"model {folder.name!r}: artifact {artifact} is missing")
    actual = sha256_file(artifact)
    expected = manifest.get("artifact_sha256")
    if actual != expected:
        raise ModelError(f"model {folder.name!r}: artifact sha256 {actual[:12]}… does not match the manifest "
                         f"({str(expected)[:12]}…); refusing a corrupted or tampered artifact")
    try:
        pipeline = sio.load(artifact, trusted=TRUSTED_TYPES)
    except Exception as exc:  # skops raises several types (untrusted type, bad zip, bad schema)
        raise ModelError(f"model {folder.name!r}: refusing to load {artifact.name}: {exc}") from None
    _jieba()
    model = SpamModel(pipeline, manifest, actual)
    # A model that cannot score (e.g. trained with a different feature layout than this code builds)
    # would turn every batch into an engine error: refuse it here, where the previous model keeps serving.
    try:
        probe = model.score(SMOKE_TEXTS)
    except Exception as exc:
        raise ModelError(f"model {folder.name!r}: loads but cannot score ({type(exc).__name__}: {exc})") from None
    if probe.shape != (len(SMOKE_TEXTS),) or not np.all((probe >= 0) & (probe <= 1)):
        raise ModelError(f"model {folder.name!r}: scores are not probabilities: {probe!r}")
    return model


#: Scored once on every load to prove the artifact works with this code.
SMOKE_TEXTS = ("【京东】您的验证码是482913，5分钟内有效。", "加微信领红包，日赚三百，回T退订")
#: What the direct scoring path must score as the Pipeline does before it serves ("": a row with no feature).
DIRECT_PROBE_TEXTS = SMOKE_TEXTS + ("", "。", "【招商银行】您尾号1234的卡消费￥56.78，详询95555 http://t.cn/abc 退订回TD")


def _direct_scoring(pipeline: Any, name: str):
    """:func:`detector.direct_scoring.compile_scoring`, or None when it does not apply or disagrees with the
    Pipeline (a scikit-learn whose steps compute something else must not change the scores silently)."""
    from detector.direct_scoring import compile_scoring

    try:
        direct = compile_scoring(pipeline)
        if direct is None:
            return None
        texts = list(DIRECT_PROBE_TEXTS)
        difference = float(np.abs(direct(texts) - pipeline.predict_proba(texts)[:, 1]).max())
    except Exception as exc:  # whatever breaks here, the Pipeline itself still serves
        log.warning("direct scoring unavailable; the Pipeline serves", extra={"model": name, "error": repr(exc)[:200]})
        return None
    if difference > 1e-9:
        log.warning("direct scoring disagrees with the Pipeline; the Pipeline serves",
                    extra={"model": name, "difference": difference})
        return None
    return direct


class CachedScorer:
    """A SpamModel behind an LRU cache keyed by :func:`template_key` (106 traffic is mostly templates)."""

    def __init__(self, model: SpamModel, cache_size: int = 100_000):
        self.model = model
        self.cache_size = cache_size
        self._cache: OrderedDict[str, float] = OrderedDict()
        self._template_keys = TemplateKeys()
        self.hits = 0
        self.misses = 0

    @property
    def version(self) -> str:
        return self.model.version

    @property
    def threshold(self) -> float:
        return self.model.threshold

    def score(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if self.cache_size <= 0:
            self.misses += len(texts)
            return self.model.score(texts)
        template_key = self._template_keys.get
        return np.asarray(self.score_keyed(texts, [template_key(t) for t in texts]), dtype=np.float64)

    def score_keyed(self, texts: Sequence[str], keys: Sequence[str]) -> list[float]:
        """Like :meth:`score`, as a list, when the caller already has each text's :func:`template_key` (the engine
        does). A template new to the cache is scored on its first text in ``texts``."""
        if self.cache_size <= 0:
            self.misses += len(texts)
            return self.model.score(list(texts)).tolist()
        cache = self._cache
        touch = cache.move_to_end
        out = [cache.get(key) for key in keys]
        todo: dict[str, int] = {}       # template key -> index of its first text
        for i, score in enumerate(out):
            if score is None:
                if keys[i] not in todo:
                    todo[keys[i]] = i
            else:
                touch(keys[i])
        self.misses += len(todo)
        self.hits += len(out) - len(todo)
        if not todo:
            return out
        fresh = dict(zip(todo, self.model.score([texts[i] for i in todo.values()]).tolist()))
        cache.update(fresh)
        while len(cache) > self.cache_size:
            cache.popitem(last=False)
        return [fresh[key] if score is None else score for key, score in zip(keys, out)]

    def explain(self, text: str, k: int = 5) -> list[tuple[str, float]]:
        return self.model.explain(text, k)

    def explain_many(self, texts: Sequence[str], k: int = 5) -> list[list[tuple[str, float]]]:
        return self.model.explain_many(texts, k)
