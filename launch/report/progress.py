"""The report's transient progress bars (rich), off with ``--no-progress`` and where the console is no terminal
(a log, a pipe, the demo's captured output): rich cannot erase a bar there, and each one would leave an empty line."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn


def progress_bar(console: Console, enabled: bool) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        disable=not enabled or not console.is_terminal,
        transient=True,
    )
