"""Why an issue does or does not reach a subscription, filter by filter (`/jira subscribe test`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from bot.jira.events import EVENT_UPDATED_ANY, EVENT_UPDATED_STATUS, IssueEvent
from bot.routing.jql import JqlError
from bot.routing.matcher import compile_subscription_jql, subscription_matches
from bot.routing.model import Subscription


@dataclass(frozen=True, slots=True)
class Explanation:
    matched: bool  # the issue passes every filter but the event kind
    lines: tuple[str, ...]  # ✔/✖ per filter, with the issue's value
    kinds: tuple[str, ...]  # the subscription's event kinds that would post for this issue


def _mark(ok: bool) -> str:
    return "✔" if ok else "✖"


def explain(sub: Subscription, event: IssueEvent, now: datetime) -> Explanation:
    f = sub.filters
    issue = event.issue
    lines: list[str] = []
    ok = True
    project = issue.project.name or issue.key.rpartition("-")[0]
    if f.projects:
        hit = project.upper() in f.projects
        ok &= hit
        lines.append(f"{_mark(hit)} projects {', '.join(sorted(f.projects))} (issue: {project})")
    if f.issue_types:
        folded = {t.casefold() for t in f.issue_types}
        t = issue.issue_type
        hit = t.id in f.issue_types or t.name.casefold() in folded
        ok &= hit
        lines.append(f"{_mark(hit)} issue types {', '.join(sorted(f.issue_types))} (issue: {t.name})")
    if f.fields:
        probe = sub.model_copy(
            update={
                "filters": f.model_copy(
                    update={
                        "jql": None,
                        "projects": frozenset({project.upper()}),
                        "issue_types": frozenset(),
                        "events": frozenset({EVENT_UPDATED_ANY}),
                    }
                )
            }
        )
        hit = subscription_matches(probe, replace(event, kinds=frozenset({EVENT_UPDATED_STATUS})), now)
        ok &= hit
        lines.append(f"{_mark(hit)} field filters (and the security level rule)")
    try:
        jql = compile_subscription_jql(f.jql)
    except JqlError as e:
        jql = None
        ok = False
        lines.append(f"✖ JQL cannot be evaluated: {e}")
    if jql is not None:
        for result in jql.explain(event, now):
            lines.append(result.line())
        hit = jql.matches(event, now)
        ok &= hit
        lines.append(f"{_mark(hit)} JQL as a whole")
    kinds = []
    for kind in sorted(f.events):
        probe_kind = EVENT_UPDATED_STATUS if kind == EVENT_UPDATED_ANY else kind
        if subscription_matches(sub, replace(event, kinds=frozenset({probe_kind})), now):
            kinds.append(kind)
    return Explanation(ok and bool(kinds), tuple(lines), tuple(kinds))
