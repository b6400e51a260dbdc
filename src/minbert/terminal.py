"""One rich console for tables: the terminal's width, or 120 columns when output goes to a file or a pipe."""

from __future__ import annotations

import sys

from rich.console import Console


def console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 120)
