"""axe-core in a Playwright page: the accessibility check of the desk's browser test.

axe.min.js comes from npm (`npm ci`, package.json). It is injected as an inline script, so
the page's own CSP must be bypassed in the context that runs the check (`bypass_csp=True`).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page

AXE = Path(__file__).resolve().parent.parent / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


def axe_path() -> Path:
    if not AXE.exists():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"{AXE} missing: run `npm ci`", pytrace=False)
        pytest.skip("axe-core not installed here: run `npm ci`")
    return AXE


def serious_violations(page: Page) -> list[str]:
    """Serious and critical axe-core violations of the page, one line each."""
    page.add_script_tag(path=str(axe_path()))
    # The email frames are sandboxed (no script): axe cannot enter them, so it skips frames.
    options = "{resultTypes: ['violations'], iframes: false}"
    result = page.evaluate(f"async () => await axe.run(document, {options})")
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — "
        + "; ".join(n["target"][0] if n["target"] else "?" for n in v["nodes"][:3])
        for v in result["violations"]
        if v.get("impact") in BLOCKING
    ]
