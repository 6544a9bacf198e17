"""The dashboard in real headless Chromium, against real tansu + Redis and the dashboard in a subprocess.

Screenshots go to artifacts/screenshots/. Decisions and port actions are produced the
way the worker writes them (see tests/test_dashboard_api.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from detector.dashboard.feeds import read_to_end
from detector.events import TOPIC_DECISIONS, TOPIC_FEEDBACK, TOPIC_PORT_ACTIONS
from detector.services import acreate_topics, free_port
from detector.settings import Settings
from test_dashboard_api import (ALL_TOPICS, SPAM_PORT, TOKEN, TOKENS_ENV, decide_like_worker, engine_throttle,
                                produce, traffic)

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
BURST_PORT = "10690777"


def _http_json(url: str, timeout: float = 5.0) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.load(resp)


@contextlib.contextmanager
def dashboard_process(env: dict[str, str], log_path: Path):
    """``smsguard dashboard`` in its own process group on a free port; yields its URL once Kafka is read."""
    port = free_port()
    with log_path.open("w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "smsguard"), "dashboard", "--port", str(port)],
                                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if _http_json(f"{url}/api/status")["kafka"]["ok"]:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"dashboard did not come up: {log_path.read_text()[-2000:]}")
                time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stack_env(broker, redis_url: str, tmp: Path, prefix: str) -> dict[str, str]:
    return {
        **os.environ, **TOKENS_ENV,
        "SMSGUARD_KAFKA_BOOTSTRAP": broker.bootstrap, "SMSGUARD_REDIS_URL": redis_url,
        "SMSGUARD_TOPIC_PREFIX": prefix, "SMSGUARD_AUDIT_LOG": str(tmp / "audit.jsonl"),
        "SMSGUARD_DATA_DIR": str((REPO.parent / "shared" / "data" / "sms_zh").resolve()),
        "SMSGUARD_LOG_FORMAT": "text",
    }


async def prepare_topics(settings: Settings, background_minutes: int) -> None:
    """The topics, and ``background_minutes`` of traffic up to now already decided."""
    await acreate_topics(settings.kafka_bootstrap, [settings.topic(t) for t in ALL_TOPICS], partitions=3,
                         compacted=[settings.topic(TOPIC_PORT_ACTIONS)])
    now = int(time.time() * 1000)
    background = decide_like_worker(traffic(settings.data_dir, now - background_minutes * 60_000,
                                            background_minutes * 60, spam_rate=12), {SPAM_PORT})
    await produce(settings.kafka_bootstrap, settings.topic(TOPIC_DECISIONS), background)


@pytest.fixture(scope="module")
def browser_stack(broker, redis_server, tmp_path_factory):
    """Topics, 30 minutes of traffic already decided, and a running dashboard process."""
    import redis as redis_client

    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are needed (apt-get install chromium chromium-driver)")
    tmp = tmp_path_factory.mktemp("dashboard-browser")
    redis_client.Redis.from_url(redis_server.url).flushdb()
    env = stack_env(broker, redis_server.url, tmp, f"browser-{free_port()}.")
    settings = Settings.from_env(env)
    asyncio.run(prepare_topics(settings, 30))
    with dashboard_process(env, tmp / "dashboard.log") as url:
        yield {"url": url, "settings": settings}


@pytest.fixture(scope="module")
def driver(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--no-first-run", "--window-size=1600,1000", "--lang=zh-CN",
                f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(arg)
    drv = webdriver.Chrome(service=ChromeService(executable_path=str(CHROMEDRIVER)), options=options)
    drv.set_page_load_timeout(30)
    SHOTS.mkdir(parents=True, exist_ok=True)
    yield drv
    drv.quit()


def wait_until(drv, condition, timeout: float = 15.0):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(drv, timeout, poll_frequency=0.1).until(condition)


def css(selector: str):
    from selenium.webdriver.common.by import By

    return (By.CSS_SELECTOR, selector)


def read_fresh(drv, selector: str, read):
    """``read(element)`` of the element at ``selector``, found again if the page re-rendered it in between.

    The port page redraws its lists every few seconds (``loadPort``): an element found just before a redraw is
    stale by the time it is clicked or read.
    """
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    def attempt(d):
        try:
            return read(d.find_element(*css(selector))) or True
        except (StaleElementReferenceException, NoSuchElementException):
            return False
    return wait_until(drv, attempt)


def test_page_loads_with_ports_and_stream(browser_stack, driver):
    from selenium.webdriver.support import expected_conditions as ec

    driver.get(browser_stack["url"])
    wait_until(driver, ec.presence_of_element_located(css(f"#ports tbody tr[data-port='{SPAM_PORT}']")))
    wait_until(driver, ec.presence_of_element_located(css("#stream li.msg")))
    rows = driver.find_elements(*css("#ports tbody tr"))
    assert len(rows) == 5
    assert rows[0].get_attribute("data-port") == SPAM_PORT                  # the riskiest first
    assert driver.find_element(*css("#pill-kafka")).text.startswith("Kafka ✓")
    assert "Read-only" in driver.find_element(*css("#readonly-note")).text
    assert not driver.find_element(*css("#banner")).is_displayed()
    driver.save_screenshot(str(SHOTS / "01-overview.png"))


def test_spam_burst_appears_live_and_port_turns_throttle(browser_stack, driver):
    from selenium.webdriver.support import expected_conditions as ec

    settings = browser_stack["settings"]
    driver.get(browser_stack["url"])
    wait_until(driver, ec.presence_of_element_located(css("#ports tbody tr")))
    now = int(time.time() * 1000)
    burst_events = [e for e in traffic(settings.data_dir, now - 20_000, 20, spam_rate=120, seed=11)
                    if e["port"] == SPAM_PORT]
    for e in burst_events:
        e["port"] = BURST_PORT
    burst = decide_like_worker(burst_events, {BURST_PORT}, port_state="throttle")
    assert len(burst) >= 20
    throttle = engine_throttle(BURST_PORT, now)

    async def worker_writes() -> None:
        await produce(settings.kafka_bootstrap, settings.topic(TOPIC_DECISIONS), burst)
        await produce(settings.kafka_bootstrap, settings.topic(TOPIC_PORT_ACTIONS), [throttle.as_dict()])
        from detector.state.redis import RedisStore
        store = RedisStore(settings.redis_url)
        await store.put_port_state(throttle)
        await store.close()

    asyncio.run(worker_writes())
    started = time.monotonic()
    wait_until(driver, ec.presence_of_element_located(css(f"#stream li.msg[data-port='{BURST_PORT}']")), 10)
    seen_after = time.monotonic() - started
    wait_until(driver, ec.presence_of_element_located(
        css(f"#ports tbody tr[data-port='{BURST_PORT}'][data-state='throttle']")), 10)
    print(f"flagged burst on the page {seen_after:.2f}s after the worker-like writes finished")
    assert seen_after < 5.0, f"flagged burst took {seen_after:.1f}s after it was written to reach the page"
    item = driver.find_element(*css(f"#stream li.msg[data-port='{BURST_PORT}']"))
    text = item.text
    assert "classifier" in text and "risk" in text
    assert "r_" in text and "…" in text                 # only a short prefix of the recipient hash
    driver.save_screenshot(str(SHOTS / "02-spam-burst.png"))


def test_operator_blocks_a_port_with_a_reason(browser_stack, driver):
    from selenium.webdriver.support import expected_conditions as ec

    settings = browser_stack["settings"]
    driver.get(f"{browser_stack['url']}/port/{SPAM_PORT}")
    wait_until(driver, ec.text_to_be_present_in_element(css("#pp-port"), SPAM_PORT))
    assert not driver.find_element(*css("#pp-actions button[data-kind='block']")).is_displayed()  # read-only
    driver.find_element(*css("#token")).send_keys(TOKEN)
    driver.find_element(*css("#signin button")).click()
    wait_until(driver, ec.text_to_be_present_in_element(css("#whoami"), "alice"))
    driver.find_element(*css("#pp-actions button[data-kind='block']")).click()
    wait_until(driver, ec.visibility_of_element_located(css("#action-dialog")))
    driver.find_element(*css("#ad-submit")).click()                      # no reason: refused in the page
    assert driver.find_element(*css("#ad-error")).is_displayed()
    driver.find_element(*css("#ad-reason")).send_keys("夜间无退订营销 + 12321 投诉激增")
    driver.find_element(*css("#ad-expiry option[value='3600']")).click()
    driver.save_screenshot(str(SHOTS / "03-block-dialog.png"))
    driver.find_element(*css("#ad-submit")).click()
    wait_until(driver, ec.presence_of_element_located(css("#pp-state.state-block")))
    wait_until(driver, ec.presence_of_element_located(css("#pp-history li")))
    driver.save_screenshot(str(SHOTS / "04-port-blocked.png"))

    actions = asyncio.run(read_to_end(settings.kafka_bootstrap, settings.topic(TOPIC_PORT_ACTIONS)))
    blocks = [a for a in actions if a["port"] == SPAM_PORT and a["state"] == "block"]
    assert [(a["decided_by"], a["reasons"][0]["detail"]) for a in blocks] == [("alice", "夜间无退订营销 + 12321 投诉激增")]
    audit = [json.loads(line) for line in Path(settings.audit_log).read_text(encoding="utf-8").splitlines()]
    assert [(e["operator"], e["action"], e["port"], e["reason"]) for e in audit] == [
        ("alice", "block", SPAM_PORT, "夜间无退订营销 + 12321 投诉激增")]
    assert audit[0]["previous_state"] == "normal" and audit[0]["expires_at_ms"] - audit[0]["at_ms"] == 3_600_000

    # label the newest flagged message of the port as spam: it goes to sms.feedback with its masked text
    msg_id = read_fresh(driver, "#pp-recent li.msg[data-msg-id]", lambda item: item.get_attribute("data-msg-id"))
    read_fresh(driver, f"#pp-recent li.msg[data-msg-id='{msg_id}'] .label-btns button", lambda button: button.click())
    wait_until(driver, ec.text_to_be_present_in_element(css(f"#pp-recent li.msg[data-msg-id='{msg_id}'] .labelled"),
                                                        "labelled spam"))
    feedback = asyncio.run(read_to_end(settings.kafka_bootstrap, settings.topic(TOPIC_FEEDBACK)))
    assert [(f["msg_id"], f["label"], f["who"], f["source"]) for f in feedback] == [(msg_id, 1, "alice", "operator")]

    driver.get(browser_stack["url"])
    wait_until(driver, ec.text_to_be_present_in_element(css("#audit"), "夜间无退订营销"))
    wait_until(driver, ec.presence_of_element_located(css(f"#ports tbody tr[data-port='{SPAM_PORT}'][data-state='block']")))
    driver.save_screenshot(str(SHOTS / "05-overview-after-block.png"))
    driver.find_element(*css("#signout")).click()


def test_the_same_action_without_a_token_is_refused(browser_stack, driver):
    settings = browser_stack["settings"]
    driver.get(f"{browser_stack['url']}/port/{BURST_PORT}")
    status = driver.execute_async_script("""
        const done = arguments[arguments.length - 1];
        fetch(`/api/ports/${arguments[0]}/actions`, {method: "POST", headers: {"Content-Type": "application/json"},
              body: JSON.stringify({kind: "block", reason: "no token"})}).then(r => done(r.status), e => done(String(e)));
    """, BURST_PORT)
    assert status == 401
    actions = asyncio.run(read_to_end(settings.kafka_bootstrap, settings.topic(TOPIC_PORT_ACTIONS)))
    assert not [a for a in actions if a["port"] == BURST_PORT and a["state"] == "block"]
    assert "no token" not in Path(settings.audit_log).read_text(encoding="utf-8")


def test_a_redis_outage_shows_a_banner_and_goes_away(broker, own_redis, tmp_path, driver):
    from selenium.webdriver.support import expected_conditions as ec

    env = stack_env(broker, own_redis.url, tmp_path, f"browser-outage-{free_port()}.")
    asyncio.run(prepare_topics(Settings.from_env(env), 5))
    with dashboard_process(env, tmp_path / "dashboard.log") as url:
        driver.get(url)
        wait_until(driver, ec.presence_of_element_located(css("#ports tbody tr")))
        assert not driver.find_element(*css("#banner")).is_displayed()
        own_redis.stop()
        wait_until(driver, ec.visibility_of_element_located(css("#banner")), 15)
        assert "Redis unreachable" in driver.find_element(*css("#banner")).text
        assert driver.find_elements(*css("#ports tbody tr"))            # the last known table stays
        driver.save_screenshot(str(SHOTS / "06-redis-outage-banner.png"))
        own_redis.start()
        wait_until(driver, ec.invisibility_of_element_located(css("#banner")), 15)
