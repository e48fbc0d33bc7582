"""Plain --help texts and one-line errors of every command (safegen_guard.console)."""

from __future__ import annotations

import argparse

import pytest

from safegen_guard.console import plain_help, run_main
from safegen_guard.errors import DataLoadError


def test_plain_help_removes_rest_markup():
    doc = """Train it: ``python -m x ...`` (see :func:`~a.b.fit`).

Example::

    python -m x --out ``DIR``

Lone marker:

::

    y
"""
    assert plain_help(doc) == (
        "Train it: python -m x ... (see fit).\n\nExample:\n\n    python -m x --out DIR\n\n"
        "Lone marker:\n\n    y"
    )
    assert plain_help(None) == ""
    with pytest.raises(TypeError, match="`doc` must be a str or None, got int"):
        plain_help(3)


def test_run_main_prints_one_line_for_our_errors(capsys):
    def bad() -> int:
        raise DataLoadError("unknown dataset 'mni15'")

    assert run_main(bad, "python -m tool") == 2
    assert capsys.readouterr().err == "python -m tool: error: unknown dataset 'mni15'\n"
    assert run_main(lambda: None, "t") == 0 and run_main(lambda: 3, "t") == 3
    assert run_main(lambda: {"a": 1}, "t") == 0  # benchmark mains return their results
    with pytest.raises(RuntimeError, match="a bug"):  # a bug keeps its traceback
        run_main(lambda: (_ for _ in ()).throw(RuntimeError("a bug")), "t")


def _parsers() -> dict[str, argparse.ArgumentParser]:
    from benchmarks import run
    from generators import sample, train

    return {
        "generators.train": train.build_parser(),
        "generators.sample": sample.build_parser(),
        "benchmarks.run": run.build_parser(),
    }


def test_module_help_is_plain_and_every_option_explained():
    for name, parser in _parsers().items():
        text = parser.format_help()
        assert "``" not in text and "::" not in text, (name, text)
        for action in parser._actions:
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("module", ["benchmarks.report", "benchmarks.loo"])
def test_help_of_mains_without_a_parser_function(module, capsys):
    import importlib

    with pytest.raises(SystemExit) as info:
        importlib.import_module(module).main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith(f"usage: python -m {module}")
    assert "``" not in text and "::" not in text


def test_generator_training_with_a_misspelt_dataset_is_one_line(tmp_path, capsys):
    from generators import train

    args = ["ddpm", "--data", "mni15", "--size", "32", "--preset", "tiny", "--out", str(tmp_path)]
    assert run_main(lambda: train.main([*args, "--quiet"]), "python -m generators.train") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(
        "python -m generators.train: error: unknown dataset 'mni15': expected one of"
    )
