"""`filters.jql_check` in the config file: checked by `check-config` without the network."""

from __future__ import annotations

from pathlib import Path

from bot.config import load_settings
from bot.pipeline.config_subscriptions import located_subscription_problems

_CONFIG = """
jira:
  instances:
    - url: https://acme.atlassian.net
      type: cloud
      {service_account}
subscriptions:
  - name: Watched
    channel: acme/dev
    filters:
      events: [event_created]
      jql: {jql}
      jql_check: {check}
"""
_SERVICE = "service_account: {email: svc@example.com, api_token: t0ken}"


def problems(tmp_path: Path, jql: str, check: str = "local", service_account: str = _SERVICE) -> list[str]:
    cfg = tmp_path / "config.yaml"
    cfg.write_text(_CONFIG.format(jql=jql, check=check, service_account=service_account))
    return [problem for _, problem in located_subscription_problems(load_settings(cfg, environ={}))]


def test_clauses_jira_checks_are_accepted_with_a_service_account(tmp_path: Path) -> None:
    assert problems(tmp_path, "'project = WEB AND watcher = ada'", check="jira") == []


def test_without_jql_check_the_clause_is_named_and_jira_offered(tmp_path: Path) -> None:
    [problem] = problems(tmp_path, "'project = WEB AND watcher = ada'")
    assert problem.startswith("subscriptions.0.filters.jql ('Watched'): column 19: `watcher = ada` cannot")
    assert "jql_check=jira" in problem
    [without] = problems(tmp_path, "'project = WEB AND watcher = ada'", service_account="")
    assert "jql_check" not in without


def test_jql_check_jira_needs_the_service_account(tmp_path: Path) -> None:
    found = problems(tmp_path, "'watcher = ada'", check="jira", service_account="")
    assert found == [
        "subscriptions.0.filters.jql_check ('Watched'): jira needs the instance's service_account "
        "(https://acme.atlassian.net has none) to ask Jira"
    ]


def test_names_only_jira_knows_are_refused_offline_unless_jira_checks_them(tmp_path: Path) -> None:
    # check-config reads no field list: a custom field name is refused, naming the clause.
    [name] = problems(tmp_path, "'\"Story Points\" > 3'")
    assert '`"Story Points" > 3` cannot be answered by the bot' in name
    [order] = problems(tmp_path, "'priority > High'")
    assert "priority order" in order
    assert problems(tmp_path, "'\"Story Points\" > 3'", check="jira") == []
    assert problems(tmp_path, "'cf[10016] > 3'") == []


def test_history_clauses_are_checked_by_jira_or_refused_naming_the_clause(tmp_path: Path) -> None:
    jql = "'project = WEB AND status CHANGED TO Done AFTER -1d'"
    [refused] = problems(tmp_path, jql)
    assert refused.startswith(
        "subscriptions.0.filters.jql ('Watched'): column 19: `status CHANGED TO Done AFTER -1d` cannot be "
        "answered by the bot (CHANGED needs the issue's change history, which only Jira has)"
    )
    assert problems(tmp_path, jql, check="jira") == []
    # A broken predicate is refused even when Jira would check the clause.
    [broken] = problems(tmp_path, "'status WAS Done AFTER \"2026-13-45\"'", check="jira")
    assert "column 23:" in broken and "is not a date" in broken
