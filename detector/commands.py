"""Commands of the detection core: replay and the signature registry."""
from __future__ import annotations

import click


def register(main: click.Group, bench: click.Group) -> None:
    """Add this module's commands to the CLI (filled in as the engine lands)."""
