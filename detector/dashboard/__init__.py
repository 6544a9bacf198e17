"""The operations dashboard: one page, a JSON API, server-sent events and an audit log.

Modules: :mod:`.auth` (operator tokens), :mod:`.audit` (append-only audit log),
:mod:`.live` (per-port statistics folded from ``sms.decisions``), :mod:`.feeds` (Kafka
consumer and producer that survive broker restarts), :mod:`.actions` (operator actions
and feedback labels), :mod:`.app` (the aiohttp application). ``docs/dashboard.md``
documents the API.
"""
