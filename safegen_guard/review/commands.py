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
    _add_study(sub)


def _add_study(sub: argparse._SubParsersAction) -> None:
    st = sub.add_parser(
        "study",
        help="reader study: create, serve, analyze",
        description="Reader study: readers classify images as safe/unsafe with and without "
        "SAFEGEN (counterbalanced crossover); analyze accuracy, time and trust.",
    )
    ss = st.add_subparsers(dest="study_command", metavar="STEP", required=True)
    c = ss.add_parser(
        "create",
        help="build the cases and score them with a guard",
        description="Build a study folder: real slices (truth safe), injected artifacts and "
        "optional generated PNGs, each scored with the guard, and the reading schedule.",
    )
    c.add_argument("folder", help="study folder to create")
    c.add_argument("--guard", required=True, help="folder written by `safegen fit`")
    c.add_argument("--data", default="mni152", help="data set of the real slices (mni152)")
    c.add_argument("--clean", type=int, default=20, help="real slices, truth safe (20)")
    c.add_argument("--artifacts", type=int, default=20, help="injected artifacts, unsafe (20)")
    c.add_argument("--generated", default=None, help="folder of generated PNGs to add")
    c.add_argument(
        "--generated-truth",
        choices=["safe", "unsafe"],
        default="unsafe",
        help="ground truth of the --generated images (default unsafe)",
    )
    c.add_argument("--seed", type=int, default=0, help="seed of cases and schedule (0)")
    c.add_argument(
        "--washout",
        type=int,
        default=None,
        help="least number of readings between a case's two readings (default: half the cases)",
    )
    c.set_defaults(handler=_study_create)
    s = ss.add_parser(
        "serve",
        help="run the study in the browser",
        description="Serve the study; each reader opens the printed address and enters an id. "
        "Readings go to FOLDER/study.sqlite; a restart continues where each reader stopped.",
    )
    s.add_argument("folder", help="study folder")
    _add_server_options(s)
    s.set_defaults(handler=_study_serve)
    a = ss.add_parser(
        "analyze",
        help="write analysis.json and analysis.html",
        description="Per arm accuracy, sensitivity, specificity, decision time and trust; "
        "repeated-measures ANOVA and paired tests; written as analysis.json and analysis.html.",
    )
    a.add_argument("folder", help="study folder")
    a.add_argument("--out", default=None, help="output folder (default: the study folder)")
    a.set_defaults(handler=_study_analyze)


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


def _study_create(args: argparse.Namespace) -> int:
    from pathlib import Path

    from safegen_guard import Guard
    from safegen_guard.review.study_create import create_study

    generated = None
    if args.generated:
        pngs = sorted(Path(args.generated).glob("*.png"))
        if not pngs:
            raise FileNotFoundError(f"no PNG files in {args.generated}")
        generated = [(p, args.generated_truth) for p in pngs]
    path = create_study(
        args.folder,
        Guard.load(args.guard),
        data=args.data,
        n_clean=args.clean,
        n_artifact=args.artifacts,
        generated=generated,
        seed=args.seed,
        washout=args.washout,
    )
    print(f"wrote {path}; run `safegen study serve {args.folder}`")
    return 0


def _study_serve(args: argparse.Namespace) -> int:
    from safegen_guard.review.server import serve
    from safegen_guard.review.study_app import create_study_app

    serve(create_study_app(args.folder), args.host, args.port)
    return 0


def _study_analyze(args: argparse.Namespace) -> int:
    from safegen_guard.review.study import Study
    from safegen_guard.review.study_analysis import analyze, readings_frame, write_analysis

    study = Study.open(args.folder)
    df = readings_frame(study)
    if df.empty:
        raise FileNotFoundError(f"no readings in {study.folder / 'study.sqlite'} yet")
    from safegen_guard.errors import SafeGenError

    try:
        result = analyze(df)
    except ValueError as err:  # too few readers or arms: a message, not a traceback
        raise SafeGenError(f"cannot analyze {study.folder}: {err}") from err
    json_path, html_path = write_analysis(args.out or study.folder, result, df)
    print(f"wrote {json_path} and {html_path}")
    return 0
