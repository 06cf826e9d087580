"""Why an issue does or does not reach a subscription, filter by filter (`/jira subscribe test`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from bot.jira.events import EVENT_UPDATED_ANY, EVENT_UPDATED_STATUS, IssueEvent
from bot.routing.jql import JiraNames, JqlError
from bot.routing.matcher import compile_subscription_jql, subscription_matches
from bot.routing.model import JQL_CHECK_JIRA, Subscription


@dataclass(frozen=True, slots=True)
class Explanation:
    matched: bool  # the issue passes every filter but the event kind
    lines: tuple[str, ...]  # ✔/✖ per filter, with the issue's value
    kinds: tuple[str, ...]  # the subscription's event kinds that would post for this issue


def _mark(ok: bool) -> str:
    return "✔" if ok else "✖"


def explain(
    sub: Subscription,
    event: IssueEvent,
    now: datetime,
    *,
    names: JiraNames | None = None,
    jira: bool | None = None,
) -> Explanation:
    """`names`: what was learnt of the instance (custom field names, priority order); `jira`:
    Jira's answer for the JQL when it has clauses Jira checks (None: Jira was not asked)."""
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
        jql = compile_subscription_jql(f.jql, jira_check=f.jql_check == JQL_CHECK_JIRA, names=names)
    except JqlError as e:
        jql = None
        ok = False
        lines.append(f"✖ JQL cannot be evaluated: {e}")
    if jql is not None:
        for result in jql.explain(event, now):
            lines.append(result.line(jira))
        verdict = jql.decide(event, now)
        if verdict is None and jira is None:
            ok = False
            lines.append("? JQL as a whole: Jira decides (it could not be asked now)")
        else:
            hit = bool(jira) if verdict is None else verdict
            ok &= hit
            by = " (answered by Jira)" if verdict is None else ""
            lines.append(f"{_mark(hit)} JQL as a whole{by}")
    kinds = []
    for kind in sorted(f.events):
        probe_kind = EVENT_UPDATED_STATUS if kind == EVENT_UPDATED_ANY else kind
        if subscription_matches(
            # Unasked, Jira is assumed to say yes: the kinds that would post if it does.
            sub,
            replace(event, kinds=frozenset({probe_kind})),
            now,
            names=names,
            jira=True if jira is None else jira,
        ):
            kinds.append(kind)
    return Explanation(ok and bool(kinds), tuple(lines), tuple(kinds))
