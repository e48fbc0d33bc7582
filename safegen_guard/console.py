"""Command-line plumbing shared by `safegen` and the `python -m` tools: plain help, short errors."""

from __future__ import annotations

import re
import sys
from collections.abc import Callable

__all__ = ["plain_help", "run_main"]

_ROLE = re.compile(r":(?:func|class|meth|mod|attr|data|obj|exc):`~?([^`]+)`")
_LITERAL = re.compile(r"``([^`]+)``")


def plain_help(doc: str | None) -> str:
    """A module docstring as ``--help`` text: reST markup removed, layout kept.

    ``Example::`` becomes ``Example:``, a lone ``::`` line disappears, ````x```` and
    ``:func:`x``` become ``x``. Use it with ``argparse.RawDescriptionHelpFormatter`` so the
    docstring's line breaks and indented examples survive.

    Args:
        doc: the docstring (``None`` gives ``""``).

    Returns:
        The plain text, stripped of leading and trailing blank lines.
    """
    if doc is None:
        return ""
    if not isinstance(doc, str):
        raise TypeError(f"`doc` must be a str or None, got {type(doc).__name__}")
    lines = []
    for line in doc.strip("\n").splitlines():
        if line.strip() == "::":
            continue
        if line.rstrip().endswith("::"):
            line = line.rstrip()[:-1]
        line = _LITERAL.sub(r"\1", _ROLE.sub(lambda m: m.group(1).split(".")[-1], line))
        lines.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def run_main(main: Callable[[], int | None], prog: str) -> int:
    """Run a command's ``main()``; an error SAFEGEN raises on purpose becomes one line.

    A :class:`~safegen_guard.errors.SafeGenError` (unknown data set, missing guard folder,
    bad input) or a ``FileNotFoundError`` is printed as ``PROG: error: MESSAGE`` on stderr
    with exit code 2, without the traceback around it; anything else (a bug) keeps its
    traceback.

    Args:
        main: the command; an int it returns is the exit code (anything else means 0).
        prog: the command's name as the user typed it, e.g. ``"python -m generators.train"``.

    Returns:
        The exit code, for ``raise SystemExit(run_main(main, prog))``.
    """
    from safegen_guard.errors import SafeGenError

    try:
        code = main()
    except (SafeGenError, FileNotFoundError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    return code if isinstance(code, int) else 0
