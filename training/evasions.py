"""How much of the held-out spam a model still catches when the spammer disguises it (docs/redteam.md).

Each *evasion* rewrites a spam message the way the red team found spammers do: it wraps the spam in a
signature and an unsubscribe line (the cheapest way past a model trained on data whose normal class carries
them), writes its links and numbers so that no pattern sees them, puts separators and combining marks
between its Chinese characters, or writes look-alikes for its characters and digits (贷歀, 当夭, 5O万). The
rows are the held-out spam of the documented protocol (20 % of dev.tsv, 30 % of raw_dev.tsv by template), so
a model trained with ``--holdout`` (and no ``--refit-all``) has never seen them. The figure is the recall at the model's own threshold, beside the recall on the rows as they are.

    smsguard evaluate --evasions --data raw_dev.tsv --split template:0.3 [--model A --compare B]
    python -m training.evasions MODEL_DIR [MODEL_DIR …]      # both held-out splits, any number of model folders

>>> EVASIONS["separators"]("加微信领红包")
'加〡微〡信〡领〡红〡包'
>>> EVASIONS["links and numbers"]("详询13812345678 或 www.dk88.com")
'详询❶❸❽❶❷❸❹❺❻❼❽ 或 dk88点com'
>>> EVASIONS["look-alikes (贷歀, 恵, 当夭, 5O万)"]("无抵押贷款，当天放款，最高50万，优惠xx元")
'无抵押贷歀，当夭放歀，最高5O万，优恵xO元'
>>> EVASIONS["signature + 回T退订"]("无抵押贷款【鑫融】")
'【优选生活】无抵押贷款【鑫融】，回T退订'
"""
from __future__ import annotations

import argparse
import re
from typing import Callable

import numpy as np

_HAN_PAIR = re.compile(r"(?<=[\u4e00-\u9fff])(?=[\u4e00-\u9fff])")
_NEGATIVE_CIRCLED = str.maketrans("0123456789", "⓿❶❷❸❹❺❻❼❽❾")
_DIGIT_RUN = re.compile(r"\d{5,}")
_URL = re.compile(r"(?:https?://)?(?:www\.)?([a-z0-9\-]+)\.(com|cn|net|cc|top|vip)\b", re.I)


def _links_and_numbers(text: str) -> str:
    text = _URL.sub(lambda m: f"{m.group(1)}点{m.group(2)}", text)
    return _DIGIT_RUN.sub(lambda m: m.group().translate(_NEGATIVE_CIRCLED), text)


def _separators(text: str) -> str:
    return _HAN_PAIR.sub("〡", text)


def _strike(text: str) -> str:
    return re.sub(r"([\u4e00-\u9fff])", "\\1\u0336", text)


_AMOUNT_DIGIT = re.compile(r"[0-9xX](?=[万元wW])")
_LOOKALIKE_WORDS = str.maketrans({"款": "歀", "惠": "恵", "乐": "楽", "钱": "銭"})


def _lookalikes(text: str) -> str:
    """Look-alike characters and letters for digits, as dev.tsv's spam has them (textnorm version 3 reads them)."""
    text = text.translate(_LOOKALIKE_WORDS).replace("今天", "今夭").replace("当天", "当夭")
    return _AMOUNT_DIGIT.sub("O", text)


def _wrapped(line: str) -> Callable[[str], str]:
    return lambda text: f"【优选生活】{text}，{line}"


EVASIONS: dict[str, Callable[[str], str]] = {
    "signature + 回T退订": _wrapped("回T退订"),
    # other wordings of unsubscribing, as real senders write them (the review found textnorm version 2 strips only
    # the common instructions): each with the same signature
    "signature + 拒收所有短信直接回复TD": _wrapped("拒收所有短信直接回复TD"),
    "signature + 请发送TDZJ办理退订": _wrapped('请发送"TDZJ"办理退订'),
    "signature + 如需退订该提醒服务，请发送QXTCMX至10086": _wrapped("如需退订该提醒服务，请发送QXTCMX至10086"),
    "signature + 不想再收到请回复N": _wrapped("不想再收到此类信息请回复N"),
    "links and numbers": _links_and_numbers,
    "separators": _separators,
    "strike-through": _strike,
    "look-alikes (贷歀, 恵, 当夭, 5O万)": _lookalikes,
    "all of them": lambda t: _wrapped("回T退订")(_separators(_links_and_numbers(t))),
}


def heldout_spam() -> dict[str, list[str]]:
    """The held-out spam texts of each data file, as ``smsguard train --holdout`` holds them out."""
    from training.cli import resolve_data
    from training.data import load_tsv, parse_split, split_indices

    out = {}
    for name, spec in (("dev.tsv", "stratified:0.2"), ("raw_dev.tsv", "template:0.3")):
        data = load_tsv(resolve_data(name))
        _, test = split_indices(data, parse_split(spec), 42)
        out[name] = [data.texts[i] for i in test if data.labels[i] == 1]
    return out


def recalls(model, texts: list[str]) -> dict[str, float]:
    """Recall at the model's threshold on the texts as they are and under each evasion."""
    threshold = model.manifest.get("threshold", 0.5)
    out = {"as they are": float(np.mean(model.score(texts) >= threshold))}
    for name, evade in EVASIONS.items():
        out[name] = float(np.mean(model.score([evade(t) for t in texts]) >= threshold))
    return out


def main() -> None:
    from detector.model import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("models", nargs="+", help="model folders (trained with --holdout, without --refit-all)")
    args = parser.parse_args()
    spam = heldout_spam()
    models = [load_model(path) for path in args.models]
    print("| held-out spam | evasion | " + " | ".join(m.manifest.get("name", "?") for m in models) + " |")
    print("|---|---|" + "---|" * len(models))
    for name, texts in spam.items():
        figures = [recalls(m, texts) for m in models]
        for evasion in figures[0]:
            print(f"| {name} ({len(texts)}) | {evasion} | " + " | ".join(f"{f[evasion]:.3f}" for f in figures) + " |")


if __name__ == "__main__":
    main()
