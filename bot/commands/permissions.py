"""Mattermost roles, always asked of Mattermost (never trusted from a request)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.commands.context import Caller

ROLE_USERS = "users"
ROLE_CHANNEL_ADMIN = "channel_admin"
ROLE_TEAM_ADMIN = "team_admin"
ROLE_SYSTEM_ADMIN = "system_admin"


def roles_of(member: Mapping[str, Any] | None) -> set[str]:
    return set(str(member.get("roles", "")).split()) if member else set()


async def has_admin_role(
    caller: Caller, channel: Mapping[str, Any], member: Mapping[str, Any] | None, role: str
) -> bool:
    """Whether the caller, a member of `channel` as `member` says, is its channel admin (when
    `role` is channel_admin) or an admin of its team (channel_admin or team_admin): higher roles
    include lower ones. System admins are the caller's own check."""
    if role == ROLE_CHANNEL_ADMIN and ROLE_CHANNEL_ADMIN in roles_of(member):
        return True
    if role not in (ROLE_CHANNEL_ADMIN, ROLE_TEAM_ADMIN):
        return False
    team_id = str(channel.get("team_id") or caller.team_id)
    if not team_id:
        return False
    return ROLE_TEAM_ADMIN in roles_of(await caller.deps.mattermost.get_team_member(team_id, caller.user_id))
