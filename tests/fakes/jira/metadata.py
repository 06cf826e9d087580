"""Projects and create metadata: /project, the per-project createmeta endpoints (Cloud, 9+) and
the old /issue/createmeta (8.x)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.fakes.jira.common import (
    PRIORITIES,
    FakeProject,
    _JiraHTTPError,
    _json,
)


class ProjectsAndCreateMeta:
    """GET /project[/{key}], /issue/createmeta[/{project}/issuetypes[/{id}]].

    State lives on `FakeJira` (server.py).
    """

    async def _fields(self, request: web.Request) -> web.Response:
        """GET /rest/api/2/field: system fields and the custom fields (`custom_fields`), in Jira's
        shape (`clauseNames` are the names JQL accepts)."""
        self._current(request)
        system = [("summary", "Summary", "string"), ("priority", "Priority", "priority")]
        system += [("labels", "Labels", "array"), ("status", "Status", "status")]
        found: list[dict[str, Any]] = [
            {
                "id": fid,
                "key": fid,
                "name": name,
                "custom": False,
                "orderable": True,
                "navigable": True,
                "searchable": True,
                "clauseNames": [fid],
                "schema": {"type": kind, "system": fid},
            }
            for fid, name, kind in system
        ]
        for fid, name in self.custom_fields.items():
            number = fid.removeprefix("customfield_")
            found.append(
                {
                    "id": fid,
                    "key": fid,
                    "name": name,
                    "untranslatedName": name,
                    "custom": True,
                    "orderable": True,
                    "navigable": True,
                    "searchable": True,
                    "clauseNames": [f"cf[{number}]", name],
                    "schema": {"type": "any", "custom": "com.example:field", "customId": int(number)},
                }
            )
        return _json(found)

    async def _priorities(self, request: web.Request) -> web.Response:
        """GET /rest/api/2/priority: the priorities from the highest to the lowest, as Jira
        lists them."""
        self._current(request)
        base = str(request.url.origin())
        return _json(
            [
                {
                    "self": f"{base}/rest/api/2/priority/{pid}",
                    "statusColor": "#cfcfcf",
                    "description": f"{name} priority.",
                    "iconUrl": f"{base}/images/icons/priorities/{name.lower()}.svg",
                    "name": name,
                    "id": pid,
                }
                for name, pid in self.priorities.items()
            ]
        )

    async def _projects(self, request: web.Request) -> web.Response:
        user = self._current(request)
        visible = [p for p in self.projects.values() if self._can_browse(user, p)]
        return _json([self._project_json(request, p) for p in visible])

    async def _project(self, request: web.Request) -> web.Response:
        project = self._visible_project(request, request.match_info["key"])
        data = self._project_json(request, project)
        data["issueTypes"] = [self._issue_type_json(request, t) for t in project.issue_types]
        return _json(data)

    def _default_create_fields(self, project: FakeProject, type_name: str) -> dict[str, dict[str, Any]]:
        def system(
            name: str, schema_type: str, system_name: str, required: bool = False, **extra: Any
        ) -> dict[str, Any]:
            return {
                "required": required,
                "schema": {"type": schema_type, "system": system_name, **extra.pop("schema", {})},
                "name": name,
                "hasDefaultValue": extra.pop("hasDefaultValue", False),
                "operations": ["set"],
                **extra,
            }

        return {
            "summary": system("Summary", "string", "summary", True),
            "issuetype": system(
                "Issue Type",
                "issuetype",
                "issuetype",
                True,
                allowedValues=[{"id": self.issue_type_ids[type_name], "name": type_name}],
            ),
            "project": system(
                "Project",
                "project",
                "project",
                True,
                allowedValues=[{"id": project.id, "key": project.key, "name": project.name}],
            ),
            "description": system("Description", "string", "description"),
            "priority": system(
                "Priority",
                "priority",
                "priority",
                hasDefaultValue=True,
                allowedValues=[{"id": i, "name": n} for n, i in PRIORITIES.items()],
            ),
            "labels": system("Labels", "array", "labels", schema={"items": "string"}),
            "assignee": system("Assignee", "user", "assignee"),
            "reporter": system("Reporter", "user", "reporter", True, hasDefaultValue=True),
        }

    def _creatable_project(self, request: web.Request, key_or_id: str) -> FakeProject:
        project = self._visible_project(request, key_or_id)
        if not self._can_edit(self._current(request), project):
            raise _JiraHTTPError(403, ["You do not have permission to create issues in this project."])
        return project

    @staticmethod
    def _page(items: list[Any], request: web.Request) -> tuple[list[Any], int, int]:
        start = int(request.query.get("startAt", "0"))
        size = int(request.query.get("maxResults", "50"))
        return items[start : start + size], start, size

    def _paged(self, items: list[Any], request: web.Request, cloud_key: str) -> web.Response:
        page, start, size = self._page(items, request)
        if self.is_cloud:
            return _json({"maxResults": size, "startAt": start, "total": len(items), cloud_key: page})
        last = start + len(page) >= len(items)
        return _json(
            {"maxResults": size, "startAt": start, "total": len(items), "isLast": last, "values": page}
        )

    def _no_such_resource(self, request: web.Request) -> web.Response:
        # What Jira 8's REST layer answers for a resource it does not have.
        return _json({"message": f"null for uri: {request.url}", "status-code": 404}, 404)

    async def _createmeta_issue_types(self, request: web.Request) -> web.Response:
        if self.legacy_createmeta:
            return self._no_such_resource(request)
        project = self._creatable_project(request, request.match_info["project"])
        types = []
        for name in project.issue_types:
            entry = self._issue_type_json(request, name)
            entry["description"] = ""
            types.append(entry)
        return self._paged(types, request, "issueTypes")

    async def _createmeta_fields(self, request: web.Request) -> web.Response:
        if self.legacy_createmeta:
            return self._no_such_resource(request)
        project = self._creatable_project(request, request.match_info["project"])
        fields = project.create_fields.get(request.match_info["type_id"])
        if fields is None:
            raise _JiraHTTPError(
                404, ["Issue type with given ID does not exist or is not available in the project."]
            )
        items = []
        for field_id, meta in fields.items():
            entry = {**meta, "fieldId": field_id}
            if self.is_cloud:
                entry["key"] = field_id
            items.append(entry)
        return self._paged(items, request, "fields")

    async def _legacy_createmeta(self, request: web.Request) -> web.Response:
        if not self.legacy_createmeta:
            # Removed in Jira 9 and on Cloud.
            return self._no_such_resource(request)
        user = self._current(request)
        keys = {k.upper() for k in request.query.get("projectKeys", "").split(",") if k}
        type_ids = {t for t in request.query.get("issuetypeIds", "").split(",") if t}
        expand_fields = "projects.issuetypes.fields" in request.query.get("expand", "")
        projects = []
        for project in self.projects.values():
            if (keys and project.key not in keys) or not self._can_edit(user, project):
                continue
            entry: dict[str, Any] = {**self._project_json(request, project), "issuetypes": []}
            for name in project.issue_types:
                type_entry = self._issue_type_json(request, name)
                if type_ids and type_entry["id"] not in type_ids:
                    continue
                if expand_fields:
                    type_entry["fields"] = project.create_fields.get(type_entry["id"], {})
                entry["issuetypes"].append(type_entry)
            projects.append(entry)
        return _json({"expand": "projects", "projects": projects})
