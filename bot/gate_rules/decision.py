"""The gate's decision: proceed, wait or fail, from what is known of the change request.

Pure: no I/O and no clock; `now` and the gate's opening time are passed in, so every rule is a row
of a table test. The service gathers the inputs (which CR, read from Jira or not) and stores the
result.

Rules, in order:
1. A deployment that is not change controlled proceeds at once.
2. A lookup problem decides on its own: Jira unavailable or rate limited waits; the service
   account refused (401/403), a supplied CR not found, two exact matches, or any other refusal
   fails; a CR still being looked up or created waits.
3. A status in the proceed list is checked against the change window (inclusive at both ends):
   before the planned start it waits, after the planned end it fails (`window_closed`).
4. A status in the wait list waits, unless the planned end already passed (`not_approved_in_time`).
5. A supplied CR in a closed status fails with `cr_closed`; any other status fails.
6. A wait that would go on beyond the gate's maximum wait fails with `gate_timeout` instead. Only
   waits time out: a CR that is approved and inside its window still proceeds.

Planned dates arrive in UTC. A date-only planned date is turned into an instant by the Jira client
(`bot.gate.jsm.parse_jira_time`) in the configured time zone: a start at the first instant of that
day, an end at the last one (the whole day is inside the window).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from bot.gate_rules.model import ChangeRequest, CrSource, Decision, GatePolicy, LookupProblem, Reason, Verdict

# Lookup problems that clear by themselves: ask again later.
_TRANSIENT = frozenset({Reason.JIRA_UNAVAILABLE, Reason.CR_PENDING})
# While the CR is being created by a concurrent call, ask again soon rather than a whole interval.
CR_PENDING_RETRY_SECONDS = 2


def decide(
    policy: GatePolicy,
    *,
    controlled: bool,
    cr: ChangeRequest | None,
    lookup_problem: Reason | LookupProblem | None,
    now: datetime,
    opened_at: datetime,
) -> Verdict:
    """The verdict for a gate opened at `opened_at`, evaluated at `now`.

    `cr` is the change request as just read (or, with a transient `lookup_problem`, as last known,
    so that the message can still name it). Raises ValueError for a controlled deployment with
    neither a CR nor a problem: the caller must say why there is no CR.
    """
    _require_aware(now, "now")
    _require_aware(opened_at, "opened_at")
    if not controlled:
        return Verdict(
            Decision.PROCEED,
            Reason.NOT_CHANGE_CONTROLLED,
            "This deployment is not change controlled: it may proceed.",
        )
    problem = LookupProblem(lookup_problem) if isinstance(lookup_problem, Reason) else lookup_problem
    if problem is not None:
        verdict = _problem_verdict(policy, problem, cr)
    elif cr is None:
        raise ValueError("a change-controlled gate needs a change request or a lookup problem")
    else:
        verdict = _cr_verdict(policy, cr, now)
    if verdict.decision is Decision.WAIT:
        return _within_max_wait(policy, verdict, cr, problem, now, opened_at)
    return verdict


def _require_aware(moment: datetime, name: str) -> None:
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware, got {moment!r}")


def _problem_verdict(policy: GatePolicy, problem: LookupProblem, cr: ChangeRequest | None) -> Verdict:
    keys = problem.cr_keys or ((cr.key,) if cr is not None else ())
    subject = _join(keys) if keys else "the change request"
    detail = f" ({problem.detail})" if problem.detail else ""
    reason = problem.reason
    if reason is Reason.JIRA_UNAVAILABLE:
        asked = problem.retry_after_seconds or 0
        retry = max(policy.poll_interval_seconds, math.ceil(asked))
        return Verdict(
            Decision.WAIT,
            reason,
            f"Jira could not be reached while checking {subject}{detail}; the gate keeps waiting.",
            retry,
        )
    if reason is Reason.CR_PENDING:
        return Verdict(
            Decision.WAIT,
            reason,
            "The change request for this deployment is being looked up or created.",
            min(CR_PENDING_RETRY_SECONDS, policy.poll_interval_seconds),
        )
    if reason is Reason.JIRA_AUTH:
        message = (
            f"Jira refused the service account while checking {subject}{detail}: "
            "check its token and permissions."
        )
    elif reason is Reason.CR_NOT_FOUND:
        message = f"Change request {subject} was not found, or the service account cannot see it."
    elif reason is Reason.AMBIGUOUS_CR:
        message = (
            f"Several open change requests match this deployment exactly: {subject}. "
            "Close all but one, or name the change request to use."
        )
    else:
        message = f"Jira refused a request while looking up {subject}{detail}."
    return Verdict(Decision.FAIL, reason, message)


def _cr_verdict(policy: GatePolicy, cr: ChangeRequest, now: datetime) -> Verdict:
    start, end = cr.planned_start, cr.planned_end
    if policy.is_proceed(cr.status):
        if start is not None and now < start:
            until_start = math.ceil((start - now).total_seconds())
            return Verdict(
                Decision.WAIT,
                Reason.WINDOW_NOT_OPEN,
                f"{cr.key} is approved ({cr.status}) but its change window opens at {_when(start)}.",
                max(1, min(until_start, policy.poll_interval_seconds)),
            )
        if end is not None and now > end:
            return Verdict(
                Decision.FAIL,
                Reason.WINDOW_CLOSED,
                f"{cr.key} is approved ({cr.status}) but its change window closed at {_when(end)}.",
            )
        return Verdict(
            Decision.PROCEED,
            Reason.APPROVED,
            f"{cr.key} is approved ({cr.status}){_window_text(start, end)}: the deployment may proceed.",
        )
    if policy.is_wait(cr.status):
        if end is not None and now > end:
            return Verdict(
                Decision.FAIL,
                Reason.NOT_APPROVED_IN_TIME,
                f"{cr.key} was still {cr.status} when its change window closed at {_when(end)}.",
            )
        return Verdict(
            Decision.WAIT,
            Reason.AWAITING_APPROVAL,
            f"{cr.key} is {cr.status}: waiting for approval.",
            policy.poll_interval_seconds,
        )
    if cr.source is CrSource.SUPPLIED and policy.is_closed(cr.status):
        return Verdict(
            Decision.FAIL,
            Reason.CR_CLOSED,
            f"{cr.key} is {cr.status}: a closed change request cannot authorise a deployment.",
        )
    status = cr.status or "without a status"
    return Verdict(
        Decision.FAIL,
        Reason.STATUS_NOT_ALLOWED,
        f"{cr.key} is {status}, which does not allow the deployment.",
    )


def _within_max_wait(
    policy: GatePolicy,
    verdict: Verdict,
    cr: ChangeRequest | None,
    problem: LookupProblem | None,
    now: datetime,
    opened_at: datetime,
) -> Verdict:
    deadline = opened_at + timedelta(seconds=policy.max_wait_seconds)
    if now >= deadline:
        keys = (problem.cr_keys if problem is not None else ()) or ((cr.key,) if cr is not None else ())
        on = f" for {_join(keys)}" if keys else ""
        return Verdict(
            Decision.FAIL,
            Reason.GATE_TIMEOUT,
            f"Gave up after waiting {_duration(policy.max_wait_seconds)}{on}. Last check: {verdict.message}",
        )
    if verdict.retry_after_seconds is not None:
        # Ask again no later than the deadline, where the answer becomes final.
        left = max(1, math.ceil((deadline - now).total_seconds()))
        return Verdict(
            verdict.decision, verdict.reason, verdict.message, min(verdict.retry_after_seconds, left)
        )
    return verdict


def _window_text(start: datetime | None, end: datetime | None) -> str:
    if start is not None and end is not None:
        return f" and inside its change window ({_when(start)} to {_when(end)})"
    if start is not None:
        return f" and its change window opened at {_when(start)}"
    if end is not None:
        return f" and its change window lasts until {_when(end)}"
    return ""


def _when(moment: datetime) -> str:
    """A stable UTC timestamp for messages (no relative times: a message changes only with facts)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _duration(seconds: int) -> str:
    if seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def _join(keys: tuple[str, ...]) -> str:
    if len(keys) <= 1:
        return "".join(keys)
    return ", ".join(keys[:-1]) + " and " + keys[-1]
