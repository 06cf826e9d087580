"""The change gate's vocabulary: what a pipeline asks, what the bot answers, and what it knows of
a change request. Frozen values, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum


class Decision(StrEnum):
    PROCEED = "proceed"
    WAIT = "wait"
    FAIL = "fail"


class Reason(StrEnum):
    """Why a decision was taken; stable codes that pipelines may branch on."""

    NOT_CHANGE_CONTROLLED = "not_change_controlled"
    APPROVED = "approved"  # proceed status, inside the window
    AWAITING_APPROVAL = "awaiting_approval"  # a wait status
    WINDOW_NOT_OPEN = "window_not_open"  # approved, planned start in the future
    WINDOW_CLOSED = "window_closed"  # approved, planned end passed
    NOT_APPROVED_IN_TIME = "not_approved_in_time"  # still waiting when the planned end passed
    STATUS_NOT_ALLOWED = "status_not_allowed"  # declined, closed, unknown status
    CR_NOT_FOUND = "cr_not_found"  # a supplied CR key that does not exist (or is not readable)
    CR_CLOSED = "cr_closed"  # a supplied CR in a closed/final status
    AMBIGUOUS_CR = "ambiguous_cr"  # two open exact matches
    GATE_TIMEOUT = "gate_timeout"
    JIRA_UNAVAILABLE = "jira_unavailable"  # 5xx / timeout / 429: wait and retry
    JIRA_AUTH = "jira_auth"  # 401/403 for the service account: fail
    CANCELLED = "cancelled"


class CrSource(StrEnum):
    SUPPLIED = "supplied"  # the pipeline named the CR
    LINKED = "linked"  # the CR linked to this project+version+environment earlier
    FOUND = "found"  # an open CR whose summary matched exactly
    CREATED = "created"  # created by the bot


@dataclass(frozen=True, slots=True)
class ChangeRequest:
    id: str  # Jira issue id: links are stored by id, not key
    key: str
    url: str
    status: str
    summary: str = ""
    planned_start: datetime | None = None  # UTC
    planned_end: datetime | None = None  # UTC
    source: CrSource = CrSource.FOUND


@dataclass(frozen=True, slots=True)
class GateRequest:
    project: str
    environment: str
    version: str
    change_request: str | None = None  # a CR key supplied by the pipeline


@dataclass(frozen=True, slots=True)
class Verdict:
    decision: Decision
    reason: Reason
    message: str  # a human sentence that names the CR
    retry_after_seconds: int | None = None


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """The configured rules a decision applies (lists compared case-insensitively)."""

    proceed_statuses: tuple[str, ...] = ("Implementing",)
    wait_statuses: tuple[str, ...] = ("Preview", "Planning", "Authorize", "Awaiting Implementation")
    max_wait_seconds: int = 24 * 3600
    poll_interval_seconds: int = 30
    closed_statuses: tuple[str, ...] = ("Closed", "Completed", "Canceled", "Cancelled", "Declined", "Done")
    extra: dict[str, str] = field(default_factory=dict)
