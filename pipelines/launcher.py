"""The ``beltcast`` console script. A Ctrl+C while Python loads the command's own modules (the
command line, rich's console: a fraction of a second) ends it as one during a job does,
``error: interrupted`` with status 130, not a traceback of the import it fell in."""

from __future__ import annotations

import sys
from typing import NoReturn

INTERRUPTED = 130  # 128 + SIGINT, as the command's own


def main() -> NoReturn:
    """Load :func:`pipelines.cli.main` and run it."""
    try:
        from pipelines.cli import main as command
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr, flush=True)
        raise SystemExit(INTERRUPTED) from None
    command()
