"""`newsletter issue preview`: what a subscriber with given topics receives, from the CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlmodel import Session

from newsletter.settings import Settings
from newsletter.testing.sample_issue import build_sample_issue


def run_cli(settings: Settings, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "NEWSLETTER_DATABASE_URL": settings.database_url,
        "NEWSLETTER_SECRET_KEY": settings.secret_key,
        "NEWSLETTER_POSTAL_ADDRESS": settings.postal_address,
        "NEWSLETTER_VAR_DIR": str(settings.var_dir),
    }
    return subprocess.run(
        [sys.executable, "-m", "newsletter", "issue", "preview", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture
def sample(session: Session) -> None:
    build_sample_issue(session, "2026-05", papers=12)


def test_preview_writes_html_for_a_topic_set(
    sample: None, settings: Settings, tmp_path: Path
) -> None:
    out = tmp_path / "graphs.html"
    proc = run_cli(settings, tmp_path, "2026-05", "--topics", "graph-learning", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "Wrote" in proc.stdout
    body = out.read_text()
    assert body.lower().startswith("<!doctype html>")
    main = body.split("Also this month", 1)[0]
    assert "Hypergraph Neural Diffusion" in main
    assert "Thermodynamic natural gradient descent" not in main
    assert "/unsubscribe/PREVIEW-NOT-A-REAL-TOKEN" in body and "__NL_" not in body


def test_preview_text_to_stdout(sample: None, settings: Settings, tmp_path: Path) -> None:
    proc = run_cli(settings, tmp_path, "2026-05", "--text")
    assert proc.returncode == 0, proc.stderr
    assert (
        "== Optimization ==" in proc.stdout
        and "Thermodynamic natural gradient descent" in proc.stdout
    )
    assert "Read the paper: https://arxiv.org/abs/" in proc.stdout
    assert "__NL_" not in proc.stdout and "<mj" not in proc.stdout


@pytest.mark.parametrize(
    ("args", "code", "needle"),
    [
        (("2026-05", "--topics", "optimization,quantum"), 1, "unknown topic 'quantum'"),
        (("2030-01",), 1, "no issue for 2030-01"),
        (("May",), 2, "month must look like 2026-05"),
    ],
)
def test_preview_failures_are_one_line(
    sample: None, settings: Settings, tmp_path: Path, args: tuple[str, ...], code: int, needle: str
) -> None:
    proc = run_cli(settings, tmp_path, *args)
    assert proc.returncode == code
    assert needle in proc.stderr and "Traceback" not in proc.stderr
