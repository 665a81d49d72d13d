"""How the tools write for people: to a terminal, a file or a CI log alike, and into the
README's generated sections."""

import re
import sys
from pathlib import Path

from rich.console import Console

#: Width given to rich when the output is not a terminal: wide enough that no table is cut.
UNBOUNDED_WIDTH = 1000


def console() -> Console:
    """A rich console that never wraps a printed line (a command stays one line to copy) and,
    into a file or a CI log, never cuts a table to 80 columns."""
    if sys.stdout.isatty():
        return Console(soft_wrap=True)
    return Console(soft_wrap=True, width=UNBOUNDED_WIDTH)


def replace_section(path: Path, start: str, end: str, section: str) -> None:
    """Rewrite what lies between the marker lines `start` and `end` of the file."""
    text = path.read_text()
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise ValueError(f"{path} has no {start} ... {end} section")
    path.write_text(pattern.sub(lambda _: f"{start}\n{section}\n{end}", text))
