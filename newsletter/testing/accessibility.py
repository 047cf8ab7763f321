"""axe-core inside a Playwright page: the accessibility check the browser tests share.

axe-core comes from the npm registry (`package.json`, installed by `make install`); the page
must allow the injected script (open it in a context with `bypass_csp=True`).
"""

from __future__ import annotations

from typing import Any

from newsletter.settings import REPO_ROOT

AXE_JS = REPO_ROOT / "node_modules" / "axe-core" / "axe.min.js"
AXE_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def serious_violations(
    page: Any, axe_source: str | None = None, *, frames: bool = True
) -> list[str]:
    """axe-core's serious and critical findings on the page as it stands (WCAG 2 A/AA).

    `axe_source` injects axe first; leave it out when this document already has it.
    `frames=False` skips iframes: sandboxed email frames run no script, so axe cannot enter
    them (the emails are checked as documents of their own)."""
    if axe_source is not None:
        page.evaluate(axe_source)
    result = page.evaluate(
        """async ([tags, frames]) => await axe.run(document, {
            runOnly: {type: 'tag', values: tags}, iframes: frames})""",
        [AXE_TAGS, frames],
    )
    return [
        f"{v['id']} ({v['impact']}): {v['help']} @ {[n['target'] for n in v['nodes'][:3]]}"
        for v in result["violations"]
        if v["impact"] in ("serious", "critical")
    ]
