"""The `change_gate:` settings model."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from bot.gate_rules.model import GatePolicy, GateRequest, GateTarget
from bot.gate_rules.settings import DEFAULT_SUMMARY_TEMPLATE, ChangeGateSettings
from tests.gate.support import REQUEST, SUMMARY, gate_settings


def test_defaults_follow_the_issue() -> None:
    settings = ChangeGateSettings.model_validate({"service_desk": "ITSM", "channel": "ops/deployments"})
    assert settings.instance is None
    assert (settings.request_type, settings.poll_interval_seconds, settings.max_wait_hours) == (
        "Request a change",
        30,
        24.0,
    )
    assert settings.summary_template == DEFAULT_SUMMARY_TEMPLATE
    assert (settings.planned_start_field, settings.planned_end_field) == ("Planned start", "Planned end")
    assert settings.policy() == GatePolicy()  # the same defaults as the decision's own
    assert str(settings.time_zone) == "UTC"


def test_summary_from_the_template() -> None:
    assert gate_settings().summary_for(REQUEST) == SUMMARY
    custom = gate_settings(summary_template="CHG {environment}: {project} {version}")
    assert custom.summary_for(REQUEST) == "CHG Production: Web Site 1.2.3"


@pytest.mark.parametrize(
    "overrides,problem",
    [
        ({"date_only_timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"summary_template": "Deploy {app}"}, "unknown placeholder"),
        ({"summary_template": "Deploy {project"}, "not a valid template"),
        ({"proceed_statuses": []}, "proceed_statuses"),
        ({"poll_interval_seconds": 1}, "poll_interval_seconds"),
        ({"cancel_role": "everyone"}, "cancel_role"),
        ({"projects": {"Web Site": {}, "web site": {}}}, "configured twice"),
        ({"pipeline_tokens": [{"token": "short", "projects": ["Web Site"]}]}, "at least 16"),
        ({"pipeline_tokens": [{"token": "pipeline-token-0123456789", "projects": []}]}, "projects"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_invalid_settings_are_refused(overrides: dict[str, object], problem: str) -> None:
    with pytest.raises(ValidationError, match=problem):
        gate_settings(**overrides)


@pytest.mark.parametrize(
    "project,environment,controlled",
    [
        ("Web Site", "Production", True),
        ("web site", "production", True),
        ("Web Site", "Dev", False),
        ("Web Site", "Staging", False),  # an environment not configured is not controlled
        ("Intranet", "Production", False),
    ],
)
def test_gated_only_when_project_and_environment_are(
    project: str, environment: str, controlled: bool
) -> None:
    assert gate_settings().is_change_controlled(project, environment) is controlled


def test_per_project_connection() -> None:
    settings = gate_settings(
        projects={
            "Web Site": {"change_controlled": True},
            "Billing": {"change_controlled": True, "instance": "itsm-eu", "service_desk": "CHG"},
        }
    )
    assert settings.target_for("Web Site") == GateTarget("itsm", "ITSM", "Request a change")
    assert settings.target_for("billing") == GateTarget("itsm-eu", "CHG", "Request a change")
    assert settings.referenced_instances() == {"itsm", "itsm-eu"}


def test_canonical_request() -> None:
    settings = gate_settings()
    given = GateRequest(
        project=" WEB SITE", environment="production ", version=" 1.2.3", change_request=" itsm-9 "
    )
    assert settings.canonical(given) == GateRequest("Web Site", "Production", "1.2.3", "ITSM-9")
    assert settings.canonical(GateRequest("Intranet", "QA", "1", "")).change_request is None


def test_pipeline_tokens() -> None:
    settings = gate_settings(
        pipeline_tokens=[
            {"token": "pipeline-token-0123456789", "projects": ["Web Site"], "name": "web"},
            {"token": "ops-token-abcdefghijklmnop", "projects": ["*"]},
        ]
    )
    web = settings.find_token("pipeline-token-0123456789")
    assert web is not None and web.name == "web"
    assert web.allows("web site") and not web.allows("Billing")
    ops = settings.find_token(" ops-token-abcdefghijklmnop ")
    assert ops is not None and ops.allows("Billing")
    assert settings.find_token("pipeline-token-012345678") is None
    assert settings.find_token("") is None
    assert "0123456789" not in repr(web)
