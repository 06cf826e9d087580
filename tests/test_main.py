"""The command line: errors name the wrong flag, every subcommand documents --config, the
example configuration passes check-config, dead-letters says exactly what it did."""

from __future__ import annotations

from pathlib import Path

import pytest

from bot.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for var in ("MATTERMOST_URL", "MATTERMOST_BOT_TOKEN", "DATABASE_URL", "JIRA_WEBHOOK_SECRET"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("DATA_DIR", str(tmp_path))


def test_the_example_configuration_passes_check_config(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(ROOT / "config.example.yaml"), "check-config"]) == 0
    out = capsys.readouterr()
    assert out.out.startswith("configuration is valid")
    # Empty secrets are left to the environment: warnings naming the variable, not errors.
    assert "warning: mattermost.bot_token is empty: set MATTERMOST_BOT_TOKEN" in out.err


def test_serve_refuses_what_check_config_warns_about(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("mattermost: {url: 'https://chat.example.com'}\n")
    assert main(["serve", "--config", str(cfg)]) == 2
    assert "mattermost.bot_token is empty: set MATTERMOST_BOT_TOKEN" in capsys.readouterr().err


def test_an_unknown_flag_is_named(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_:
        main(["--bogus"])
    assert exit_.value.code == 2
    assert "unknown option '--bogus'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["stats", "--frob"])
    assert "unknown option '--frob' (see `jira-chatops stats --help`)" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["serve", "check-config", "webhook-url", "dead-letters", "stats"])
def test_every_subcommand_documents_config(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    assert "--config FILE, -c FILE" in capsys.readouterr().out


def test_dead_letters_is_exact(capsys: pytest.CaptureFixture[str]) -> None:
    # No Mattermost token is needed to read the database, even with mattermost.url set.
    assert main(["dead-letters"]) == 0
    assert "no dead letters" in capsys.readouterr().err
    assert main(["dead-letters", "--replay", "12", "13"]) == 1
    err = capsys.readouterr().err
    assert "not dead letters, nothing done: post 12, post 13" in err
    assert main(["dead-letters", "--replay-webhooks", "7"]) == 1
    assert "webhook 7" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["dead-letters", "--replay"])  # ids are required
    assert "--replay: expected at least one argument" in capsys.readouterr().err


def test_dead_letters_needs_no_mattermost_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MATTERMOST_URL", "https://chat.example.com")
    assert main(["dead-letters"]) == 0


def test_readme_lists_every_environment_variable() -> None:
    from bot.config import ENV_KEYS

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for var, key in ENV_KEYS.items():
        assert f"| `{var}` | `{key}` |" in readme, var


def test_a_config_file_event_typo_gets_the_text_forms_did_you_mean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bot.commands.subscription_text import SubscriptionTextError, parse_events

    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "jira:\n  instances: [{url: 'https://acme.atlassian.net'}]\n"
        "subscriptions:\n  - {name: x, channel: t/c, filters: {events: [event_creatd], projects: [A]}}\n"
    )
    assert main(["--config", str(cfg), "check-config"]) == 2
    err = capsys.readouterr().err
    with pytest.raises(SubscriptionTextError) as typed:
        parse_events("event_creatd")
    assert f"subscriptions.0.filters.events: {typed.value.problem}" in err
    assert "(did you mean `event_created`?)" in err
