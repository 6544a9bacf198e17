"""The program scripts/engine_instructions.sh counts: as `smsguard replay` does, parse N recorded events, run them through the engine in
micro-batches of 500 with the in-process store, encode every decision. A fixed scorer stands in for the model
(spam when the template mentions 贷 or 微), so the count is the engine's own work; with ``SMSGUARD_COUNT_MODEL=1``
the promoted model scores instead (behind its template cache, as in replay), so the count includes the model."""
import asyncio
import os
import sys

from detector.engine import Engine
from detector.events import EventParser
from detector.privacy import RecipientHasher
from detector.replay import ReplayStats, _offline, read_events
from detector.runtime import tune_for_streaming
from detector.settings import Settings
from detector.state.memory import MemoryStore


class FixedScorer:
    version = "fixed"
    threshold = 0.5

    def score_keyed(self, texts, keys):
        return [0.9 if ("贷" in k or "微" in k) else 0.1 for k in keys]

    def score(self, texts):
        return self.score_keyed(texts, texts)

    def explain_many(self, texts, k=5):
        return [[("w:fixed", 1.0)] for _ in texts]


async def main(path: str, n: int) -> None:
    settings = Settings.from_env()
    tune_for_streaming()          # as replay does
    with open(path, "rb") as fh:
        lines = [line for _, line in zip(range(n), fh)]
    events = read_events(lines, EventParser(RecipientHasher(settings.recipient_secret)), ReplayStats(), [])
    if os.environ.get("SMSGUARD_COUNT_MODEL") == "1":
        from detector.model import CachedScorer
        from detector.registry import Registry
        scorer = CachedScorer(Registry(settings.models_dir).load_promoted(), settings.score_cache_size)
    else:
        scorer = FixedScorer()
    engine = Engine(_offline(settings), MemoryStore(), scorer)
    for i in range(0, len(events), 500):
        for decision in (await engine.process(events[i:i + 500])).decisions:
            decision.encode()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2])))
