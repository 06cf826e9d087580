"""What JQL needs to know of one Jira instance that events do not carry: the names of its custom
fields and the order of its priorities (learnt from Jira by bot/pipeline/jira_names.py)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType


@dataclass(frozen=True, slots=True)
class JiraNames:
    # Custom field name -> field id ("Story Points" -> "customfield_10016"), as GET /rest/api/2/field
    # lists them; a name two fields share is left out (Jira's JQL refuses it too).
    custom_fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    # Priority names from the highest to the lowest, as GET /rest/api/2/priority lists them.
    priorities: tuple[str, ...] = ()

    @classmethod
    def of(cls, fields: Mapping[str, str], priorities: tuple[str, ...]) -> JiraNames:
        return cls(MappingProxyType(dict(fields)), priorities)


NO_NAMES = JiraNames()
