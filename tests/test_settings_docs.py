"""Every setting is documented (docs/configuration.md, the README's compose table) and listed by the CLI."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from detector.cli import main
from detector.errors import ConfigError
from detector.settings import DEFAULT_SECRET, SETTINGS, Settings

REPO = Path(__file__).resolve().parent.parent
CONFIG_DOC = REPO / "docs" / "configuration.md"
README = REPO / "README.md"
COMPOSE_HEADING = "## Running with docker compose"


def _section(text: str, heading: str) -> str:
    """The text under ``heading`` up to the next heading of the same level."""
    start = text.index(heading)
    level = heading.split(" ")[0]
    rest = text[start + len(heading):]
    match = re.search(rf"^{level} ", rest, flags=re.M)
    return rest[: match.start()] if match else rest


def _cells(row: str) -> list[str]:
    """Cells of a markdown table row, honouring ``\\|`` escapes."""
    return [c.strip() for c in re.split(r"(?<!\\)\|", row.strip())[1:-1]]


def _settings_markdown() -> list[str]:
    result = CliRunner().invoke(main, ["settings", "--markdown"])
    assert result.exit_code == 0, result.output
    return result.output.strip().splitlines()


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_setting_is_in_configuration_doc(name):
    assert f"`{name}`" in CONFIG_DOC.read_text(), \
        f"{name} is missing from docs/configuration.md: paste `smsguard settings --markdown` there"


def test_configuration_doc_table_matches_the_registry():
    doc_rows = set(CONFIG_DOC.read_text().splitlines())
    stale = [row for row in _settings_markdown() if row not in doc_rows]
    assert not stale, ("docs/configuration.md is out of date with detector/settings.py; "
                       "paste `smsguard settings --markdown` there. Rows differing:\n" + "\n".join(stale))


def test_markdown_table_has_three_cells_a_row():
    header, rule, *rows = _settings_markdown()
    assert len(rows) == len(SETTINGS)
    for row in rows:
        assert len(_cells(row)) == 3, row


@pytest.mark.parametrize("name", [s.name for s in SETTINGS])
def test_setting_is_in_readme_compose_environment(name):
    section = _section(README.read_text(), COMPOSE_HEADING)
    documented = {_cells(line)[0].strip("`") for line in section.splitlines() if line.startswith("| `")}
    assert name in documented, f"{name} is missing from the README's docker compose environment table"


def test_cli_lists_every_setting_with_its_default():
    result = CliRunner().invoke(main, ["settings"])
    assert result.exit_code == 0, result.output
    listed = dict(line.split("=", 1) for line in result.output.splitlines() if line and not line[0].isspace())
    assert listed == {s.name: str(s.default) for s in SETTINGS}


def test_production_refuses_the_default_secret():
    with pytest.raises(ConfigError, match="SMSGUARD_RECIPIENT_SECRET"):
        Settings.from_env({"SMSGUARD_ENV": "production"}).check_production()
    assert Settings.from_env({"SMSGUARD_ENV": "production"}).recipient_secret == DEFAULT_SECRET


def test_production_refuses_a_short_secret_and_accepts_a_real_one():
    with pytest.raises(ConfigError):
        Settings.from_env({"SMSGUARD_ENV": "production", "SMSGUARD_RECIPIENT_SECRET": "short"}).check_production()
    Settings.from_env({"SMSGUARD_ENV": "production", "SMSGUARD_RECIPIENT_SECRET": "x" * 32}).check_production()


def test_development_runs_on_the_default_secret():
    Settings.from_env({}).check_production()


def test_readme_sets_up_with_exactly_two_commands_and_ci_runs_the_test_one():
    section = _section(README.read_text(), "## Set up and run")
    block = re.search(r"```bash\n(.*?)```", section, flags=re.S).group(1)
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.split("#")[0].strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    for command in commands:
        script = REPO / command.split()[1]
        assert "source" in script.read_text() and "setup.sh" in script.read_text(), f"{script} must run setup.sh"
    ci = (REPO / ".ci" / "run").read_text()
    assert re.search(r"^exec bash scripts/test\.sh$", ci, flags=re.M)


@pytest.mark.parametrize("name,raw", [
    ("SMSGUARD_BATCH_SIZE", "0"), ("SMSGUARD_BATCH_SIZE", "-5"), ("SMSGUARD_PARTITIONS", "0"),
    ("SMSGUARD_DEDUP_TTL_S", "0"), ("SMSGUARD_MAX_EVENT_BYTES", "-1"), ("SMSGUARD_DASHBOARD_PORT", "70000"),
    ("SMSGUARD_DASHBOARD_PORT", "0"), ("SMSGUARD_DEFAULT_TZ_OFFSET_H", "15"), ("SMSGUARD_MODEL_RELOAD_S", "nan"),
    ("SMSGUARD_BROKER_SESSION_TIMEOUT_S", "-1"),
])
def test_numbers_outside_a_settings_bounds_are_refused(name, raw):
    with pytest.raises(ConfigError, match=rf"^{name}: must be at (least|most) "):
        Settings.from_env({name: raw})


def test_bounds_keep_the_zeros_that_mean_something():
    # 0 disables the cache, lets the OS pick the worker's web port (the tests do), keeps no decisions (replay)
    zeros = {n: "0" for n in ("SMSGUARD_SCORE_CACHE_SIZE", "SMSGUARD_WORKER_WEB_PORT",
                              "SMSGUARD_DECISION_REPLAY_TTL_S", "SMSGUARD_BATCH_WINDOW_S")}
    assert Settings.from_env(zeros).score_cache_size == 0
    with pytest.raises(ConfigError, match="SMSGUARD_BATCH_SIZE"):
        Settings.from_env({**zeros, "SMSGUARD_BATCH_SIZE": "0"})


def test_env_help_says_what_production_requires():
    """check_production requires the recipient secret and no operator token: the help must say the same."""
    from detector.settings import setting
    env_help = setting("SMSGUARD_ENV").help
    assert "SMSGUARD_RECIPIENT_SECRET" in env_help and "operator token must" not in env_help
    assert "optional" in env_help
    Settings.from_env({"SMSGUARD_ENV": "production", "SMSGUARD_RECIPIENT_SECRET": "x" * 32,
                       "SMSGUARD_OPERATOR_TOKENS": ""}).check_production()
