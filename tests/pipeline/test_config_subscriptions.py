"""Subscriptions declared in the config file: JQL is checked before the bot starts."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import main
from bot.config import ConfigError, load_settings
from bot.pipeline.config_subscriptions import located_subscription_problems

_CONFIG = """
jira:
  instances:
    - {{url: https://acme.atlassian.net, type: cloud}}
subscriptions:
  - name: Customer bugs
    channel: acme/dev
    filters:
      events: [event_created]
      {filters}
"""


def _settings(tmp_path: Path, filters: str) -> Path:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(_CONFIG.format(filters=filters))
    return cfg


def test_jql_makes_projects_optional(tmp_path: Path) -> None:
    cfg = _settings(tmp_path, "jql: 'project in (WEB, API) AND labels = customer'")
    assert located_subscription_problems(load_settings(cfg, environ={})) == []


def test_without_jql_projects_are_still_required(tmp_path: Path) -> None:
    cfg = _settings(tmp_path, "issue_types: [Bug]")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ={})
    # The line of the subscription's filters, where projects belong.
    assert str(e.value).splitlines()[1:] == [
        f"  {cfg}:8: subscriptions.0.filters.projects: name at least one project (or give filters.jql)"
    ]


@pytest.mark.parametrize(
    ("jql", "fragment"),
    [
        (
            "'project = WEB AND priority = '",
            "subscriptions.0.filters.jql ('Customer bugs'): column 30: expected a value after \"=\"",
        ),
        (
            "'project = WEB AND assignee in membersOf(devs)'",
            "subscriptions.0.filters.jql ('Customer bugs'): column 19: `assignee in membersOf(devs)` "
            "cannot be answered by the bot",
        ),
        ("'assignee = currentUser()'", "column 12: currentUser()"),
    ],
)
def test_check_config_and_serve_refuse_jql_they_cannot_evaluate(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    jql: str,
    fragment: str,
) -> None:
    monkeypatch.setenv("DATA_DIR", str(tmp_path))
    cfg = _settings(tmp_path, f"jql: {jql}")
    assert main(["--config", str(cfg), "check-config"]) == 2
    assert fragment in capsys.readouterr().err
    # The bot never starts with it either (the same check runs before serving).
    assert main(["serve", "--config", str(cfg)]) == 2
    assert fragment in capsys.readouterr().err


@pytest.mark.parametrize("from_env", [False, True])
def test_jql_problems_name_the_line_or_the_variable(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, from_env: bool
) -> None:
    cfg = _settings(tmp_path, "jql: 'project = WEB AND priority = '")
    if from_env:
        monkeypatch.setenv(
            "JIRA_CHATOPS__SUBSCRIPTIONS",
            "[{name: Customer bugs, channel: acme/dev, filters: {events: [event_created], "
            "jql: 'project = WEB AND priority = '}}]",
        )
    assert main(["--config", str(cfg), "check-config"]) == 2
    where = "JIRA_CHATOPS__SUBSCRIPTIONS" if from_env else f"{cfg}:10"
    assert (
        f"  {where}: subscriptions.0.filters.jql ('Customer bugs'): column 30: expected a value after \"=\""
        in capsys.readouterr().err.splitlines()
    )
