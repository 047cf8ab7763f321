"""The delivery engine: plan one delivery per subscriber, claim batches of one variant,
send each in one request, record every outcome durably. See DESIGN.md flow steps 4-6."""

from newsletter.delivery.claim import new_worker_id
from newsletter.delivery.copies import send_test_copy
from newsletter.delivery.engine import SendReport, drain, finish_if_done, send_issue
from newsletter.delivery.issue_run import SendProgress
from newsletter.delivery.pacing import RateLimiter, RetryPolicy
from newsletter.delivery.plan import PlanReport, begin_sending, plan_deliveries, preview_plan
from newsletter.delivery.preflight import require_postal_address, require_public_sender
from newsletter.delivery.status import DeliveryProblem, StatusReport, issue_status

__all__ = [
    "DeliveryProblem",
    "PlanReport",
    "RateLimiter",
    "RetryPolicy",
    "SendProgress",
    "SendReport",
    "StatusReport",
    "begin_sending",
    "drain",
    "finish_if_done",
    "issue_status",
    "new_worker_id",
    "plan_deliveries",
    "preview_plan",
    "require_postal_address",
    "require_public_sender",
    "send_issue",
    "send_test_copy",
]
