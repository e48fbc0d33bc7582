"""Screenshots of the `safegen score --report` page and of the review app (docs/review.md).

Six real mni152 test slices and three pure-noise images are scored with
``safegen score --explain --report``; headless Chromium (Debian's ``chromium``, driven by
Playwright) photographs the report and the review app after ``r`` on the first image and
``n`` plus a typed note on the second::

    python -m benchmarks.figures.review_screenshots --guard guard/ --out docs/figures

``--guard`` should be the default guard (``safegen fit --data mni152 --out guard/``); without
an explainer (``--no-explainer``) the panels show the anomaly map only.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from safegen_guard.console import plain_help, run_main

__all__ = ["write_inputs", "main"]


def write_inputs(folder: Path, size: int, *, n_real: int = 6, n_noise: int = 3) -> Path:
    """Write ``n_real`` evenly spaced mni152 test slices and ``n_noise`` uniform-noise PNGs."""
    from safegen_guard.data import load_dataset

    folder.mkdir(parents=True, exist_ok=True)
    test = load_dataset("mni152", "test", size).images
    for k, i in enumerate(np.linspace(0, len(test) - 1, n_real).round().astype(int)):
        arr = np.round(test[i, 0].numpy() * 255).astype(np.uint8)
        Image.fromarray(arr, mode="L").save(folder / f"real{k}.png")
    rng = np.random.default_rng(0)
    for k in range(n_noise):
        arr = rng.integers(0, 256, (size, size), dtype=np.uint8)
        Image.fromarray(arr, mode="L").save(folder / f"noise{k}.png")
    return folder


def _chromium() -> str:
    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        raise FileNotFoundError("no chromium executable (apt-get install chromium)")
    return exe


def _screenshots(scored: Path, out: Path, reviewer: str) -> None:
    from playwright.sync_api import sync_playwright

    from safegen_guard.review.app import create_review_app
    from safegen_guard.review.server import ServerThread

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        page.goto((scored / "report" / "index.html").resolve().as_uri())
        page.wait_for_load_state("load")
        page.screenshot(path=str(out / "report.png"))
        page.close()
        with ServerThread(create_review_app(scored, reviewer=reviewer)) as url:
            page = browser.new_page(viewport={"width": 1100, "height": 820})
            page.goto(url)
            page.wait_for_selector("#decision")
            before = page.inner_text("#status")
            page.keyboard.press("r")
            page.wait_for_function(
                "(b) => document.getElementById('status').textContent !== b", arg=before
            )
            page.keyboard.press("n")
            page.keyboard.type("noise over the whole slice")
            page.wait_for_load_state("load")
            page.screenshot(path=str(out / "review.png"))
            page.close()
        browser.close()


def main(argv: list[str] | None = None) -> int:
    """Score the inputs with ``--guard`` and write ``report.png`` and ``review.png``."""
    from safegen_guard import Guard
    from safegen_guard.cli import main as safegen

    p = argparse.ArgumentParser(
        prog="python -m benchmarks.figures.review_screenshots",
        description=plain_help(__doc__),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--guard", required=True, help="guard folder (the default guard)")
    p.add_argument("--out", type=Path, default=Path("docs/figures"), help="where the PNGs go")
    p.add_argument("--reviewer", default="ann", help="reviewer id shown in the app")
    args = p.parse_args(argv)
    guard = Guard.load(args.guard)
    size = guard.config.image_size
    explain = ["--explain"] if guard.explainer is not None else []  # Grad-CAM and SHAP columns
    with tempfile.TemporaryDirectory() as tmp:
        inputs = write_inputs(Path(tmp) / "in", size)
        scored = Path(tmp) / "scored"
        code = safegen(
            ["score", str(inputs), "--guard", args.guard, "--out", str(scored), "--report",
             *explain]
        )  # fmt: skip
        if code != 0:
            return code
        args.out.mkdir(parents=True, exist_ok=True)
        _screenshots(scored, args.out, args.reviewer)
    print(f"wrote {args.out / 'report.png'} and {args.out / 'review.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_main(main, "python -m benchmarks.figures.review_screenshots"))
