"""The dashboard keeps answering while Redis or the broker goes away, says so, and recovers by itself."""
from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

from aiohttp.test_utils import TestClient, TestServer

from detector.dashboard.app import create_app
from detector.events import TOPIC_DECISIONS, TOPIC_PORT_ACTIONS
from detector.services import acreate_topics
from test_dashboard_api import (ALL_TOPICS, SPAM_PORT, TOKEN, TOKENS_ENV, decide_like_worker, engine_throttle,
                                produce, traffic, wait_for)


async def test_redis_outage_shows_in_status_and_actions_still_reach_kafka(settings, own_redis):
    s = settings({**TOKENS_ENV, "SMSGUARD_REDIS_URL": own_redis.url})
    await acreate_topics(s.kafka_bootstrap, [s.topic(t) for t in ALL_TOPICS], partitions=2)
    from detector.state.redis import RedisStore
    seed = RedisStore(s.redis_url)
    await seed.put_port_state(engine_throttle(SPAM_PORT, int(time.time() * 1000)))
    await seed.close()

    async with TestClient(TestServer(create_app(s))) as client:
        async def status(redis_ok: bool):
            data = await (await client.get("/api/status")).json()
            return data["redis"]["ok"] is redis_ok and (not redis_ok or data["redis"]["refreshed_ms"]) and data

        await wait_for(lambda: status(True))
        await asyncio.to_thread(own_redis.stop)
        down = await wait_for(lambda: status(False), timeout=15)
        assert "unreachable" in down["redis"]["error"]

        ports = await (await client.get("/api/ports")).json()          # still answers, from the last known states
        assert [(r["port"], r["state"]) for r in ports["ports"]] == [(SPAM_PORT, "throttle")]
        page = await (await client.get(f"/api/ports/{SPAM_PORT}")).json()
        assert page["history_error"]
        resp = await client.post(f"/api/ports/{SPAM_PORT}/actions", headers={"Authorization": f"Bearer {TOKEN}"},
                                 json={"kind": "block", "reason": "redis is down but this must hold"})
        assert resp.status == 200
        entry = json.loads(Path(s.audit_log).read_text(encoding="utf-8").splitlines()[-1])
        assert entry["kafka"] == "ok" and entry["redis"].startswith("error")

        await asyncio.to_thread(own_redis.start)
        await wait_for(lambda: status(True), timeout=15)


async def test_broker_restart_is_survived(settings, own_broker):
    s = settings({"SMSGUARD_KAFKA_BOOTSTRAP": own_broker.bootstrap})
    topics = [s.topic(t) for t in ALL_TOPICS]
    await acreate_topics(s.kafka_bootstrap, topics, partitions=2, compacted=[s.topic(TOPIC_PORT_ACTIONS)])
    now = int(time.time() * 1000)
    await produce(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS),
                  decide_like_worker(traffic(s.data_dir, now - 120_000, 60), {SPAM_PORT}))

    async with TestClient(TestServer(create_app(s))) as client:
        async def seen(n: int):
            data = await (await client.get("/api/status")).json()
            return data["kafka"]["ok"] and data["kafka"]["records"] >= n and data

        first = await wait_for(lambda: seen(1))
        before = first["kafka"]["records"]
        await asyncio.to_thread(own_broker.restart, 1.0)              # comes back empty (memory storage)
        await acreate_topics(s.kafka_bootstrap, topics, partitions=2, compacted=[s.topic(TOPIC_PORT_ACTIONS)])
        fresh = decide_like_worker(traffic(s.data_dir, now - 60_000, 30, seed=9), {SPAM_PORT})
        await produce(s.kafka_bootstrap, s.topic(TOPIC_DECISIONS), fresh)
        await wait_for(lambda: seen(before + len(fresh)), timeout=40)
