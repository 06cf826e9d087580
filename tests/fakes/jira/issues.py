"""Issues: reading them (fields, watchers), changing them (transitions, assignment, comments,
attachments) and creating them."""

from __future__ import annotations

from email import policy as email_policy
from email.parser import BytesParser
from typing import Any

from aiohttp import web

from tests.fakes.jira.common import (
    _BODY,
    PRIORITIES,
    FakeUser,
    _JiraHTTPError,
    _json,
    _now,
)


class Issues:
    """GET /issue/{key}[/watchers|/transitions], POST /issue, transitions, assignee, comment,
    attachments.

    State lives on `FakeJira` (server.py).
    """

    async def _get_issue(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        wanted = request.query.get("fields")
        return _json(self._issue_json(request, issue, wanted.split(",") if wanted else None))

    def _transitions_for(self, user: FakeUser, issue: dict[str, Any]) -> list[tuple[str, str, str]]:
        if not self._can_edit(user, self.projects[issue["project"]]):
            return []  # Jira lists only the transitions the user may make
        return self.workflow.get(issue["status"], [])

    async def _get_watchers(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        watchers = [self._user_json(request, self.users.get(w)) for w in issue.get("watchers", [])]
        return _json({"isWatching": False, "watchCount": len(watchers), "watchers": watchers})

    async def _get_transitions(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        items = []
        for transition_id, name, target in self._transitions_for(self._current(request), issue):
            items.append(
                {
                    "id": transition_id,
                    "name": name,
                    "to": self._status_json(request, target),
                    "hasScreen": False,
                    "isGlobal": False,
                    "isInitial": False,
                    "isConditional": False,
                }
            )
        return _json({"expand": "transitions", "transitions": items})

    async def _do_transition(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        wanted = str((body.get("transition") or {}).get("id", ""))
        for transition_id, _, target in self._transitions_for(self._current(request), issue):
            if transition_id == wanted:
                issue["status"] = target
                issue["updated"] = _now()
                return web.Response(status=204)
        raise _JiraHTTPError(400, [f"Transition id '{wanted}' is not valid for this issue."])

    def _find_user(self, ref: Any) -> FakeUser | None:
        """A user reference in a request body: {"accountId"} on Cloud, {"name"} on Server."""
        if not isinstance(ref, dict):
            return None
        ident = ref.get("accountId") if self.is_cloud else ref.get("name")
        return self.users.get(ident or "")

    async def _assign(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        project = self.projects[issue["project"]]
        if not self._can_edit(self._current(request), project):
            raise _JiraHTTPError(403, ["You do not have permission to assign issues."])
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        id_key = "accountId" if self.is_cloud else "name"
        if self.is_cloud and "name" in body:
            raise _JiraHTTPError(
                400, ["'accountId' must be the only user identifying query parameter in GDPR strict mode."]
            )
        if id_key not in body:
            raise _JiraHTTPError(400, [], {"assignee": f"Specify the assignee by '{id_key}'."})
        if body[id_key] in (None, "-1"):
            issue["assignee"] = None
        else:
            user = self._find_user(body)
            if user is None or not user.active or not self._can_edit(user, project):
                raise _JiraHTTPError(
                    400, [], {"assignee": f"User '{body[id_key]}' cannot be assigned issues."}
                )
            issue["assignee"] = user.id
        issue["updated"] = _now()
        return web.Response(status=204)

    async def _add_comment(self, request: web.Request) -> web.Response:
        issue = self._visible_issue(request)
        user = self._current(request)
        if not self._can_edit(user, self.projects[issue["project"]]):
            raise _JiraHTTPError(403, ["You do not have the permission to comment on this issue."])
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        text = body.get("body")
        if not isinstance(text, str) or not text.strip():
            raise _JiraHTTPError(400, [], {"comment": "Comment body can not be empty!"})
        comment_id = self._next_id()
        author = self._user_json(request, user)
        comment = {
            "self": f"{self._base(request)}/rest/api/2/issue/{issue['id']}/comment/{comment_id}",
            "id": comment_id,
            "author": author,
            "body": text,
            "updateAuthor": author,
            "created": _now(),
            "updated": _now(),
        }
        self.comments[issue["key"]].append(comment)
        return _json(comment, 201)

    async def _add_attachments(self, request: web.Request) -> web.Response:
        if request.headers.get("X-Atlassian-Token", "").lower() != "no-check":
            raise _JiraHTTPError(403, ["XSRF check failed"])
        issue = self._visible_issue(request)
        user = self._current(request)
        if not self.attachments_enabled:
            raise _JiraHTTPError(403, ["Attachments are disabled."])
        if not self._can_edit(user, self.projects[issue["project"]]):
            raise _JiraHTTPError(403, ["You do not have permission to create attachments for this issue."])
        raw = await request.read()  # the middleware read it already; aiohttp keeps the bytes
        header = f"Content-Type: {request.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = BytesParser(policy=email_policy.HTTP).parsebytes(header + raw)
        if not message.is_multipart():
            raise _JiraHTTPError(415, ["Expected a multipart/form-data request."])
        created = []
        for part in message.iter_parts():
            if part.get_param("name", header="content-disposition") != "file":
                continue
            content = part.get_payload(decode=True) or b""
            attachment_id = self._next_id()
            entry = {
                "self": f"{self._base(request)}/rest/api/2/attachment/{attachment_id}",
                "id": attachment_id,
                "filename": part.get_filename() or "",
                "author": self._user_json(request, user),
                "created": _now(),
                "size": len(content),
                "mimeType": part.get_content_type(),
                "content": f"{self._base(request)}/secure/attachment/{attachment_id}/{part.get_filename()}",
            }
            self.attachments.setdefault(issue["key"], []).append({**entry, "bytes": content})
            created.append(entry)
        if not created:
            raise _JiraHTTPError(400, ["No file was sent."])
        return _json(created)

    async def _create_issue(self, request: web.Request) -> web.Response:
        user = self._current(request)
        body = request[_BODY] if isinstance(request[_BODY], dict) else {}
        fields = body.get("fields")
        if not isinstance(fields, dict):
            raise _JiraHTTPError(400, ["Issue must be created with 'fields'."])
        project_ref = fields.get("project") or {}
        project_key = (
            project_ref.get("key") or project_ref.get("id") if isinstance(project_ref, dict) else None
        )
        if not project_key:
            raise _JiraHTTPError(400, [], {"project": "Specify a valid project ID or key"})
        try:
            project = self._creatable_project(request, str(project_key))
        except _JiraHTTPError as exc:
            if exc.status == 404:
                raise _JiraHTTPError(400, [], {"project": "Specify a valid project ID or key"}) from None
            raise
        raw_type = fields.get("issuetype")
        type_ref: dict[str, Any] = raw_type if isinstance(raw_type, dict) else {}
        type_name = next(
            (
                n
                for n in project.issue_types
                if type_ref.get("id") == self.issue_type_ids[n] or type_ref.get("name") == n
            ),
            None,
        )
        if type_name is None:
            raise _JiraHTTPError(400, [], {"issuetype": "Specify an issue type"})
        screen = project.create_fields.get(self.issue_type_ids[type_name], {})
        errors: dict[str, str] = {}
        for field_id, meta in screen.items():
            if (
                meta.get("required")
                and not meta.get("hasDefaultValue")
                and fields.get(field_id) in (None, "", [], {})
            ):
                errors[field_id] = (
                    "You must specify a summary of the issue."
                    if field_id == "summary"
                    else f"{meta.get('name', field_id)} is required."
                )
        for field_id in fields:
            if field_id not in screen:
                errors[field_id] = (
                    f"Field '{field_id}' cannot be set. It is not on the appropriate screen, or unknown."
                )
        priority = None
        if isinstance(fields.get("priority"), dict):
            ref = fields["priority"]
            priority = next(
                (n for n, i in PRIORITIES.items() if ref.get("id") == i or ref.get("name") == n), None
            )
            if priority is None:
                errors["priority"] = "Specify a valid priority."
        assignee = None
        if fields.get("assignee") is not None:
            found = self._find_user(fields["assignee"])
            if found is None or not self._can_edit(found, project):
                errors["assignee"] = "User cannot be assigned issues."
            else:
                assignee = found.id
        if errors:
            raise _JiraHTTPError(400, [], errors)
        known = {
            "project",
            "issuetype",
            "summary",
            "description",
            "priority",
            "assignee",
            "reporter",
            "labels",
        }
        key = self.add_issue(
            project.key,
            str(fields.get("summary", "")),
            issue_type=type_name,
            assignee=assignee,
            reporter=user.id,
            priority=priority or "Medium",
            description=str(fields.get("description") or ""),
            labels=fields.get("labels") or (),
            **{k: v for k, v in fields.items() if k not in known},
        )
        issue = self.issues[key]
        return _json(
            {"id": issue["id"], "key": key, "self": f"{self._base(request)}/rest/api/2/issue/{issue['id']}"},
            201,
        )
