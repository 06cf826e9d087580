"""Config-file and environment subscriptions: events, field keys, inclusions, project keys, channels
and instance names refused with the chat forms' sentences, the key path and the file's line; and
`check-config` refuses what `serve` would."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import main
from bot.commands.subscription_text import SubscriptionTextError, parse_events, parse_field_filter, parse_name
from bot.config import ConfigError, load_settings
from bot.names import ROLE_CHOICES, KnownInstance, unknown_instance

ACME = "https://acme.atlassian.net"
INSTANCES = (
    f"jira:\n  instances:\n    - {{url: '{ACME}', alias: acme}}\n    - {{url: 'https://jira.corp.example'}}\n"
)
KNOWN = [KnownInstance(ACME, "acme"), KnownInstance("https://jira.corp.example")]


def text_form_problem(line: str) -> str:
    with pytest.raises(SubscriptionTextError) as e:
        parse_field_filter(line)
    return e.value.problem


def write(tmp_path: Path, subscription: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(INSTANCES + "subscriptions:\n" + subscription)
    return cfg


FIELD_TYPO = (
    "  - name: x\n"
    "    channel: acme/dev\n"
    "    instance: acme\n"
    "    filters:\n"
    "      events: [event_created]\n"
    "      projects: [WEB]\n"
    "      fields:\n"
    "        - {key: prority, values: [High]}\n"
)


def test_load_settings_misspelt_field_key(tmp_path: Path) -> None:
    cfg = write(tmp_path, FIELD_TYPO)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ={})
    problem = text_form_problem("prority include_any High")
    assert f"  {cfg}:13: subscriptions.0.filters.fields.0.key: {problem}" in str(e.value)
    assert "(did you mean `priority`?)" in problem


def test_check_config_misspelt_field_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, FIELD_TYPO.replace("prority", "fixVersion"))
    assert main(["--config", str(cfg), "check-config"]) == 2
    problem = text_form_problem("fixVersion empty")
    assert f"{cfg}:13: subscriptions.0.filters.fields.0.key: {problem}" in capsys.readouterr().err
    assert "(did you mean `fixVersions`?)" in problem


def test_env_override_names_its_variable(tmp_path: Path) -> None:
    cfg = write(tmp_path, FIELD_TYPO)  # the file's own subscription is replaced by the variable's
    env = {
        "JIRA_CHATOPS__SUBSCRIPTIONS": "[{name: y, channel: acme/dev, instance: acme, filters: "
        "{events: [event_created], projects: [WEB], fields: [{key: customfield_abc, inclusion: empty}]}}]"
    }
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ=env)
    problem = text_form_problem("customfield_abc empty")
    assert f"  JIRA_CHATOPS__SUBSCRIPTIONS: subscriptions.0.filters.fields.0.key: {problem}" in str(e.value)
    assert str(cfg) not in str(e.value)


@pytest.mark.parametrize("env", [False, True])
def test_misspelt_event_gets_the_text_forms_sentence_and_its_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, env: bool
) -> None:
    typo = FIELD_TYPO.replace("prority", "priority").replace(
        "[event_created]", "[event_creatd, Event_Updated_Any]"
    )
    environ = (
        {
            "JIRA_CHATOPS__SUBSCRIPTIONS": "[{name: y, channel: acme/dev, instance: acme, "
            "filters: {events: [event_creatd, Event_Updated_Any], projects: [WEB]}}]"
        }
        if env
        else {}
    )
    cfg = write(tmp_path, FIELD_TYPO.replace("prority", "priority") if env else typo)
    with pytest.raises(SubscriptionTextError) as typed:
        parse_events("event_creatd Event_Updated_Any")
    where = "JIRA_CHATOPS__SUBSCRIPTIONS" if env else f"{cfg}:10"
    expected = f"  {where}: subscriptions.0.filters.events: {typed.value.problem}"
    assert "(did you mean `event_created`?)" in typed.value.problem
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ=environ)
    assert expected in str(e.value).splitlines()
    # check-config says it too, before serve would start.
    for var, value in environ.items():
        monkeypatch.setenv(var, value)
    assert main(["--config", str(cfg), "check-config"]) == 2
    assert expected in capsys.readouterr().err.splitlines()


def test_events_are_stored_as_the_text_form_reads_them(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        FIELD_TYPO.replace("prority", "priority").replace(
            "[event_created]", "[' Event_Created', event_updated_customfield_10072, event_created]"
        ),
    )
    events = load_settings(cfg, environ={}).subscriptions[0].filters.events
    assert events == parse_events("Event_Created event_updated_customfield_10072 event_created")
    assert events == ("event_created", "event_updated_customfield_10072")


def test_field_keys_and_inclusions_are_stored_canonical(tmp_path: Path) -> None:
    cfg = write(
        tmp_path, FIELD_TYPO.replace("{key: prority, values: [High]}", "{key: FixVersions, inclusion: Empty}")
    )
    f = load_settings(cfg, environ={}).subscriptions[0].filters.fields[0]
    assert (f.key, f.inclusion) == ("fixVersions", "empty")


def test_misspelt_inclusion_and_project_key(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        FIELD_TYPO.replace(
            "{key: prority, values: [High]}", "{key: priority, inclusion: incude_any, values: [x]}"
        ).replace("projects: [WEB]", "projects: ['WEB-1']"),
    )
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ={})
    inclusion = text_form_problem("priority incude_any x")
    assert f"{cfg}:13: subscriptions.0.filters.fields.0.inclusion: {inclusion}" in str(e.value)
    assert f"{cfg}:11: subscriptions.0.filters.projects: `WEB-1` is not a project key" in str(e.value)


@pytest.mark.parametrize(
    "env", [{}, {"JIRA_CHATOPS__SUBSCRIPTIONS": "[{name: x, channel: acme/dev, instance: acmee}]"}]
)
def test_unknown_instance_gets_the_commands_did_you_mean(tmp_path: Path, env: dict[str, str]) -> None:
    cfg = write(
        tmp_path, FIELD_TYPO.replace("instance: acme", "instance: acmee").replace("prority", "priority")
    )
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ=env)
    sentence = unknown_instance("acmee", KNOWN)
    where = "JIRA_CHATOPS__SUBSCRIPTIONS" if env else f"{cfg}:8"
    assert f"  {where}: subscriptions.0.instance: {sentence}" in str(e.value)
    assert "(did you mean `acme`?)" in sentence


def test_instances_are_named_case_insensitively(tmp_path: Path) -> None:
    cfg = write(
        tmp_path,
        FIELD_TYPO.replace("instance: acme", f"instance: '{ACME.upper()}/'").replace("prority", "priority"),
    )
    settings = load_settings(cfg, environ={})
    found = settings.jira.find_instance(settings.subscriptions[0].instance or "")
    assert found is not None and found.url == ACME


CHECKED_LATER = [
    # Two subscriptions of one channel with one name: the start refuses to store them.
    (
        FIELD_TYPO.replace("prority", "priority")
        + FIELD_TYPO.replace("prority", "priority").replace("name: x", "name: X"),
        "subscriptions.1.name: `X` is declared twice for channel `acme/dev`",
    ),
    # A channel that is neither TEAM/CHANNEL nor an id: looked up at start, never found, skipped.
    (
        FIELD_TYPO.replace("prority", "priority").replace("acme/dev", "town-square"),
        "subscriptions.0.channel: `town-square` is neither",
    ),
    # No event: nothing would ever be posted.
    (
        FIELD_TYPO.replace("prority", "priority").replace("events: [event_created]", "events: []"),
        "c.yaml:10: subscriptions.0.filters.events: name at least one event",
    ),
    # No instance named, and two configured: the start cannot tell which.
    (
        FIELD_TYPO.replace("prority", "priority").replace("    instance: acme\n", ""),
        "subscriptions.0.instance: is required unless",
    ),
]


@pytest.mark.parametrize(("subscriptions", "problem"), CHECKED_LATER)
def test_check_config_refuses_what_serve_refuses(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], subscriptions: str, problem: str
) -> None:
    cfg = write(tmp_path, subscriptions)
    assert main(["--config", str(cfg), "check-config"]) == 2
    assert problem in capsys.readouterr().err
    assert main(["--config", str(cfg), "serve"]) == 2
    assert problem in capsys.readouterr().err


def test_a_valid_subscription_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = write(tmp_path, FIELD_TYPO.replace("prority", "customfield_10072"))
    assert main(["--config", str(cfg), "check-config"]) == 0
    assert "configuration is valid" in capsys.readouterr().out


def test_roles_are_one_type_with_one_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.commands import permissions

    assert ROLE_CHOICES == (
        permissions.ROLE_USERS,
        permissions.ROLE_CHANNEL_ADMIN,
        permissions.ROLE_TEAM_ADMIN,
        permissions.ROLE_SYSTEM_ADMIN,
    )
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        INSTANCES + "change_gate:\n  instance: acme\n  service_desk: ITSM\n  channel: ops/deploys\n"
        "  cancel_role: team_admn\n"
    )
    monkeypatch.setenv("JIRA_CHATOPS__COMMANDS__SUBSCRIPTION_ROLE", "Channel_Admn")
    assert main(["--config", str(cfg), "check-config"]) == 2
    err = capsys.readouterr().err.splitlines()
    choices = "must be 'users', 'channel_admin', 'team_admin' or 'system_admin'"
    assert f"  {cfg}:9: change_gate.cancel_role: {choices} (did you mean `team_admin`?)" in err
    assert (
        f"  JIRA_CHATOPS__COMMANDS__SUBSCRIPTION_ROLE: commands.subscription_role: {choices} "
        "(did you mean `channel_admin`?)"
    ) in err


def test_check_config_refuses_several_workers_on_sqlite(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # `serve` refuses it with the same sentence (tests/e2e/test_workers.py).
    monkeypatch.setenv("JIRA_CHATOPS__SERVER__WORKERS", "2")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data_dir: '{tmp_path}'\n")
    assert main(["--config", str(cfg), "check-config"]) == 2
    err = capsys.readouterr().err
    assert "  JIRA_CHATOPS__SERVER__WORKERS: server.workers is 2, but the database is SQLite, which " in err
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    assert main(["--config", str(cfg), "check-config"]) == 0
    assert "configuration is valid" in capsys.readouterr().out


NO_VALUES = ("{key: priority, inclusion: include_any}", "priority include_any")
EMPTY_WITH_VALUES = ("{key: labels, inclusion: empty, values: [x]}", "labels empty x")


@pytest.mark.parametrize(("field", "text_form"), [NO_VALUES, EMPTY_WITH_VALUES])
def test_field_filter_values_are_checked_as_the_text_form_checks_them(
    tmp_path: Path, field: str, text_form: str
) -> None:
    # Without values a filter never matches: the subscription would stay silent.
    cfg = write(tmp_path, FIELD_TYPO.replace("{key: prority, values: [High]}", field))
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ={})
    problem = text_form_problem(text_form)
    assert f"  {cfg}:13: subscriptions.0.filters.fields.0: {problem}" in str(e.value).splitlines()


def test_subscription_names_are_checked_and_stored_as_the_text_form_does(tmp_path: Path) -> None:
    long_name = "n" * 65
    cfg = write(tmp_path, FIELD_TYPO.replace("prority", "priority").replace("name: x", f"name: {long_name}"))
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, environ={})
    with pytest.raises(SubscriptionTextError) as typed:
        parse_name(long_name)
    assert typed.value.problem == "a name has at most 64 characters."
    assert f"  {cfg}:6: subscriptions.0.name: {typed.value.problem}" in str(e.value).splitlines()
    spaced = write(
        tmp_path, FIELD_TYPO.replace("prority", "priority").replace("name: x", "name: ' Bugs   in WEB '")
    )
    assert (
        load_settings(spaced, environ={}).subscriptions[0].name
        == parse_name(" Bugs   in WEB ")
        == "Bugs in WEB"
    )
