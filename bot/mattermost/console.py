"""PostSink that prints what would be posted, for trying the bot without a Mattermost server."""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Mapping
from typing import Any, TextIO

from bot.mattermost.models import OutgoingPost, encode_id, new_id

_RULE = "-" * 72


class ConsoleSink:
    """Writes each post in readable form to a text stream (stdout unless one is given)."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self._stream = stream
        # Synthetic channel id -> "team/channel", so printed posts name the channel they are for.
        self._channel_names: dict[str, str] = {}
        # Post id -> channel id, so an edit shows where the post was.
        self._post_channels: dict[str, str] = {}

    async def create_post(self, post: OutgoingPost) -> str:
        post_id = new_id()
        self._post_channels[post_id] = post.channel_id
        header = f"post {post_id} to {self._channel_label(post.channel_id)}"
        if post.root_id:
            header += f", reply to {post.root_id}"
        self._write(header, post.message, post.props)
        return post_id

    async def update_post(
        self, post_id: str, message: str | None = None, props: Mapping[str, Any] | None = None
    ) -> None:
        channel = self._post_channels.get(post_id)
        where = f" in {self._channel_label(channel)}" if channel else ""
        self._write(f"edit of post {post_id}{where}", message, props or {})

    async def resolve_channel(self, team: str, channel: str) -> str | None:
        team, channel = team.strip().lower(), channel.strip().lower()
        if not team or not channel:
            return None
        # Stable across runs, so stored subscriptions keep pointing at the same synthetic channel.
        digest = hashlib.sha256(f"{team}/{channel}".encode()).digest()
        channel_id = encode_id(digest[:16])
        self._channel_names[channel_id] = f"{team}/{channel}"
        return channel_id

    async def channel_exists(self, channel_id: str) -> bool:
        return bool(channel_id)

    async def ping(self) -> bool:
        return True

    async def close(self) -> None:
        self._out().flush()

    def _out(self) -> TextIO:
        # Looked up on each write so a replaced sys.stdout (tests, redirection) is honoured.
        return self._stream if self._stream is not None else sys.stdout

    def _channel_label(self, channel_id: str) -> str:
        name = self._channel_names.get(channel_id)
        return f"~{name} ({channel_id})" if name else f"channel {channel_id}"

    def _write(self, header: str, message: str | None, props: Mapping[str, Any]) -> None:
        lines = [_RULE, header, _RULE]
        if message:
            lines.extend(message.splitlines())
        attachments = props.get("attachments") if isinstance(props, Mapping) else None
        if isinstance(attachments, list | tuple):
            for attachment in attachments:
                if isinstance(attachment, Mapping):
                    lines.extend(_attachment_lines(attachment))
        other = sorted(k for k in props if k != "attachments")
        if other:
            lines.append("props: " + ", ".join(f"{k}={props[k]!r}" for k in other))
        out = self._out()
        out.write("\n".join(lines) + "\n")
        out.flush()


def _attachment_lines(attachment: Mapping[str, Any]) -> list[str]:
    """An attachment as indented text: pretext, author, title (link), text, fields, footer."""
    lines: list[str] = []
    if attachment.get("pretext"):
        lines.extend(str(attachment["pretext"]).splitlines())
    body: list[str] = []
    if attachment.get("author_name"):
        body.append(f"by {attachment['author_name']}")
    title = attachment.get("title")
    if title:
        link = attachment.get("title_link")
        body.append(f"{title} <{link}>" if link else str(title))
    if attachment.get("text"):
        body.extend(str(attachment["text"]).splitlines())
    fields = attachment.get("fields")
    if isinstance(fields, list | tuple):
        for field in fields:
            if isinstance(field, Mapping):
                name, value = field.get("title", ""), field.get("value", "")
                body.append(f"{name}: {value}" if name else str(value))
    if attachment.get("footer"):
        body.append(f"({attachment['footer']})")
    if not body and attachment.get("fallback"):
        body.append(str(attachment["fallback"]))
    lines.extend(f"  | {line}" for entry in body for line in entry.splitlines())
    return lines
