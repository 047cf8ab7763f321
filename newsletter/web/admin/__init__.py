"""The editor's desk under `/admin`: thin routes over `newsletter.desk`."""

from fastapi import APIRouter

from newsletter.web.admin import (
    audience,
    drafts,
    editing,
    history,
    issues,
    release,
    signin,
    start_here,
)

router = APIRouter()
router.include_router(signin.router)
router.include_router(issues.router)
router.include_router(editing.router)
router.include_router(release.router)
router.include_router(history.router)
router.include_router(audience.router)
router.include_router(drafts.router)  # issue 27: drafted summaries
router.include_router(start_here.router)  # issue 26: the reading list
