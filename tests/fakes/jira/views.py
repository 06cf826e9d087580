"""How the fake Jira shows its records (users, statuses, projects, issues with field
selection) and who may see or change what."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.jira.common import (
    _GATEWAY,
    _USER,
    ISSUE_NOT_FOUND,
    PRIORITIES,
    STATUS_CATEGORIES,
    FakeProject,
    FakeUser,
    _adf,
    _JiraHTTPError,
)


class Views:
    """Representations and permission checks the handlers share.

    State lives on `FakeJira` (server.py).
    """

    def _base(self, request: web.Request) -> str:
        origin = f"{request.scheme}://{request.host}"
        return f"{origin}/ex/jira/{self.cloud_id}" if request[_GATEWAY] else origin

    def _user(self, user_id: str) -> FakeUser:
        try:
            return self.users[user_id]
        except KeyError:
            raise ValueError(f"no user {user_id!r}") from None

    def _user_json(self, request: web.Request, user: FakeUser | None) -> dict[str, Any] | None:
        if user is None:
            return None
        base = self._base(request)
        data: dict[str, Any]
        if self.is_cloud:
            data = {"self": f"{base}/rest/api/2/user?accountId={user.id}", "accountId": user.id}
            data["accountType"] = "atlassian"
        else:
            data = {"self": f"{base}/rest/api/2/user?username={user.id}", "key": user.key, "name": user.id}
        data.update(
            emailAddress=user.email,
            displayName=user.display_name,
            active=user.active,
            timeZone="Europe/Berlin",
        )
        return data

    def _status_json(self, request: web.Request, name: str) -> dict[str, Any]:
        category = self.status_categories.get(name, "indeterminate")
        status_id = self.status_ids.setdefault(name, self._next_id())
        return {
            "self": f"{self._base(request)}/rest/api/2/status/{status_id}",
            "id": status_id,
            "name": name,
            "statusCategory": {"key": category, "name": STATUS_CATEGORIES[category]},
        }

    def _issue_type_json(self, request: web.Request, name: str) -> dict[str, Any]:
        type_id = self.issue_type_ids[name]
        return {
            "self": f"{self._base(request)}/rest/api/2/issuetype/{type_id}",
            "id": type_id,
            "name": name,
            "subtask": name == "Sub-task",
        }

    def _project_json(self, request: web.Request, project: FakeProject) -> dict[str, Any]:
        return {
            "self": f"{self._base(request)}/rest/api/2/project/{project.id}",
            "id": project.id,
            "key": project.key,
            "name": project.name,
            "projectTypeKey": "software",
        }

    def _issue_fields(
        self, request: web.Request, issue: dict[str, Any], *, adf: bool = False
    ) -> dict[str, Any]:
        base = self._base(request)
        priority = issue["priority"]
        security = issue["security"]
        fields: dict[str, Any] = {
            "summary": issue["summary"],
            "description": (_adf(issue["description"]) if adf else issue["description"]) or None,
            "status": self._status_json(request, issue["status"]),
            "issuetype": self._issue_type_json(request, issue["issuetype"]),
            "priority": {
                "self": f"{base}/rest/api/2/priority/{PRIORITIES[priority]}",
                "id": PRIORITIES[priority],
                "name": priority,
            }
            if priority
            else None,
            "assignee": self._user_json(request, self.users.get(issue["assignee"] or "")),
            "reporter": self._user_json(request, self.users.get(issue["reporter"] or "")),
            "project": self._project_json(request, self.projects[issue["project"]]),
            "labels": list(issue["labels"]),
            "created": issue["created"],
            "updated": issue["updated"],
            **issue["custom"],
        }
        if security:
            level_id = self.security_levels[security][0]
            fields["security"] = {
                "self": f"{base}/rest/api/2/securitylevel/{level_id}",
                "id": level_id,
                "name": security,
                "description": "",
            }
        return fields

    def _issue_json(
        self, request: web.Request, issue: dict[str, Any], wanted: list[str] | None, *, adf: bool = False
    ) -> dict[str, Any]:
        data: dict[str, Any] = {
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue["id"],
            "self": f"{self._base(request)}/rest/api/2/issue/{issue['id']}",
            "key": issue["key"],
        }
        fields = self._issue_fields(request, issue, adf=adf)
        if wanted is not None and not {"*all", "*navigable"} & set(wanted):
            fields = {k: v for k, v in fields.items() if k in wanted}
        if wanted is not None:  # "-comment": every field asked for except comment
            fields = {k: v for k, v in fields.items() if f"-{k}" not in wanted}
        data["fields"] = fields
        return data

    # -- permissions --------------------------------------------------------------------------------

    @staticmethod
    def _current(request: web.Request) -> FakeUser:
        user = request[_USER]
        if user is None:
            raise _JiraHTTPError(401, ["You are not authenticated. Authentication required."])
        return user  # type: ignore[no-any-return]

    def _can_browse(self, user: FakeUser, project: FakeProject) -> bool:
        return project.browse is None or user.id in project.browse

    def _can_edit(self, user: FakeUser, project: FakeProject) -> bool:
        return self._can_browse(user, project) and (project.editors is None or user.id in project.editors)

    def _can_see(self, user: FakeUser, issue: dict[str, Any]) -> bool:
        if not self._can_browse(user, self.projects[issue["project"]]):
            return False
        level = issue["security"]
        return level is None or user.id in self.security_levels.get(level, ("", set()))[1]

    def _visible_issue(self, request: web.Request) -> dict[str, Any]:
        user = self._current(request)
        key = request.match_info["key"]
        issue = self.issues.get(key.upper()) or next(
            (i for i in self.issues.values() if i["id"] == key), None
        )
        if issue is None or not self._can_see(user, issue):
            raise _JiraHTTPError(404, [ISSUE_NOT_FOUND])
        return issue

    def _visible_project(self, request: web.Request, key_or_id: str) -> FakeProject:
        user = self._current(request)
        project = self.projects.get(key_or_id.upper()) or next(
            (p for p in self.projects.values() if p.id == key_or_id), None
        )
        if project is None or not self._can_browse(user, project):
            raise _JiraHTTPError(404, [f"No project could be found with key '{key_or_id}'."])
        return project
