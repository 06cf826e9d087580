"""Posts of the fake Mattermost: creating (with pending-id deduplication), reading, editing,
ephemeral posts, files and reactions."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from bot.mattermost.models import is_valid_id, new_id
from tests.fakes.mattermost.common import (
    _LATENCY_SPENT,
    _USER,
    _invalid_body_param,
    _invalid_param,
    _invalid_url_param,
    _is_admin,
    _json_response,
    _MattermostError,
    _now_ms,
    _permission_error,
    _read_json,
)

MAX_MESSAGE_RUNES = 16383
MAX_PROPS_CHARS = 800000
_SINCE_LIMIT = 1000


class Posts:
    """Posts, the files attached to them and reactions, with their endpoints.

    State lives on `FakeMattermost` (server.py).
    """

    def add_post(
        self,
        user_id: str,
        channel_id: str,
        message: str,
        *,
        root_id: str = "",
        files: tuple[tuple[str, bytes, str], ...] | list[tuple[str, bytes, str]] = (),
    ) -> str:
        """A post written by the user (as if from their client), with `files` given as
        (name, content, MIME type) uploaded with it. Returns the post id."""
        post = self._save_post(
            self.users[user_id], self.channels[channel_id], {"message": message, "root_id": root_id}
        )
        infos = []
        for name, content, mime_type in files:
            file_id = new_id()
            info = {
                "id": file_id,
                "user_id": user_id,
                "post_id": post["id"],
                "channel_id": channel_id,
                "create_at": post["create_at"],
                "update_at": post["create_at"],
                "delete_at": 0,
                "name": name,
                "extension": name.rsplit(".", 1)[-1].lower() if "." in name else "",
                "size": len(content),
                "mime_type": mime_type,
                "width": 0,
                "height": 0,
                "has_preview_image": False,
            }
            self.files[file_id] = (info, content)
            infos.append(info)
        if infos:
            post["file_ids"] = [i["id"] for i in infos]
            post["metadata"] = {"files": infos}
        return str(post["id"])

    def user_posts(self, user: str, channel: str, message: str, root_id: str = "") -> dict[str, Any]:
        """`user` (id or username) writes `message` in `channel` (id), in the thread `root_id`,
        as from their own client: the post is saved and pushed to the websockets. Returns it."""
        user_id = user if user in self.users else self._user_id_by_name(user)
        return self._save_post(
            self.users[user_id], self.channels[channel], {"message": message, "root_id": root_id}
        )

    def delete_post(self, post_id: str) -> None:
        """Someone deletes the post (DELETE /posts/{id}): it is kept with `delete_at` set, is no
        longer served (404), and a reply to it is refused with 400
        `api.post.create_post.root_id.app_error`, as the server's CreatePost does (the web app
        reads that error as "the root post was deleted")."""
        self._posts_by_id[post_id]["delete_at"] = _now_ms()

    def posts_in(self, channel_id: str) -> list[dict[str, Any]]:
        return [p for p in self.posts if p["channel_id"] == channel_id]

    def get_post(self, post_id: str) -> dict[str, Any] | None:
        return self._posts_by_id.get(post_id)

    # A plain timeout argument keeps call sites short: `await fake.wait_for_posts(3, 2.0)`.
    async def wait_for_posts(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:  # noqa: ASYNC109
        """Wait until at least `n` posts exist; returns them. Fails the test on timeout."""
        deadline = time.monotonic() + timeout
        while len(self.posts) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = [p["message"][:60] for p in self.posts[-5:]]
                raise AssertionError(
                    f"expected {n} Mattermost posts within {timeout} s, got {len(self.posts)}: {got}"
                )
            event = self._event()
            event.clear()
            try:
                await asyncio.wait_for(event.wait(), remaining)
            except TimeoutError:
                continue
        return list(self.posts)

    async def _create_post(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "post")
        if not isinstance(body, dict):
            raise _invalid_body_param("post")
        for key in ("channel_id", "message", "root_id", "pending_post_id", "type"):
            if key in body and not isinstance(body[key], str):
                raise _invalid_body_param("post")
        if "props" in body and not isinstance(body["props"], dict | None):
            raise _invalid_body_param("post")
        user = request[_USER]
        channel = self.channels.get(body.get("channel_id", ""))
        if not _is_admin(user) and (channel is None or not self._can_post(user, channel)):
            raise _permission_error()
        if channel is None:
            raise _invalid_param("post.channel_id")
        if str(body.get("type", "")).startswith("system_"):
            raise _invalid_param("post.type")
        if channel["delete_at"]:
            raise _MattermostError(
                400, "api.post.create_post.can_not_post_to_deleted.error", "Can not post to deleted channel."
            )

        pending_id = body.get("pending_post_id", "")
        if pending_id:
            now = time.monotonic()
            seen = self._pending_post_ids.get(pending_id)
            if seen is not None and seen[1] > now:
                if not seen[0]:
                    raise _MattermostError(
                        500,
                        "api.post.deduplicate_create_post.pending",
                        "Post rejected by server. Please try again.",
                    )
                return _json_response(self._posts_by_id[seen[0]], status=201)
            self._pending_post_ids[pending_id] = ("", now + self.pending_post_ttl)

        request[_LATENCY_SPENT] = True
        # Shielded: like the real server, a post being saved is saved even if the client hangs up.
        task = asyncio.ensure_future(self._finish_create(request, user, channel, body, pending_id))
        self._saving.add(task)
        task.add_done_callback(self._saved)
        post = await asyncio.shield(task)
        # The incoming post echoes its pending id; the stored one (returned on a repeat) has none.
        return _json_response({**post, "pending_post_id": pending_id}, status=201)

    def _saved(self, task: asyncio.Future[dict[str, Any]]) -> None:
        self._saving.discard(task)
        if not task.cancelled():
            task.exception()  # retrieved: nobody awaits it when the client hung up

    async def _finish_create(
        self,
        request: web.Request,
        user: dict[str, Any],
        channel: dict[str, Any],
        body: dict[str, Any],
        pending_id: str,
    ) -> dict[str, Any]:
        try:
            await self._sleep_latency(request)
            post = self._save_post(user, channel, body)
        except BaseException:
            # A failed create forgets the pending id, so the client's retry is a fresh attempt.
            if pending_id:
                self._pending_post_ids.pop(pending_id, None)
            raise
        if pending_id:
            self._pending_post_ids[pending_id] = (post["id"], time.monotonic() + self.pending_post_ttl)
        return post

    async def _create_ephemeral_post(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "body")
        if not isinstance(body, dict):
            raise _invalid_body_param("body")
        if not body.get("user_id"):
            raise _invalid_param("user_id")
        if not isinstance(body.get("post"), dict):
            raise _invalid_param("post")
        if not _is_admin(request[_USER]):
            raise _permission_error()
        incoming = body["post"]
        now = _now_ms()
        post = {
            "id": new_id(),
            "create_at": now,
            "update_at": now,
            "edit_at": 0,
            "delete_at": 0,
            "user_id": request[_USER]["id"],
            "channel_id": incoming.get("channel_id", ""),
            "root_id": incoming.get("root_id", ""),
            "message": incoming.get("message", ""),
            "type": "system_ephemeral",
            "props": incoming.get("props") or {},
        }
        self.ephemeral_posts.append({"user_id": body["user_id"], "post": post})
        return _json_response(post, status=201)

    async def _get_post(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        if not is_valid_id(post_id):
            raise _invalid_url_param("post_id")
        post = self._posts_by_id.get(post_id)
        if post is None or post["delete_at"]:
            raise _MattermostError(404, "app.post.get.app_error", "Unable to get the post.")
        if not self._can_access(request[_USER], self.channels[post["channel_id"]]):
            raise _permission_error()
        return _json_response(post)

    async def _get_post_file_infos(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        if not is_valid_id(post_id):
            raise _invalid_url_param("post_id")
        post = self._posts_by_id.get(post_id)
        if post is None or not self._can_access(request[_USER], self.channels[post["channel_id"]]):
            raise _permission_error()
        return _json_response([self.files[f][0] for f in post.get("file_ids") or ()])

    def _readable_file(self, request: web.Request) -> tuple[dict[str, Any], bytes]:
        file_id = request.match_info["file_id"]
        if not is_valid_id(file_id):
            raise _invalid_url_param("file_id")
        found = self.files.get(file_id)
        if found is None:
            raise _MattermostError(404, "app.file_info.get.app_error", "Unable to get the file info.")
        if not self._can_access(request[_USER], self.channels[found[0]["channel_id"]]):
            raise _permission_error()
        return found

    async def _get_file_info(self, request: web.Request) -> web.Response:
        return _json_response(self._readable_file(request)[0])

    async def _get_file(self, request: web.Request) -> web.Response:
        info, content = self._readable_file(request)
        return web.Response(
            body=content,
            headers={
                "Content-Type": info["mime_type"] or "application/octet-stream",
                "Content-Disposition": f'attachment;filename="{info["name"]}"',
            },
        )

    async def _update_post(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        body = await _read_json(request, "post")
        if not isinstance(body, dict):
            raise _invalid_body_param("post")
        if body.get("id") != post_id:
            raise _invalid_param("id")
        post = self._editable_post(request[_USER], post_id)
        # A full update replaces message and props: what the body leaves out is cleared.
        return _json_response(self._edit(post, str(body.get("message", "")), body.get("props") or {}))

    async def _patch_post(self, request: web.Request) -> web.Response:
        post_id = request.match_info["post_id"]
        body = await _read_json(request, "post")
        if not isinstance(body, dict):
            raise _invalid_body_param("post")
        post = self._editable_post(request[_USER], post_id)
        if "is_pinned" in body:
            post["is_pinned"] = bool(body["is_pinned"])
        message = str(body["message"]) if body.get("message") is not None else post["message"]
        props = body["props"] if isinstance(body.get("props"), dict) else post["props"]
        return _json_response(self._edit(post, message, props))

    async def _get_channel_posts(self, request: web.Request) -> web.Response:
        channel_id = request.match_info["channel_id"]
        if not is_valid_id(channel_id):
            raise _invalid_url_param("channel_id")
        channel = self.channels.get(channel_id)
        if channel is None or not self._can_access(request[_USER], channel):
            raise _permission_error()
        try:
            since = int(request.query.get("since", "0") or 0)
            per_page = min(int(request.query.get("per_page", "60") or 60), 200)
        except ValueError:
            raise _invalid_url_param("since") from None
        in_channel = [p for p in self.posts if p["channel_id"] == channel_id]
        if since > 0:
            # The server's GetPostsSince: by update time, deleted posts included, at most 1000.
            chosen = [p for p in in_channel if p["update_at"] > since][:_SINCE_LIMIT]
        else:
            chosen = [p for p in in_channel if not p["delete_at"]][-per_page:]
        chosen.sort(key=lambda p: p["create_at"], reverse=True)
        return _json_response(
            {
                "order": [p["id"] for p in chosen],
                "posts": {p["id"]: p for p in chosen},
                "next_post_id": "",
                "prev_post_id": "",
                "has_next": False,
            }
        )

    async def _add_reaction(self, request: web.Request) -> web.Response:
        body = await _read_json(request, "reaction")
        if not isinstance(body, dict):
            raise _invalid_body_param("reaction")
        user = request[_USER]
        if body.get("user_id") != user["id"]:
            raise _permission_error()  # only the session's own reactions
        post = self._posts_by_id.get(str(body.get("post_id", "")))
        if post is None or post["delete_at"] or not self._can_access(user, self.channels[post["channel_id"]]):
            raise _permission_error()
        emoji = str(body.get("emoji_name") or "")
        if not emoji or len(emoji) > 64:
            raise _invalid_body_param("reaction")
        reaction = {"user_id": user["id"], "post_id": post["id"], "emoji_name": emoji, "create_at": _now_ms()}
        if not any(
            r["user_id"] == user["id"] and r["post_id"] == post["id"] and r["emoji_name"] == emoji
            for r in self.reactions
        ):
            self.reactions.append(reaction)
        return _json_response(reaction, status=201)

    def _event(self) -> asyncio.Event:
        if self._post_event is None:
            self._post_event = asyncio.Event()
        return self._post_event

    def _editable_post(self, user: dict[str, Any], post_id: str) -> dict[str, Any]:
        post = self._posts_by_id.get(post_id)
        if post is None or post["delete_at"]:
            raise _permission_error()
        if post["user_id"] != user["id"] and not _is_admin(user):
            raise _permission_error()
        return post

    def _save_post(
        self, user: dict[str, Any], channel: dict[str, Any], body: dict[str, Any]
    ) -> dict[str, Any]:
        root_id = body.get("root_id", "")
        root: dict[str, Any] | None = None
        if root_id:
            root = self._posts_by_id.get(root_id)
            if root is None or root["root_id"] or root["delete_at"]:
                raise _MattermostError(
                    400, "api.post.create_post.root_id.app_error", "Invalid RootId parameter."
                )
            if root["channel_id"] != channel["id"]:
                raise _MattermostError(
                    400,
                    "api.post.create_post.channel_root_id.app_error",
                    "Invalid ChannelId for RootId parameter.",
                )
        message = body.get("message", "")
        if len(message) > MAX_MESSAGE_RUNES:
            raise _MattermostError(400, "model.post.is_valid.msg.app_error", "Invalid Message.")
        props = dict(body.get("props") or {})
        if len(json.dumps(props)) > MAX_PROPS_CHARS:
            raise _MattermostError(400, "model.post.is_valid.props.app_error", "Invalid Props.")
        if user["is_bot"]:
            props["from_bot"] = "true"
        # Strictly increasing, so ordering by create_at matches creation order.
        create_at = max(_now_ms(), self._last_create_at + 1)
        self._last_create_at = create_at
        post = {
            "id": new_id(),
            "create_at": create_at,
            "update_at": create_at,
            "edit_at": 0,
            "delete_at": 0,
            "is_pinned": False,
            "user_id": user["id"],
            "channel_id": channel["id"],
            "root_id": root_id,
            "original_id": "",
            "message": message,
            "type": body.get("type", ""),
            "props": props,
            "hashtags": "",
            "pending_post_id": "",
            "reply_count": 0,
            "last_reply_at": 0,
            "participants": None,
            "metadata": {},
        }
        self.posts.append(post)
        self._posts_by_id[post["id"]] = post
        channel["last_post_at"] = create_at
        channel["total_msg_count"] += 1
        if root is not None:
            root["reply_count"] += 1
            root["last_reply_at"] = create_at
        self._broadcast_post(user, channel, post)
        self._event().set()
        return post

    def _edit(self, post: dict[str, Any], message: str, props: dict[str, Any]) -> dict[str, Any]:
        now = _now_ms()
        if message != post["message"]:
            post["edit_at"] = now
        post["message"] = message
        post["props"] = dict(props)
        post["update_at"] = now
        return post
