"""Labeled SMS files (``label<TAB>text``) and the held-out splits the quality figures come from.

>>> split = parse_split("template:0.3")
>>> split.kind, split.fraction
('template', 0.3)
>>> parse_split("sideways:0.3")
Traceback (most recent call last):
...
detector.errors.ConfigError: split 'sideways:0.3': expected none, stratified:FRACTION or template:FRACTION
"""
from __future__ import annotations

import codecs
import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from detector.errors import ConfigError
from detector.textnorm import template_key


@dataclass(frozen=True)
class Dataset:
    name: str
    texts: list[str]
    labels: np.ndarray
    sha256: str

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, index: np.ndarray, suffix: str) -> "Dataset":
        return Dataset(f"{self.name}:{suffix}", [self.texts[i] for i in index], self.labels[index], self.sha256)


def load_tsv(path: str | Path) -> Dataset:
    r"""Read ``label<TAB>text`` lines without quote handling (texts contain stray ``"``).

    Lines end at "\n" only (a "\r" before it is dropped): texts may hold U+2028, U+0085 and the like, which
    ``str.splitlines`` would cut. Blank lines and a UTF-8 byte-order mark are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"data file {path} does not exist (see SMSGUARD_DATA_DIR)")
    raw = path.read_bytes()
    start = len(codecs.BOM_UTF8) if raw.startswith(codecs.BOM_UTF8) else 0
    try:
        content = raw[start:].decode("utf-8")
    except UnicodeDecodeError as exc:
        offset = start + exc.start
        lineno = raw.count(b"\n", 0, offset) + 1
        raise ConfigError(f"{path}:{lineno}: not UTF-8 (byte offset {offset}: {exc.reason})") from None
    texts, labels = [], []
    for lineno, line in enumerate(content.split("\n"), 1):
        line = line.removesuffix("\r")
        if not line.strip():
            continue
        label, sep, text = line.partition("\t")
        if not sep or label not in ("0", "1"):
            raise ConfigError(f"{path}:{lineno}: expected 'label<TAB>text' with label 0 or 1")
        labels.append(int(label))
        texts.append(text)
    if not texts:
        raise ConfigError(f"data file {path} has no rows")
    return Dataset(path.stem, texts, np.asarray(labels, dtype=np.int8), hashlib.sha256(raw).hexdigest())


@dataclass(frozen=True)
class Split:
    kind: str          # none | stratified | template
    fraction: float

    def __str__(self) -> str:
        return "none" if self.kind == "none" else f"{self.kind}:{self.fraction:g}"


def parse_split(spec: str) -> Split:
    kind, _, fraction = spec.partition(":")
    if kind == "none" and not fraction:
        return Split("none", 0.0)
    try:
        value = float(fraction)
    except ValueError:
        value = -1.0
    if kind not in ("stratified", "template") or not 0 < value < 1:
        raise ConfigError(f"split {spec!r}: expected none, stratified:FRACTION or template:FRACTION")
    return Split(kind, value)


def split_indices(data: Dataset, split: Split, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices. ``template`` keeps texts sharing a template_key on one side.

    >>> d = Dataset("d", ["验证码1234", "验证码9876", "你好", "在吗"] * 5, np.asarray([0, 0, 1, 1] * 5), "")
    >>> train, test = split_indices(d, Split("template", 0.5), seed=1)
    >>> keys = lambda idx: {template_key(d.texts[i]) for i in idx}
    >>> keys(train).isdisjoint(keys(test))
    True
    """
    everything = np.arange(len(data))
    if split.kind == "none":
        return everything, everything[:0]
    if split.kind == "stratified":
        from sklearn.model_selection import train_test_split

        train, test = train_test_split(everything, test_size=split.fraction, stratify=data.labels, random_state=seed)
        return np.sort(train), np.sort(test)
    # A stable per-template draw: the same template lands on the same side in every run and file order.
    draws = np.asarray([int.from_bytes(hashlib.sha256(f"{seed}|{template_key(t)}".encode()).digest()[:8], "big")
                        / 2 ** 64 for t in data.texts])
    return everything[draws >= split.fraction], everything[draws < split.fraction]
