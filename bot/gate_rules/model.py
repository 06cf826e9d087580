"""The change gate's vocabulary: what a pipeline asks, what the bot answers, and what it knows of
a change request. Frozen values, no I/O."""

from __future__ import annotations

from collections.abc import Iterable
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
    CR_PENDING = "cr_pending"  # the CR is being looked up or created (by this or a concurrent call)
    GATE_TIMEOUT = "gate_timeout"
    JIRA_UNAVAILABLE = "jira_unavailable"  # 5xx / timeout / 429: wait and retry
    JIRA_AUTH = "jira_auth"  # 401/403 for the service account: fail
    JIRA_ERROR = "jira_error"  # Jira refused the request otherwise (e.g. 400 on create): fail
    CANCELLED = "cancelled"


class CrSource(StrEnum):
    SUPPLIED = "supplied"  # the pipeline named the CR
    LINKED = "linked"  # the CR linked to this project+version+environment earlier
    FOUND = "found"  # an open CR whose summary matched exactly
    CREATED = "created"  # created by the bot


class GateStatus(StrEnum):
    """Whether the gate's decision may still change."""

    ACTIVE = "active"  # waiting, or proceeding with no deployment reported yet
    DONE = "done"  # failed, cancelled, or the pipeline reported the deployment


class DeploymentEventKind(StrEnum):
    """What a pipeline reports after the gate answered."""

    STARTED = "deployment_started"
    SUCCEEDED = "deployment_succeeded"
    FAILED = "deployment_failed"


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
class LookupProblem:
    """Why no usable CR could be read, for `decide`: the reason plus what a message needs."""

    reason: Reason
    cr_keys: tuple[str, ...] = ()  # the CR(s) concerned: a supplied key, the two ambiguous matches
    detail: str = ""  # Jira's own words, one line
    retry_after_seconds: float | None = None  # what Jira asked for (429/503)


@dataclass(frozen=True, slots=True)
class GatePolicy:
    """The configured rules a decision applies (lists compared case-insensitively)."""

    proceed_statuses: tuple[str, ...] = ("Implementing",)
    wait_statuses: tuple[str, ...] = ("Preview", "Planning", "Authorize", "Awaiting Implementation")
    max_wait_seconds: int = 24 * 3600
    poll_interval_seconds: int = 30
    closed_statuses: tuple[str, ...] = ("Closed", "Completed", "Canceled", "Cancelled", "Declined", "Done")
    extra: dict[str, str] = field(default_factory=dict)

    def is_proceed(self, status: str) -> bool:
        return status_in(status, self.proceed_statuses)

    def is_wait(self, status: str) -> bool:
        return status_in(status, self.wait_statuses)

    def is_closed(self, status: str) -> bool:
        return status_in(status, self.closed_statuses)


def status_in(status: str, statuses: Iterable[str]) -> bool:
    """Whether `status` is one of `statuses`, ignoring case and runs of spaces."""
    wanted = _folded(status)
    return any(_folded(s) == wanted for s in statuses)


def _folded(status: str) -> str:
    return " ".join(status.split()).casefold()


@dataclass(frozen=True, slots=True)
class GateTarget:
    """Where the gate's CR lives: the Jira connection and the service desk it is raised in."""

    instance: str | None  # alias or URL of a configured Jira instance; None: the only one
    service_desk: str  # project key of the JSM service desk
    request_type: str  # request type name (or id)


@dataclass(frozen=True, slots=True)
class Gate:
    """One pipeline's question about one deployment, as stored, with its latest answer."""

    id: str
    idempotency_key: str
    body_hash: str
    request: GateRequest  # names as configured (canonical spelling)
    target: GateTarget
    controlled: bool
    verdict: Verdict
    change_request: ChangeRequest | None  # the latest snapshot read from Jira
    status: GateStatus
    created_at: datetime
    updated_at: datetime
    deadline: datetime  # created_at + max wait: waiting beyond it fails with gate_timeout
    decided_at: datetime | None = None  # when the decision first became proceed or fail
    root_post_id: str | None = None  # the gate's Mattermost root post
    deployment: DeploymentEventKind | None = None  # the latest deployment event reported
    revision: int = 1  # bumped by every stored change (optimistic concurrency, long-poll)

    @property
    def decision(self) -> Decision:
        return self.verdict.decision

    @property
    def reason(self) -> Reason:
        return self.verdict.reason

    @property
    def message(self) -> str:
        return self.verdict.message

    @property
    def project(self) -> str:
        return self.request.project

    @property
    def environment(self) -> str:
        return self.request.environment

    @property
    def version(self) -> str:
        return self.request.version

    @property
    def is_final(self) -> bool:
        """No evaluation changes it any more (failed, cancelled, deployment reported)."""
        return self.status is GateStatus.DONE or self.verdict.decision is Decision.FAIL


@dataclass(frozen=True, slots=True)
class GateEvent:
    """A deployment event a pipeline reported (idempotent by `event_id` per gate)."""

    gate_id: str
    event_id: str
    kind: str
    created_at: datetime
    detail: str = ""
