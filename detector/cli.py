"""``smsguard``: one thin click CLI over the library.

Each feature module owns its commands and exposes ``register(main, bench)``; this file
only lists those modules. Heavy imports (faust, sklearn, jieba) happen inside the
commands so ``smsguard --help`` stays fast. :class:`SmsGuardError` is caught here, at
the edge, and printed as a one-line error.
"""
from __future__ import annotations

import importlib
import sys

import click

from detector.errors import SmsGuardError
from detector.settings import SETTINGS

# Modules that add commands; each defines register(main: click.Group, bench: click.Group).
COMMAND_MODULES = (
    "detector.commands",
    "detector.stream_cli",
    "detector.ops_cli",
    "detector.services",
    "detector.gateway_cli",
    "detector.state_cli",
    "detector.bench_cli",
    "training.cli",
)


class _Group(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except SmsGuardError as exc:
            click.secho(f"smsguard: {exc}", fg="red", err=True)
            sys.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="smsguard")
def main() -> None:
    """smsguard: streaming spam-SMS detection for bulk-SMS (106) ports.

    Configuration comes from SMSGUARD_* environment variables: see `smsguard settings`.
    """


@main.group()
def bench() -> None:
    """Benchmarks that print figures against a baseline measured in the same run."""


@main.command("settings")
@click.option("--markdown", is_flag=True, help="Print the table as docs/configuration.md has it.")
def settings_cmd(markdown: bool) -> None:
    """List every setting with its default and what it does."""
    if markdown:
        click.echo("| variable | default | what it does |\n|---|---|---|")
        for s in SETTINGS:
            default = f"`{s.default}`" if s.default != "" else "(empty)"
            help_text = s.help.replace("|", "\\|")     # a bare | would end the table cell
            click.echo(f"| `{s.name}` | {default} | {help_text} |")
        return
    for s in SETTINGS:
        click.echo(f"{s.name}={s.default}\n    {s.help}")


for _name in COMMAND_MODULES:
    importlib.import_module(_name).register(main, bench)


if __name__ == "__main__":
    main()
