"""The import graph is a contract the build checks: layers, no cycles, no reach into fakes.

`make test` runs `lint-imports` on the tree. These tests show each contract can fail: a copy of
the packages gets one forbidden import (function-level ones included) and `lint-imports`
must name the broken contract. They also hold what the contracts cannot say directly: no
import cycle between any two modules, and no module over ~400 lines without a reason.
"""

from __future__ import annotations

import graphlib
import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("newsletter", "subscribers")
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"
LONG_MODULE_LINES = 400
LONG_REASON = "Why this module is long:"

LAYERS = "Shells over services over core"
STANDALONE = "The audience domain stands on its own"
NO_TRANSPORT = "Rendering writes the substitution contract, never a transport"
NO_FAKES = "Only tests and benchmarks use the test fakes"
ACYCLIC = "No import cycle among siblings, at any depth"


def test_the_contracts_are_the_ones_this_file_breaks() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    names = {c["name"] for c in config["contracts"]}
    assert names == {LAYERS, STANDALONE, NO_TRANSPORT, NO_FAKES, ACYCLIC}
    layers = next(c for c in config["contracts"] if c["name"] == LAYERS)
    assert layers["exhaustive"] is True and layers["containers"] == ["newsletter"]


@pytest.fixture(scope="module")
def copy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The packages' sources and pyproject.toml, copied once (no caches, no data files)."""
    root = tmp_path_factory.mktemp("tree")
    for package in PACKAGES:
        shutil.copytree(
            ROOT / package,
            root / package,
            ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "static", "data"),
        )
    shutil.copy(ROOT / "pyproject.toml", root / "pyproject.toml")
    return root


def lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache", "--config", str(root / "pyproject.toml")],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def broken_contracts(output: str) -> set[str]:
    return {line.split(" BROKEN")[0].strip() for line in output.splitlines() if " BROKEN" in line}


def test_the_tree_keeps_every_contract(copy_tree: Path) -> None:
    result = lint(copy_tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


BREAKS = [
    # (module to edit, line appended, contracts that must break)
    (
        "newsletter/rendering/variants.py",
        "from newsletter.transports.base import Batch  # noqa",
        {NO_TRANSPORT, LAYERS},
    ),
    (
        "subscribers/tokens.py",
        "def _leak():\n    from newsletter.settings import Settings  # noqa\n",
        {STANDALONE},
    ),
    (
        "newsletter/cli/common.py",
        "def _fake():\n    from newsletter.testing.fake_sendgrid import FakeSendgrid  # noqa\n",
        {NO_FAKES, LAYERS},
    ),
    (  # a function-level import from core up to a service counts
        "newsletter/months.py",
        "def _up():\n    from newsletter.issues import compose_issue  # noqa\n",
        {LAYERS, ACYCLIC},
    ),
    (  # a clock that imports the web (shells are independent of each other)
        "newsletter/scheduler.py",
        "def _web():\n    from newsletter.web import app  # noqa\n",
        {LAYERS},
    ),
    (  # a cycle inside one package, where no layer rule looks
        "newsletter/delivery/plan.py",
        "def _loop():\n    from newsletter.delivery.engine import send_issue  # noqa\n",
        {ACYCLIC},
    ),
]


@pytest.mark.parametrize(("module", "line", "expected"), BREAKS, ids=[b[0] for b in BREAKS])
def test_a_forbidden_import_breaks_its_contract(
    copy_tree: Path, module: str, line: str, expected: set[str]
) -> None:
    path = copy_tree / module
    original = path.read_text()
    try:
        path.write_text(original + "\n\n" + line + "\n")
        result = lint(copy_tree)
    finally:
        path.write_text(original)
    assert result.returncode == 1, result.stdout + result.stderr
    assert broken_contracts(result.stdout) == expected, result.stdout


def test_a_new_top_level_module_must_be_given_a_layer(copy_tree: Path) -> None:
    stray = copy_tree / "newsletter" / "utils.py"
    stray.write_text('"""A grab-bag nobody placed."""\n')
    try:
        result = lint(copy_tree)
    finally:
        stray.unlink()
    assert result.returncode == 1
    assert broken_contracts(result.stdout) == {LAYERS}
    assert "newsletter.utils" in result.stdout


def import_cycle(graph: grimp.ImportGraph) -> list[str] | None:
    """One cycle of imports between modules (first module repeated last), or None."""
    edges = {m: graph.find_modules_directly_imported_by(m) for m in graph.modules}
    try:
        graphlib.TopologicalSorter(edges).prepare()
    except graphlib.CycleError as exc:
        return exc.args[1]
    return None


def test_no_two_modules_import_each_other_even_inside_functions() -> None:
    graph = grimp.build_graph(*PACKAGES, cache_dir=None)
    assert import_cycle(graph) is None
    # The check sees what it must: one added import back up makes a cycle it names.
    graph.add_import(importer="newsletter.months", imported="newsletter.issues")
    assert {"newsletter.months", "newsletter.issues"} <= set(import_cycle(graph) or ())
    graph.remove_import(importer="newsletter.months", imported="newsletter.issues")
    # A package and its own module count too (the doctor's package once was one).
    graph.add_import(importer="newsletter.doctor.checks", imported="newsletter.doctor")
    assert {"newsletter.doctor", "newsletter.doctor.checks"} <= set(import_cycle(graph) or ())


def test_long_modules_say_why() -> None:
    unexplained = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            text = path.read_text()
            if text.count("\n") > LONG_MODULE_LINES and LONG_REASON not in text[:3000]:
                unexplained.append(f"{path.relative_to(ROOT)} ({text.count(chr(10))} lines)")
    assert unexplained == [], f"split these, or say '{LONG_REASON} …' in the docstring"
