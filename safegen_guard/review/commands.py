"""Sub-commands of `safegen` that serve people: ``review`` and ``study``."""

from __future__ import annotations

import argparse
import getpass

from safegen_guard.review.server import DEFAULT_HOST

__all__ = ["add_review_commands"]


def add_review_commands(sub: argparse._SubParsersAction) -> None:
    """Add ``review`` and ``study`` to the ``safegen`` sub-parsers (each sets ``handler``)."""
    r = sub.add_parser(
        "review",
        help="accept/reject scored or quarantined images in the browser",
        description="Review a `safegen score --out` folder or a quarantine folder by keyboard "
        "(a accept, r reject, u unsure, n note); decisions go to SQLite.",
    )
    r.add_argument("folder", help="scored folder (verdicts.jsonl) or quarantine folder")
    _add_server_options(r)
    r.add_argument("--reviewer", default=_user(), help="reviewer id (default: your user name)")
    r.add_argument("--db", default=None, help="SQLite file (default: FOLDER/review.sqlite)")
    r.add_argument(
        "--export",
        default=None,
        metavar="FILE",
        help="write the decisions to FILE (.csv or .jsonl) and exit instead of serving",
    )
    r.set_defaults(handler=_review)


def _add_server_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}, this machine only)",
    )
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0 = any free)")


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "reviewer"


def _review(args: argparse.Namespace) -> int:
    from pathlib import Path

    from safegen_guard.review.app import create_review_app
    from safegen_guard.review.server import serve
    from safegen_guard.review.store import DecisionStore

    if args.export:
        db = args.db or Path(args.folder) / "review.sqlite"
        if not Path(db).is_file():
            raise FileNotFoundError(f"no review database at {db}")
        print(f"wrote {DecisionStore(db).export(args.export)}")
        return 0
    app = create_review_app(args.folder, db=args.db, reviewer=args.reviewer)
    serve(app, args.host, args.port)
    return 0
