"""Feedback loop: operators' labels and 12321 complaints → sms.feedback → ``smsguard export-labels`` TSV."""
from __future__ import annotations

import csv
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from detector.dashboard.actions import dedup_labels, feedback_record, write_labels_tsv
from detector.dashboard.app import DASHBOARD, create_app
from detector.dashboard.feeds import Publisher, read_to_end
from detector.events import TOPIC_COMPLAINTS, TOPIC_FEEDBACK
from detector.services import acreate_topics
from detector.privacy import mask_numbers
from detector.simulator import publish
from detector.textnorm import normalize
from training.data import load_tsv
from test_dashboard_api import ALL_TOPICS, wait_for


def test_dedup_keeps_the_latest_label_per_text_whatever_the_read_order():
    records = [
        feedback_record("m2", 0, "双11 全场五折 回T退订【京东】", "bob", ts_ms=2_000),
        feedback_record("m1", 1, "双11 全场五折 回T退订【京东】", "alice", ts_ms=1_000),   # older, read later
        feedback_record("m3", 1, "加微信\tabc123\n领红包", "alice", ts_ms=3_000),
        {"msg_id": "m4", "label": 7, "content": "bad label", "ts": 4_000},
        {"msg_id": "m5", "label": 1, "content": "   ", "ts": 5_000},
    ]
    assert dedup_labels(records) == [(1, "加微信 abc123 领红包"), (0, "双11 全场五折 回T退订【京东】")]


def test_tsv_reads_back_like_the_training_data(tmp_path):
    rows = [(1, '他说"加V"领 "红包'), (0, "您的验证码是#")]
    path = tmp_path / "labels.tsv"
    assert write_labels_tsv(rows, path) == 2
    with path.open(encoding="utf-8", newline="") as fh:
        back = [(int(label), text) for label, text in csv.reader(fh, delimiter="\t", quoting=csv.QUOTE_NONE)]
    assert back == rows


@pytest.mark.parametrize("served", [
    "您好!我司于13:14为您派送快件，见字请致电18166969448联系处理。【平安银行】",
    "贷款秒批，无抵押，联系王经理 +86 138 1234 5678",
    "贷款秒批 联系 138-1234-5678 加微信",
    "【工商银行】详询网点或0755-62345678，您尾号****1234的卡",
])
def test_an_exported_text_is_read_by_the_trainer_as_the_served_text_was(served, tmp_path):
    """QA14 case 2: a labelled message's numbers arrive masked (138****5678), and the normaliser read the mask as
    '0****0': the retrained model learned the labelled spam without its phone number (v4's strongest spam
    feature) and with a '**' no served message has. The export writes the mask the way the corpus masks digits
    (x), which the normaliser reads as the digits the served message had."""
    path = tmp_path / "labels.tsv"
    write_labels_tsv(dedup_labels([feedback_record("m1", 1, mask_numbers(served), "alice", 1)]), path)
    exported = load_tsv(path).texts[0]
    assert normalize(exported) == normalize(served)
    assert not any(middle in exported for middle in ("6696", "1234 ", "-1234", "6234"))


async def test_complaints_and_operator_labels_export_through_the_cli(settings, tmp_path):
    s = settings()
    await acreate_topics(s.kafka_bootstrap, [s.topic(t) for t in ALL_TOPICS], partitions=2)
    now = int(time.time() * 1000)
    complaints = [
        {"type": "complaint", "ts": now, "port": "10690666", "recipient": "13812345678",
         "content": "加微信 13912345678 领红包，稳赚不赔"},
        {"type": "complaint", "ts": now + 1, "port": "10690666", "recipient": "13812345679"},     # no content
    ]
    await publish(s.kafka_bootstrap, s.topic(TOPIC_COMPLAINTS), complaints)
    publisher = Publisher(s.kafka_bootstrap)
    for record in (feedback_record("m1", 1, "【京东】双11 全场五折 回T退订", "alice", now),
                   feedback_record("m1", 0, "【京东】双11 全场五折 回T退订", "bob", now + 5_000)):   # bob corrects
        await publisher.send(s.topic(TOPIC_FEEDBACK), record["msg_id"], record)
    await publisher.close()

    async with TestClient(TestServer(create_app(s))) as client:
        forwarder = client.server.app[DASHBOARD].complaints

        async def forwarded():
            return forwarder.forwarded >= 1

        await wait_for(forwarded, timeout=40)

    out = tmp_path / "labels.tsv"
    # this checkout's code (the console script runs whichever checkout the virtualenv was installed from)
    result = subprocess.run([sys.executable, "-m", "detector.cli", "export-labels", "-o", str(out)],
                            cwd=Path(__file__).resolve().parents[1], env={**s.as_env(), "PATH": "/usr/bin:/bin"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "2 labelled texts" in result.stdout and "from 3 feedback records" in result.stdout
    lines = out.read_text(encoding="utf-8").splitlines()
    assert sorted(lines) == sorted(["1\t加微信 139xxxx5678 领红包，稳赚不赔", "0\t【京东】双11 全场五折 回T退订"])
    feedback = await read_to_end(s.kafka_bootstrap, s.topic(TOPIC_FEEDBACK))
    complaint = next(f for f in feedback if f["source"] == "complaint")
    assert complaint["who"] == "12321" and "13812345678" not in str(feedback)


def test_export_labels_answers_a_missing_folder_or_broker_in_one_line(tmp_path, monkeypatch):
    """QA14 case 3: ``-o`` into a folder that does not exist read the whole topic, then crashed with a
    FileNotFoundError traceback; an unreachable broker's one-line error came with aiokafka's 'Unclosed
    AIOKafkaConsumer' warning."""
    from click.testing import CliRunner

    from detector.cli import main

    monkeypatch.setenv("SMSGUARD_KAFKA_BOOTSTRAP", "127.0.0.1:1")        # nothing listens there
    missing = tmp_path / "no-such-folder" / "labels.tsv"
    result = CliRunner().invoke(main, ["export-labels", "-o", str(missing)])
    assert result.exit_code == 2
    assert f"no folder {missing.parent}" in result.output and "Traceback" not in result.output

    script = ("import sys\nfrom detector.cli import main\n"
              f"sys.argv = ['smsguard', 'export-labels', '-o', {str(tmp_path / 'labels.tsv')!r}]\nmain()\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=Path(__file__).resolve().parents[1],
                         env={"SMSGUARD_KAFKA_BOOTSTRAP": "127.0.0.1:1", "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and "cannot reach Kafka at 127.0.0.1:1" in run.stderr
    assert "Unclosed" not in run.stderr and "Traceback" not in run.stderr
    assert not (tmp_path / "labels.tsv").exists()


def test_the_export_masks_numbers_that_reached_the_topic_unmasked(tmp_path):
    """QA14 case 4: feedback records written before case 1's fix (or by any other producer of sms.feedback)
    hold '+86 138 1234 5678' as sent, and export-labels copied it into the training file."""
    records = [{"msg_id": "m1", "label": 1, "content": "贷款秒批 联系王经理 +86 138 1234 5678", "ts": 1},
               {"msg_id": "m2", "label": 0, "content": "快递员电话13812345678", "ts": 2}]
    write_labels_tsv(dedup_labels(records), tmp_path / "labels.tsv")
    exported = (tmp_path / "labels.tsv").read_text(encoding="utf-8")
    assert "1234" not in exported and "+86 138 xxxx 5678" in exported and "138xxxx5678" in exported
