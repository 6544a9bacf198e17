"""Complaints become training labels: each ``sms.complaints`` record with a content goes to ``sms.feedback``.

A recipient who reports a message to 12321 has labelled it spam. The forwarder reads
the complaint topic in a consumer group of its own and commits after producing, so every
complaint is forwarded at least once across dashboard restarts and replicas
(``export-labels`` deduplicates by text anyway). The recipient's number is never copied.

>>> record = complaint_feedback({"ts": "2024-11-11T12:00:00Z", "port": "10690666", "recipient": "13812345678",
...                              "content": "加微信 13912345678 领红包"})
>>> record["label"], record["source"], record["content"], record["msg_id"].startswith("complaint-")
(1, 'complaint', '加微信 139****5678 领红包', True)
>>> "13812345678" in str(record)
False
>>> complaint_feedback({"ts": 1731326400000, "port": "10690666"}) is None   # nothing to learn from
True
"""
from __future__ import annotations

import hashlib
from typing import Any

from aiokafka import AIOKafkaConsumer

from detector.dashboard.actions import feedback_record
from detector.dashboard.feeds import ConsumerLoop, Publisher, decode_record
from detector.errors import SmsGuardError
from detector.events import parse_ts


def complaint_feedback(complaint: dict[str, Any] | None) -> dict[str, Any] | None:
    """The feedback record of one complaint, or None when it carries no usable content."""
    if not complaint or not isinstance(complaint.get("content"), str) or not complaint["content"].strip():
        return None
    try:
        ts_ms = parse_ts(complaint.get("ts"))
    except SmsGuardError:
        return None
    port = str(complaint.get("port") or "")
    # an id stable for the same complaint (a re-delivery dedups), made without the recipient's number
    digest = hashlib.sha256(f"{port}\0{ts_ms}\0{complaint['content']}".encode()).hexdigest()[:16]
    return feedback_record(f"complaint-{digest}", 1, complaint["content"], "12321", ts_ms, source="complaint")


class ComplaintForwarder(ConsumerLoop):
    name = "complaints->feedback"

    def __init__(self, bootstrap: str, complaints_topic: str, feedback_topic: str, group_id: str,
                 publisher: Publisher, *, session_timeout_s: float = 10.0, retry_s: float = 2.0):
        super().__init__()
        self.bootstrap = bootstrap
        self.complaints_topic = complaints_topic
        self.feedback_topic = feedback_topic
        self.group_id = group_id
        self.publisher = publisher
        self.session_timeout_ms = int(session_timeout_s * 1000)
        self.retry_s = retry_s
        self.forwarded = 0

    def _consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            self.complaints_topic, bootstrap_servers=self.bootstrap, group_id=self.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest", session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=max(1000, self.session_timeout_ms // 3), request_timeout_ms=15_000)

    async def _serve(self, consumer: AIOKafkaConsumer) -> None:
        self.connected = True
        while True:
            batches = await consumer.getmany(timeout_ms=1_000, max_records=500)
            for records in batches.values():
                for record in records:
                    feedback = complaint_feedback(decode_record(record.value))
                    if feedback is not None:
                        await self.publisher.send(self.feedback_topic, feedback["msg_id"], feedback)
                        self.forwarded += 1
            if batches:
                await consumer.commit()
