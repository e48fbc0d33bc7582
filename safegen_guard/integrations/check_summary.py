"""The one-line summary the Lightning callback prints after each check."""

from __future__ import annotations

__all__ = ["summary_line"]


def summary_line(summary: dict[str, float], *, prefix: str, step: int, stage: str) -> str:
    """One line for a check: ``safegen check at step 120 (train): 5/16 unsafe (31%), ...``.

    Args:
        summary: the output of :func:`summarise` (plus ``errors``, if logged).
        prefix: the callback's metric prefix, which names it in the line.
        step: ``trainer.global_step`` of the check.
        stage: ``"train"`` or ``"validation"``.
    """
    n = int(summary["num_samples"])
    unsafe = round(summary["unsafe_rate"] * n)
    reasons = sorted(
        ((k.split("/", 1)[1], int(v)) for k, v in summary.items() if k.startswith("reason/")),
        key=lambda kv: -kv[1],
    )
    fired = ", ".join(f"{name} {count}" for name, count in reasons if count > 0) or "none"
    line = (
        f"{prefix} check at step {step} ({stage}): {unsafe}/{n} unsafe "
        f"({summary['unsafe_rate']:.0%}), score mean {summary['score_mean']:.2f} "
        f"p95 {summary['score_p95']:.2f}, reasons: {fired}"
    )
    if "batch_separability" in summary:
        line += (
            f", batch test: separability {summary['batch_separability']:.2f}, "
            f"{summary['batch_reject_rate']:.0%} rejected"
        )
    if summary.get("errors"):
        line += f", errors {int(summary['errors'])}"
    return line
