"""Which console listener `eden-mlx train` gets: the live dashboard on a capable terminal, plain
log lines otherwise (pipes, CI, nohup, --no-dashboard).

Rich is imported only when it is needed: the plain log (every benchmark, CI and nohup run) starts
without it. Why: rich.console + rich.live and the panels cost 0.02-0.05 s of start-up (2 cores,
`import mlx_eden.ui.dashboard` after the plain log's imports, 3 fresh processes).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from ..run.events import Listener
from .plainlog import PlainLog


def wants_dashboard(stream: TextIO, no_dashboard: bool = False) -> bool:
    """The live view only on a real, capable terminal; CI, nohup and pipes get plain lines."""
    if no_dashboard:
        return False
    from rich.console import Console

    console = Console(file=stream)
    return console.is_terminal and not console.is_dumb_terminal


@contextmanager
def console_listener(log_every: int, no_dashboard: bool = False,
                     stream: TextIO | None = None) -> Iterator[Listener]:
    """The listener for `eden-mlx train`'s console: a Dashboard or a PlainLog. Whatever ends the
    run (StopEvent, an exception, a second Ctrl-C), the live display is stopped on exit."""
    stream = stream or sys.stdout
    if not wants_dashboard(stream, no_dashboard):
        yield PlainLog(log_every, stream=stream)
        return
    from rich.console import Console

    from .dashboard import Dashboard

    with Dashboard(Console(file=stream)) as dashboard:
        yield dashboard
