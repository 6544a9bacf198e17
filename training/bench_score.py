"""``smsguard bench score``: messages per second of the scorer, single process (= one core).

Three runs over real messages from the data files, in batches: the model without cache (every message
is new, and the jieba clause cache starts cold), the template cache on template-heavy traffic (real
notification / verification templates re-sent with fresh digits, as 106 traffic is), and the classic
public-project pipeline (jieba + TF-IDF + MultinomialNB) on the same uncached traffic.

>>> import random
>>> vary_digits("验证码123456，尾号8899", random.Random(1)) != "验证码123456，尾号8899"
True
"""
from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any

import numpy as np

from training.data import load_tsv

_DIGITS = re.compile(r"\d+")
_TEMPLATE_HINT = re.compile(r"验证码|尾号|账户|快递|包裹|订单|余额|话费|航班|密码|动态码|校验码|交易|缴费|积分|流量")


def vary_digits(text: str, rng: random.Random) -> str:
    """The same template with fresh digits (codes, amounts, tracking numbers)."""
    return _DIGITS.sub(lambda m: "".join(rng.choice("0123456789") for _ in m.group()), text)


def traffic(paths: list[Path], n: int, seed: int = 7) -> tuple[list[str], list[str], list[str]]:
    """(real messages, template-heavy traffic, classic-baseline training texts+labels source texts)."""
    rng = random.Random(seed)
    texts = [t for p in paths for t in load_tsv(p).texts]
    rng.shuffle(texts)
    real = (texts * (n // len(texts) + 1))[:n]
    templates = [t for t in texts if _TEMPLATE_HINT.search(t) and _DIGITS.search(t)][:300]
    heavy = [vary_digits(rng.choice(templates), rng) if rng.random() < 0.9 else rng.choice(texts) for _ in range(n)]
    return real, heavy, texts


def _rate(score, texts: list[str], batch_size: int) -> tuple[float, float]:
    """(msg/s of wall-clock time, msg/s of this process's CPU time). On a shared machine the CPU-time rate is
    the per-core figure; the wall-clock one also counts the time other processes held the core."""
    start, start_cpu = time.perf_counter(), time.process_time()
    for i in range(0, len(texts), batch_size):
        score(texts[i:i + batch_size])
    return len(texts) / (time.perf_counter() - start), len(texts) / (time.process_time() - start_cpu)


def run_bench(registry, model_name: str | None, n: int, batch_size: int, paths: list[Path]) -> dict[str, Any]:
    from detector import model as model_module
    from detector.model import CachedScorer, load_model
    from training.train import fit_classic_baseline

    model = load_model(registry.model_path(model_name)) if model_name else registry.load_promoted()
    real, heavy, _ = traffic(paths, n)
    data = [load_tsv(p) for p in paths]
    sample = [t for d in data for t in d.texts[:20_000]]
    labels = np.concatenate([d.labels[:20_000] for d in data])
    classic = fit_classic_baseline(sample, labels)

    model.score(real[:200])            # warm up imports and jieba's dictionary, not the clause cache
    model_module.clear_segment_caches()
    uncached_cold, uncached_cold_cpu = _rate(model.score, real, batch_size)
    uncached_warm, uncached_warm_cpu = _rate(model.score, real, batch_size)
    model_module.clear_segment_caches()
    cached = CachedScorer(model)
    template_rate, template_cpu = _rate(cached.score, heavy, batch_size)
    hit_rate = cached.hits / max(1, cached.hits + cached.misses)
    real_cached = CachedScorer(model)
    real_rate, real_cpu = _rate(real_cached.score, real, batch_size)
    classic_rate, classic_cpu = _rate(lambda batch: classic.predict_proba(batch), real, batch_size)
    report = {
        "messages": n, "batch_size": batch_size, "model": model.version,
        "uncached_msgs_per_s": round(uncached_cold),
        "uncached_msgs_per_cpu_s": round(uncached_cold_cpu),
        "uncached_warm_clause_cache_msgs_per_s": round(uncached_warm),
        "uncached_warm_clause_cache_msgs_per_cpu_s": round(uncached_warm_cpu),
        "template_heavy_cached_msgs_per_s": round(template_rate),
        "template_heavy_cached_msgs_per_cpu_s": round(template_cpu),
        "template_heavy_cache_hit_rate": round(hit_rate, 4),
        "real_traffic_cached_msgs_per_s": round(real_rate),
        "real_traffic_cached_msgs_per_cpu_s": round(real_cpu),
        "real_traffic_cache_hit_rate": round(real_cached.hits / max(1, real_cached.hits + real_cached.misses), 4),
        "classic_jieba_tfidf_nb_msgs_per_s": round(classic_rate),
        "classic_jieba_tfidf_nb_msgs_per_cpu_s": round(classic_cpu),
    }
    report["summary"] = "\n".join([
        f"smsguard bench score: {n} messages, batches of {batch_size}, one process, model {model.version}",
        f"{'':44s}{'msg/s wall':>12s}{'msg/s CPU':>12s}",
        f"  smsguard uncached (cold clause cache)     {uncached_cold:>12,.0f}{uncached_cold_cpu:>12,.0f}",
        f"  smsguard uncached (second pass, warm)     {uncached_warm:>12,.0f}{uncached_warm_cpu:>12,.0f}",
        f"  smsguard + template cache, template-heavy {template_rate:>12,.0f}{template_cpu:>12,.0f}"
        f"  (hit rate {hit_rate:.1%})",
        f"  smsguard + template cache, real mix       {real_rate:>12,.0f}{real_cpu:>12,.0f}"
        f"  (hit rate {report['real_traffic_cache_hit_rate']:.1%})",
        f"  classic jieba + TF-IDF + MultinomialNB    {classic_rate:>12,.0f}{classic_cpu:>12,.0f}",
    ])
    return report
