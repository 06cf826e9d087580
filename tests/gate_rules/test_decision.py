"""The decision table: one row per rule of `bot.gate_rules.decision.decide`, with an injected clock.

Rules that depend on which CR is found (supplied, linked, exact match, created, concurrency) are
rows of the resolution table in test_service.py; here the CR is given as resolved.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.gate.jsm import parse_jira_time
from bot.gate_rules.decision import decide
from bot.gate_rules.model import (
    ChangeRequest,
    CrSource,
    Decision,
    GatePolicy,
    LookupProblem,
    Reason,
)
from tests.gate.support import T0, at

POLICY = GatePolicy(poll_interval_seconds=30, max_wait_seconds=24 * 3600)
BERLIN = ZoneInfo("Europe/Berlin")
# A date-only window ("2024-05-01" to "2024-05-01") read in Berlin (UTC+2 in May).
DAY_START = parse_jira_time("2024-05-01", BERLIN)
DAY_END = parse_jira_time("2024-05-01", BERLIN, end_of_day=True)


def cr(
    status: str,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    source: CrSource = CrSource.FOUND,
    key: str = "ITSM-7",
) -> ChangeRequest:
    return ChangeRequest(
        id="10007",
        key=key,
        url=f"https://itsm.example.com/browse/{key}",
        status=status,
        summary="Octopus: Deploy",
        planned_start=start,
        planned_end=end,
        source=source,
    )


@dataclass(frozen=True)
class Row:
    cr: ChangeRequest | None
    decision: Decision
    reason: Reason
    now: datetime = T0
    controlled: bool = True
    problem: Reason | LookupProblem | None = None
    retry_after: int | None = None
    names: tuple[str, ...] = ("ITSM-7",)  # what the message must mention
    opened_at: datetime = T0 - timedelta(minutes=5)


ROWS: dict[str, Row] = {
    "not change controlled proceeds at once": Row(
        None, Decision.PROCEED, Reason.NOT_CHANGE_CONTROLLED, controlled=False, names=()
    ),
    "new CR created and waiting": Row(
        cr("Planning", source=CrSource.CREATED), Decision.WAIT, Reason.AWAITING_APPROVAL, retry_after=30
    ),
    "every wait status waits (Awaiting Implementation)": Row(
        cr("Awaiting Implementation"), Decision.WAIT, Reason.AWAITING_APPROVAL, retry_after=30
    ),
    "exact match approved, no window": Row(cr("Implementing"), Decision.PROCEED, Reason.APPROVED),
    "statuses compare case-insensitively": Row(cr(" implementing "), Decision.PROCEED, Reason.APPROVED),
    "approved, window not open: retry capped at the poll interval": Row(
        cr("Implementing", start=at(3600)), Decision.WAIT, Reason.WINDOW_NOT_OPEN, retry_after=30
    ),
    "approved, window opens in 10 s: retry when it opens": Row(
        cr("Implementing", start=at(10), end=at(7200)), Decision.WAIT, Reason.WINDOW_NOT_OPEN, retry_after=10
    ),
    "approved, only a start that passed": Row(
        cr("Implementing", start=at(-1)), Decision.PROCEED, Reason.APPROVED
    ),
    "approved, only an end still ahead": Row(
        cr("Implementing", end=at(1)), Decision.PROCEED, Reason.APPROVED
    ),
    "approved inside both ends": Row(
        cr("Implementing", start=at(-60), end=at(60)), Decision.PROCEED, Reason.APPROVED
    ),
    "start = end = now proceeds (inclusive)": Row(
        cr("Implementing", start=T0, end=T0), Decision.PROCEED, Reason.APPROVED
    ),
    "approved after the window closed": Row(
        cr("Implementing", start=at(-7200), end=at(-1)), Decision.FAIL, Reason.WINDOW_CLOSED
    ),
    "unapproved when the planned end passed": Row(
        cr("Authorize", end=at(-1)), Decision.FAIL, Reason.NOT_APPROVED_IN_TIME
    ),
    "unapproved, planned end ahead, keeps waiting": Row(
        cr("Authorize", end=at(60)), Decision.WAIT, Reason.AWAITING_APPROVAL, retry_after=30
    ),
    "unknown status fails": Row(cr("Peer review"), Decision.FAIL, Reason.STATUS_NOT_ALLOWED),
    "declined fails": Row(cr("Declined"), Decision.FAIL, Reason.STATUS_NOT_ALLOWED),
    "supplied CR closed fails": Row(
        cr("Completed", source=CrSource.SUPPLIED), Decision.FAIL, Reason.CR_CLOSED
    ),
    "supplied CR not found fails": Row(
        None,
        Decision.FAIL,
        Reason.CR_NOT_FOUND,
        problem=LookupProblem(Reason.CR_NOT_FOUND, ("ITSM-404",)),
        names=("ITSM-404",),
    ),
    "two exact matches fail naming both": Row(
        None,
        Decision.FAIL,
        Reason.AMBIGUOUS_CR,
        problem=LookupProblem(Reason.AMBIGUOUS_CR, ("ITSM-3", "ITSM-9")),
        names=("ITSM-3", "ITSM-9"),
    ),
    "CR being created by a concurrent call: wait briefly": Row(
        None, Decision.WAIT, Reason.CR_PENDING, problem=Reason.CR_PENDING, retry_after=2, names=()
    ),
    "date-only window in a time zone: Berlin's day has begun (still April 30 in UTC)": Row(
        cr("Implementing", start=DAY_START, end=DAY_END),
        Decision.PROCEED,
        Reason.APPROVED,
        now=datetime(2024, 4, 30, 22, 30, tzinfo=UTC),
    ),
    "date-only window in a time zone: before Berlin's midnight": Row(
        cr("Implementing", start=DAY_START, end=DAY_END),
        Decision.WAIT,
        Reason.WINDOW_NOT_OPEN,
        now=datetime(2024, 4, 30, 21, 59, 50, tzinfo=UTC),
        retry_after=10,
    ),
    "date-only window in a time zone: the end day lasts to its last instant": Row(
        cr("Implementing", start=DAY_START, end=DAY_END),
        Decision.PROCEED,
        Reason.APPROVED,
        now=datetime(2024, 5, 1, 21, 59, 59, 999999, tzinfo=UTC),
    ),
    "date-only window in a time zone: closed after Berlin's day": Row(
        cr("Implementing", start=DAY_START, end=DAY_END),
        Decision.FAIL,
        Reason.WINDOW_CLOSED,
        now=datetime(2024, 5, 1, 22, 0, tzinfo=UTC),
    ),
    "timeout after the maximum wait": Row(
        cr("Authorize"), Decision.FAIL, Reason.GATE_TIMEOUT, opened_at=T0 - timedelta(hours=24)
    ),
    "just before the timeout: retry no later than the deadline": Row(
        cr("Authorize"),
        Decision.WAIT,
        Reason.AWAITING_APPROVAL,
        opened_at=T0 - timedelta(hours=24) + timedelta(seconds=5),
        retry_after=5,
    ),
    "approved after the maximum wait still proceeds (only waits time out)": Row(
        cr("Implementing"), Decision.PROCEED, Reason.APPROVED, opened_at=T0 - timedelta(hours=30)
    ),
    "Jira 503 waits": Row(
        cr("Authorize"),
        Decision.WAIT,
        Reason.JIRA_UNAVAILABLE,
        problem=LookupProblem(Reason.JIRA_UNAVAILABLE, detail="unavailable, HTTP 503"),
        retry_after=30,
    ),
    "Jira 429 waits as long as Jira asked": Row(
        None,
        Decision.WAIT,
        Reason.JIRA_UNAVAILABLE,
        problem=LookupProblem(
            Reason.JIRA_UNAVAILABLE, ("ITSM-7",), "rate limited", retry_after_seconds=119.2
        ),
        retry_after=120,
    ),
    "Jira unavailable past the maximum wait times out": Row(
        cr("Authorize"),
        Decision.FAIL,
        Reason.GATE_TIMEOUT,
        problem=Reason.JIRA_UNAVAILABLE,
        opened_at=T0 - timedelta(hours=25),
    ),
    "Jira 401 fails": Row(
        cr("Authorize"),
        Decision.FAIL,
        Reason.JIRA_AUTH,
        problem=LookupProblem(Reason.JIRA_AUTH, detail="auth, HTTP 401"),
    ),
    "Jira refusing a create fails": Row(
        None,
        Decision.FAIL,
        Reason.JIRA_ERROR,
        problem=LookupProblem(Reason.JIRA_ERROR, detail="no request type 'Request a change'"),
        names=("Request a change",),
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=ROWS.keys())
def test_decision_table(row: Row) -> None:
    verdict = decide(
        POLICY,
        controlled=row.controlled,
        cr=row.cr,
        lookup_problem=row.problem,
        now=row.now,
        opened_at=row.opened_at,
    )
    assert (verdict.decision, verdict.reason) == (row.decision, row.reason), verdict.message
    assert verdict.retry_after_seconds == row.retry_after
    for name in row.names:
        assert name in verdict.message


def test_approval_revoked_between_polls() -> None:
    """The verdict follows the CR's current status: approved at one poll, back to Authorize (or
    declined) at the next."""
    approved = cr("Implementing")
    first = decide(POLICY, controlled=True, cr=approved, lookup_problem=None, now=T0, opened_at=T0)
    back = decide(
        POLICY,
        controlled=True,
        cr=replace(approved, status="Authorize"),
        lookup_problem=None,
        now=at(30),
        opened_at=T0,
    )
    declined = decide(
        POLICY,
        controlled=True,
        cr=replace(approved, status="Declined"),
        lookup_problem=None,
        now=at(60),
        opened_at=T0,
    )
    assert [first.decision, back.decision, declined.decision] == [
        Decision.PROCEED,
        Decision.WAIT,
        Decision.FAIL,
    ]
    assert back.reason is Reason.AWAITING_APPROVAL


def test_configured_lists_replace_the_defaults() -> None:
    policy = GatePolicy(proceed_statuses=("Approved",), wait_statuses=("Review",))
    approved = decide(policy, controlled=True, cr=cr("approved"), lookup_problem=None, now=T0, opened_at=T0)
    default_proceed = decide(
        policy, controlled=True, cr=cr("Implementing"), lookup_problem=None, now=T0, opened_at=T0
    )
    assert approved.decision is Decision.PROCEED
    assert default_proceed.reason is Reason.STATUS_NOT_ALLOWED


def test_date_only_values_in_utc_are_whole_utc_days() -> None:
    start = parse_jira_time("2024-05-01", UTC)
    end = parse_jira_time("2024-05-01", UTC, end_of_day=True)
    assert (start, end) == (
        datetime(2024, 5, 1, tzinfo=UTC),
        datetime(2024, 5, 1, 23, 59, 59, 999999, tzinfo=UTC),
    )


def test_controlled_without_cr_or_problem_is_a_caller_error() -> None:
    with pytest.raises(ValueError, match="needs a change request"):
        decide(POLICY, controlled=True, cr=None, lookup_problem=None, now=T0, opened_at=T0)


def test_naive_times_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(POLICY, controlled=False, cr=None, lookup_problem=None, now=datetime(2024, 5, 1), opened_at=T0)
