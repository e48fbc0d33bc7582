"""Tests of the leave-one-family-out protocol: no family leaks into its own choices."""

from __future__ import annotations

from types import SimpleNamespace

import torch

from benchmarks import loo
from safegen_guard.calibration import Calibrator

VIEWS = ["a", "b", "c"]


def _table_and_guard():
    g = torch.Generator().manual_seed(0)
    cal = Calibrator(VIEWS, 0.1, 0.05)
    cal.fit_images(
        torch.randn(60, 3, generator=g),
        torch.randn(60, 3, generator=g),
        torch.zeros(60),
        torch.zeros(60),
    )
    clean = torch.randn(80, 3, generator=g)
    table = loo.ScoreTable(VIEWS, clean, torch.zeros(80))
    for fam, col in (("f1", 0), ("f2", 1)):
        for sev, shift in (("mild", 2.0), ("strong", 5.0)):
            s = torch.randn(40, 3, generator=g)
            s[:, col] += shift  # only one view sees this family
            table.cells.append(loo.Cell(fam, fam + "_kind", sev, False, s, torch.zeros(40)))
    return table, SimpleNamespace(calibrator=cal)


def test_select_views_uses_only_the_given_families():
    table, guard = _table_and_guard()
    views, objective = loo.select_views(guard, table, {"f1"})
    assert views == ["a"] and objective > 0.9
    assert loo.select_views(guard, table, {"f2"})[0] == ["b"]
    assert set(loo.select_views(guard, table, {"f1", "f2"})[0]) == {"a", "b"}


def test_protocol_unseen_family_gets_views_chosen_without_it():
    table, guard = _table_and_guard()
    result = loo.run_protocol(guard, table)
    assert set(result["seen_views"]) == {"a", "b"}
    for row in result["rows"]:
        other = "b" if row["family"] == "f1" else "a"
        assert row["views_without_family"] == [other]  # chosen without the family itself
        # the seen selection includes the family's own view; the unseen one does not
        assert row["seen"] > 0.75 and row["seen"] > row["unseen"] + 0.2
    strong_unseen = [r["unseen"] for r in result["rows"] if r["severity"] == "strong"]
    assert max(strong_unseen) < 0.75  # held out, the family is missed: the protocol shows it
    md = loo.loo_markdown(result)
    assert "| f1 | f1_kind | strong |" in md and "unseen strong" in md


def test_cell_seed_depends_on_names_not_positions():
    assert loo.cell_seed("swirl", "mild", 0) == loo.cell_seed("swirl", "mild", 0)
    assert loo.cell_seed("swirl", "mild", 0) != loo.cell_seed("swirl", "strong", 0)
