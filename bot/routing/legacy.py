"""Legacy per-channel webhooks: `/plugins/jira/webhook?secret=&team=&channel=&updated_*=1`.

Such a webhook posts every event of the Jira webhook it is attached to into one channel; the
`updated_*` query parameters choose which kinds, exactly as in the Mattermost Jira plugin. As
there, a parameter is on when it has any non-empty value (`updated_status=1`, but also `=0`), and
parameter names are case-sensitive.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bot.jira import events as ev
from bot.jira.events import IssueEvent

# Posted without any parameter: creation, resolution, reopening, deletion of an unresolved issue
# and assignment.
DEFAULT_KINDS: frozenset[str] = frozenset(
    {
        ev.EVENT_CREATED,
        ev.EVENT_UPDATED_REOPENED,
        ev.EVENT_UPDATED_RESOLVED,
        ev.EVENT_DELETED_UNRESOLVED,
        ev.EVENT_UPDATED_ASSIGNEE,
    }
)

PARAM_KINDS: Mapping[str, frozenset[str]] = {
    "updated_attachment": frozenset({ev.EVENT_UPDATED_ATTACHMENT}),
    "updated_description": frozenset({ev.EVENT_UPDATED_DESCRIPTION}),
    "updated_labels": frozenset({ev.EVENT_UPDATED_LABELS}),
    # The plugin's documented spelling is misspelt; existing Jira webhooks still use it.
    "updated_prioity": frozenset({ev.EVENT_UPDATED_PRIORITY}),
    "updated_priority": frozenset({ev.EVENT_UPDATED_PRIORITY}),
    "updated_rank": frozenset({ev.EVENT_UPDATED_RANK}),
    "updated_sprint": frozenset({ev.EVENT_UPDATED_SPRINT}),
    "updated_status": frozenset({ev.EVENT_UPDATED_STATUS}),
    "updated_summary": frozenset({ev.EVENT_UPDATED_SUMMARY}),
    "updated_comments": ev.COMMENT_KINDS,
}

# `updated_all` posts every kind, custom field changes included. (The plugin's list for it predates
# the affects-version, reporter, components and custom field kinds, which it therefore never posts
# on a legacy webhook; that is an omission, not a rule worth keeping.)
PARAM_ALL = "updated_all"


@dataclass(frozen=True, slots=True)
class LegacyOptions:
    """What one legacy webhook URL asks for."""

    kinds: frozenset[str] = DEFAULT_KINDS
    all_kinds: bool = False
    team: str = ""  # team name, from the `team` parameter
    channel: str = ""  # channel name, from the `channel` parameter

    @classmethod
    def from_query(cls, params: Mapping[str, str]) -> LegacyOptions:
        kinds = set(DEFAULT_KINDS)
        for param, added in PARAM_KINDS.items():
            if params.get(param):
                kinds |= added
        return cls(
            kinds=frozenset(kinds),
            all_kinds=bool(params.get(PARAM_ALL)),
            team=params.get("team", "") or "",
            channel=params.get("channel", "") or "",
        )


def legacy_matches(options: LegacyOptions, event: IssueEvent) -> bool:
    """Whether a legacy webhook with these options posts the event."""
    if options.all_kinds:
        return bool(event.kinds)
    return not options.kinds.isdisjoint(event.kinds)
