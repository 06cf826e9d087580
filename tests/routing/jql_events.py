"""Events for the JQL tests, built from webhook bodies shaped as Jira Cloud sends them
(jira:issue_updated with the issue's fields; statusCategory inside status, as in
GET /rest/api/3/issue)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from bot.jira.events import IssueEvent, normalise
from bot.jira.models import parse_webhook

NOW = datetime(2026, 2, 10, 12, 0, tzinfo=UTC)


def issue_fields(**overrides: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "summary": "Disk full on the build server",
        "description": "The nightly build fails: no space left on device.",
        "project": {"id": "10000", "key": "WEB", "name": "Web Shop"},
        "issuetype": {"id": "10004", "name": "Bug"},
        "priority": {"id": "2", "name": "High"},
        "status": {
            "id": "3",
            "name": "In Progress",
            "statusCategory": {"id": 4, "key": "indeterminate", "name": "In Progress"},
        },
        "resolution": None,
        "assignee": {
            "accountId": "5b10a2844c20165700ede21g",
            "displayName": "Ada Lovelace",
            "emailAddress": "ada@example.com",
        },
        "reporter": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Grace Hopper"},
        "creator": {"accountId": "5b10ac8d82e05b22cc7d4ef5", "displayName": "Grace Hopper"},
        "labels": ["ops", "Urgent"],
        "components": [{"id": "10100", "name": "Backend"}],
        "fixVersions": [{"id": "10200", "name": "2.0"}],
        "versions": [],
        "security": None,
        "created": "2026-02-08T09:30:00.000+0000",
        "updated": "2026-02-10T11:00:00.000+0000",
        "resolutiondate": None,
        "duedate": "2026-02-20",
        "parent": {"id": "10500", "key": "WEB-1"},
        "customfield_10016": 5,
        "customfield_10072": [{"id": "20001", "value": "Red team"}],
        "customfield_10099": "Payment gateway outage",
    }
    fields.update(overrides)
    return fields


def event(kind: str = "issue_updated", comment: str | None = None, **overrides: Any) -> IssueEvent:
    body: dict[str, Any] = {
        "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": kind,
        "timestamp": int(NOW.timestamp() * 1000),
        "issue": {
            "id": "10042",
            "key": "WEB-42",
            "self": "https://acme.atlassian.net/rest/api/2/issue/10042",
            "fields": issue_fields(**overrides),
        },
        "changelog": {"items": [{"field": "status", "fromString": "Open", "toString": "In Progress"}]},
    }
    if comment is not None:
        body["issue_event_type_name"] = "issue_commented"
        body["comment"] = {"id": "1", "body": comment, "author": {"accountId": "x", "displayName": "X"}}
    result = normalise(parse_webhook(body))
    assert result is not None
    return result
