"""What the bot does with the messages people post in Mattermost.

`listener.ChatListener` reads them from Mattermost's websocket (catching up after a disconnection)
and hands each one, once, to the handler it is for: `replies` (a reply in the thread of a
notification DM becomes a Jira comment), `dm_commands` (commands without `/jira` in a DM with the
bot) or `previews` (issue keys in channels get a compact preview). This module holds only the
post as the handlers see it, so importing a handler stays light.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Channel types as Mattermost spells them.
DIRECT = "D"
GROUP = "G"
OPEN = "O"
PRIVATE = "P"


@dataclass(frozen=True, slots=True)
class ChatPost:
    """A post someone made, with the type of the channel it was made in."""

    id: str
    channel_id: str
    user_id: str
    message: str
    root_id: str = ""
    create_at: int = 0  # Unix milliseconds, Mattermost's clock
    type: str = ""  # empty for what people write; system and plugin posts have one
    channel_type: str = ""
    props: Mapping[str, Any] = field(default_factory=dict)
    deleted: bool = False

    @classmethod
    def from_api(cls, post: Mapping[str, Any], *, channel_type: str = "") -> ChatPost | None:
        """From a post as the REST API or a `posted` event has it; None when it has no id."""
        post_id = post.get("id")
        if not isinstance(post_id, str) or not post_id:
            return None
        props = post.get("props")
        return cls(
            id=post_id,
            channel_id=str(post.get("channel_id") or ""),
            user_id=str(post.get("user_id") or ""),
            message=str(post.get("message") or ""),
            root_id=str(post.get("root_id") or ""),
            create_at=_int(post.get("create_at")),
            type=str(post.get("type") or ""),
            channel_type=channel_type,
            props=props if isinstance(props, Mapping) else {},
            deleted=bool(_int(post.get("delete_at"))),
        )

    @property
    def automated(self) -> bool:
        """Made by a bot account, an incoming webhook or a plugin, not typed by a person."""
        return any(
            str(self.props.get(k, "")).lower() == "true" for k in ("from_bot", "from_webhook", "from_plugin")
        )

    @property
    def thread_id(self) -> str:
        """The root of the thread a reply to this post belongs in."""
        return self.root_id or self.id

    @property
    def is_direct(self) -> bool:
        return self.channel_type == DIRECT


def _int(value: Any) -> int:
    try:
        return int(value or 0)
    except (TypeError, ValueError):
        return 0
