"""Users and the server itself: /myself, /serverInfo, /user and assignable-user search."""

from __future__ import annotations

import re
from typing import Any

from aiohttp import web

from tests.fakes.jira.common import (
    ISSUE_NOT_FOUND,
    _JiraHTTPError,
    _json,
)


class UsersAndServer:
    """GET /myself, /serverInfo, /user, /user/assignable/search.

    State lives on `FakeJira` (server.py).
    """

    async def _myself(self, request: web.Request) -> web.Response:
        user = self._current(request)
        data = self._user_json(request, user) or {}
        if "groups" in request.query.get("expand", "").split(","):
            items = []
            for group in sorted(user.groups):
                item: dict[str, Any] = {
                    "name": group,
                    "self": f"{self._base(request)}/rest/api/2/group?groupname={group}",
                }
                if self.is_cloud:
                    item["groupId"] = f"group-{group}"
                items.append(item)
            data["groups"] = {"size": len(items), "items": items}
        return _json(data)

    async def _server_info(self, request: web.Request) -> web.Response:
        numbers = [int(part) if part.isdigit() else 0 for part in re.split(r"[.-]", self.version)[:3]]
        return _json(
            {
                "baseUrl": f"{request.scheme}://{request.host}",
                "version": self.version,
                "versionNumbers": numbers,
                "deploymentType": "Cloud" if self.is_cloud else "Server",
                "buildNumber": 100000,
                "serverTitle": "Jira",
            }
        )

    async def _get_user(self, request: web.Request) -> web.Response:
        """GET /rest/api/2/user: by `accountId` on Cloud (`username` refused, GDPR strict mode),
        by `username` (or `key`) on Server/DC; 404 when there is no such user."""
        self._current(request)
        query = request.query
        if self.is_cloud:
            if "username" in query or "key" in query:
                raise _JiraHTTPError(
                    400, ["The query parameter 'username' is not supported in GDPR strict mode."]
                )
            wanted = query.get("accountId", "")
            user = self.users.get(wanted)
            if user is None:
                raise _JiraHTTPError(
                    404, ["Specified user does not exist or you do not have required permissions"]
                )
        else:
            wanted = query.get("username") or ""
            by_key = query.get("key") or ""
            user = self.users.get(wanted) or next(
                (u for u in self.users.values() if by_key and u.key == by_key), None
            )
            if user is None:
                raise _JiraHTTPError(404, [f"The user named '{wanted or by_key}' does not exist"])
        return _json(self._user_json(request, user))

    async def _assignable(self, request: web.Request) -> web.Response:
        self._current(request)
        query = request.query
        if self.is_cloud and "username" in query:
            raise _JiraHTTPError(
                400, ["The query parameter 'username' is not supported in GDPR strict mode."]
            )
        if not self.is_cloud and "username" not in query:
            raise _JiraHTTPError(400, ["The username query parameter was not provided"])
        if "issueKey" in query:
            issue = self.issues.get(query["issueKey"].upper())
            if issue is None or not self._can_see(self._current(request), issue):
                raise _JiraHTTPError(404, [ISSUE_NOT_FOUND])
            project = self.projects[issue["project"]]
        elif "project" in query:
            project = self._visible_project(request, query["project"])
        else:
            raise _JiraHTTPError(400, ["Neither an issue key nor a project key was provided."])
        needle = (query.get("query") if self.is_cloud else query.get("username")) or ""
        needle = needle.casefold()
        max_results = int(query.get("maxResults", "50"))
        found = [
            u
            for u in self.users.values()
            if u.active
            and self._can_edit(u, project)
            and (not needle or any(needle in text.casefold() for text in (u.display_name, u.email, u.id)))
        ]
        return _json([self._user_json(request, u) for u in found[:max_results]])
