"""Operations commands: ``dashboard``, ``ports``, ``tail flagged`` and ``export-labels``.

``smsguard ports`` reads the dashboard's API when ``--api`` is given (full live rows)
and otherwise the port states straight from Redis. ``smsguard tail flagged`` follows
``sms.decisions`` on every partition without joining a consumer group, printing flagged
and blocked messages with numbers masked. ``smsguard export-labels -o FILE.tsv`` writes
the feedback topic as ``label<TAB>text`` (the format of ../shared/data/sms_zh) with the
last label per text, for ``smsguard train``.
"""
from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from detector.errors import SmsGuardError
from detector.events import TOPIC_DECISIONS, TOPIC_FEEDBACK
from detector.settings import Settings

_STATE_STYLE = {"block": "bold red", "throttle": "bold yellow", "watch": "magenta", "normal": "dim",
                "allowlist": "cyan"}


# Control characters (C0, DEL, C1) and bidi marks/overrides: printed raw they move the cursor, clear the screen or
# reorder the rest of the line, so a note could disguise what the table says. Shown as U+FFFD instead.
_UNPRINTABLE = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def _shown(value: Any) -> str:
    r"""Text from Redis, a decision or an operator, made safe to print: no control or bidi characters, and
    rich markup escaped (a note with "[/b]" crashed the table, "[red]" restyled it).

    >>> print(_shown("fraud [/b] [red]x\u202e\x1b[2J"))
    fraud \[/b] \[red]x��[2J
    """
    from rich.markup import escape

    return escape(_UNPRINTABLE.sub("\ufffd", str(value)))


def _beijing(ts_ms: int | None) -> str:
    if not ts_ms:
        return "—"
    return time.strftime("%m-%d %H:%M:%S", time.gmtime(ts_ms / 1000 + 8 * 3600))


def _fetch_api_ports(api: str, state: str | None, limit: int) -> list[dict[str, Any]]:
    query = urllib.parse.urlencode({k: v for k, v in {"state": state, "limit": limit}.items() if v})
    url = f"{api.rstrip('/')}/api/ports?{query}"
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return json.load(resp)["ports"]
    except (urllib.error.URLError, OSError, ValueError, KeyError) as exc:
        raise SmsGuardError(f"dashboard API {url}: {exc}") from exc


async def _redis_port_rows(settings: Settings, state: str | None) -> list[dict[str, Any]]:
    from detector.state.redis import RedisStore

    store = RedisStore.from_settings(settings)
    try:
        states = await store.all_port_states()
    finally:
        await store.close()
    severity = {"block": 4, "throttle": 3, "watch": 2, "normal": 1, "allowlist": 0}
    rows = [{**a.as_dict(), "state_reasons": [r.signal for r in a.reasons]} for a in states.values()
            if not state or a.state == state]
    rows.sort(key=lambda r: (-severity.get(r["state"], 1), -r["ts_ms"]))
    return rows


def _print_ports(rows: list[dict[str, Any]], live: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="smsguard · ports by risk", header_style="bold", pad_edge=False, expand=False)
    table.add_column("port", style="cyan", no_wrap=True)
    table.add_column("state", no_wrap=True)
    if live:
        for name in ("risk", "rate/min", "base/min", "spam", "fan-out", "compl."):
            table.add_column(name, justify="right")
    table.add_column("by", no_wrap=True)
    table.add_column("since (CST)", no_wrap=True)
    table.add_column("until", no_wrap=True)
    table.add_column("reasons / note")
    for r in rows:
        state = r.get("state", "normal")
        cells = [_shown(r["port"]), f"[{_STATE_STYLE.get(state, '')}]{_shown(state)}[/]"]
        if live:
            baseline = r.get("baseline")
            cells += [f"{r['risk']:.2f}", f"{r['rate_now']:.1f}", "—" if baseline is None else f"{baseline:.1f}",
                      f"{r['spam_share']:.0%}", str(r["fan_out"]), str(r["complaints"])]
        reasons = ", ".join(r.get("state_reasons") or [s for s, _ in r.get("top_reasons") or []])
        note = r.get("note")
        cells += [_shown(r.get("decided_by") or "—"), _beijing(r.get("since_ms")), _beijing(r.get("expires_at_ms")),
                  _shown(f"{reasons}{' · ' + note if note else ''}")]
        table.add_row(*cells)
    Console().print(table)
    if not rows:
        click.echo("no ports with a state yet")


def _print_flagged(decision: dict[str, Any]) -> None:
    from rich.console import Console

    reasons = ", ".join(r["signal"] for r in decision["reasons"])
    colour = "red" if decision["action"] == "block" else "yellow"
    Console(highlight=False).print(
        f"{_beijing(decision['ts_ms'])} [{colour}]{_shown(decision['action'].upper()):5}[/] "
        f"[cyan]{_shown(decision['port'])}[/] "
        f"p={decision['score'] or 0:.2f} risk={decision['risk'] or 0:.1f} {_shown(decision['recipient'])} "
        f"[dim]{_shown(reasons)}[/]\n    {_shown(decision['content'])}")


async def _tail_flagged(settings: Settings, lookback: int, count: int | None, as_json: bool) -> None:
    from detector.dashboard.feeds import TopicFollower
    from detector.dashboard.live import FLAGGED_ACTIONS, public_decision

    done = asyncio.Event()
    seen = 0

    def handle(topic: str, value: dict[str, Any]) -> None:
        nonlocal seen
        if value.get("action") not in FLAGGED_ACTIONS or done.is_set():
            return
        public = public_decision(value)
        if as_json:
            click.echo(json.dumps(public, ensure_ascii=False))
        else:
            _print_flagged(public)
        seen += 1
        if count is not None and seen >= count:
            done.set()

    follower = TopicFollower(settings.kafka_bootstrap, [settings.topic(TOPIC_DECISIONS)], handle,
                             lookback=lookback, name="tail")
    follower.start()
    shown_error = None
    try:
        while not done.is_set():              # say once when the broker goes away (the follower keeps retrying)
            if follower.error != shown_error and not follower.connected:
                shown_error = follower.error
                click.secho(f"kafka: {shown_error}; retrying", fg="yellow", err=True)
            elif follower.connected:
                shown_error = None
            try:
                await asyncio.wait_for(done.wait(), 1.0)
            except asyncio.TimeoutError:
                pass
    finally:
        await follower.stop()


async def export_labels(settings: Settings, output: str) -> tuple[int, int]:
    """Write the feedback topic as training TSV; return (records read, rows written)."""
    from pathlib import Path

    from detector.dashboard.actions import dedup_labels, write_labels_tsv
    from detector.dashboard.feeds import read_to_end

    folder = Path(output).parent
    if not folder.is_dir():             # said before the whole topic is read, not as a traceback after it
        raise SmsGuardError(f"cannot write {output}: no folder {folder}")
    records = await read_to_end(settings.kafka_bootstrap, settings.topic(TOPIC_FEEDBACK))
    try:
        return len(records), write_labels_tsv(dedup_labels(records), output)
    except OSError as exc:
        raise SmsGuardError(f"cannot write {output}: {exc.strerror or exc}") from None


def register(main: click.Group, bench: click.Group) -> None:
    @main.command("dashboard")
    @click.option("--host", default=None, help="Address to listen on (default SMSGUARD_DASHBOARD_HOST).")
    @click.option("--port", type=int, default=None, help="Port (default SMSGUARD_DASHBOARD_PORT).")
    @click.option("--lookback", type=int, default=20_000, show_default=True,
                  help="Records per partition of sms.decisions read back on start.")
    def dashboard_cmd(host: str | None, port: int | None, lookback: int) -> None:
        """Serve the operations dashboard (page, JSON API, live stream, /metrics)."""
        import logging

        from detector.dashboard.app import run

        settings = Settings.from_env()
        settings.check_production()
        logging.basicConfig(level=settings.log_level)
        host = host or settings.dashboard_host
        port = port or settings.dashboard_port
        click.echo(f"smsguard dashboard on http://{host}:{port}/ "
                   f"({'operators: ' + ', '.join(sorted(set(settings.operator_tokens().values()))) if settings.operator_tokens() else 'read-only: no operator tokens'})")
        run(settings, host, port, lookback=lookback)

    @main.command("ports")
    @click.option("--api", default=None, help="Dashboard URL (e.g. http://127.0.0.1:8080) for live rows; "
                                              "without it, port states from Redis.")
    @click.option("--state", type=click.Choice(["normal", "watch", "throttle", "block", "allowlist"]), default=None)
    @click.option("--limit", type=int, default=40, show_default=True)
    def ports_cmd(api: str | None, state: str | None, limit: int) -> None:
        """Risky ports as a table: state, who set it, why (and live rates with --api)."""
        if api:
            rows = _fetch_api_ports(api, state, limit)
        else:
            rows = asyncio.run(_redis_port_rows(Settings.from_env(), state))[:limit]
        _print_ports(rows, live=bool(api))

    @main.group("tail")
    def tail_group() -> None:
        """Follow a stream in the terminal."""

    @tail_group.command("flagged")
    @click.option("--lookback", type=int, default=20, show_default=True,
                  help="Records per partition to show from before now.")
    @click.option("--count", type=int, default=None, help="Stop after this many flagged messages.")
    @click.option("--json", "as_json", is_flag=True, help="One JSON object a line.")
    def tail_flagged_cmd(lookback: int, count: int | None, as_json: bool) -> None:
        """Flagged and blocked decisions as they happen (every partition, numbers masked)."""
        import logging

        # the terminal gets one line when the broker goes away, not the client library's retry log
        logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        logging.getLogger("detector.dashboard.feeds").setLevel(logging.CRITICAL)
        try:
            asyncio.run(_tail_flagged(Settings.from_env(), lookback, count, as_json))
        except KeyboardInterrupt:
            pass

    @main.command("export-labels")
    @click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), help="TSV file to write.")
    def export_labels_cmd(output: str) -> None:
        """Write operators' and complaints' labels from sms.feedback as label<TAB>text (last label per text)."""
        read, written = asyncio.run(export_labels(Settings.from_env(), output))
        click.echo(f"{written} labelled texts written to {output} (from {read} feedback records)")
