from pathlib import Path

import pytest

from bot.config import ConfigError, load_settings


def test_defaults_without_file_or_environment() -> None:
    s = load_settings(None, {})
    assert s.server.port == 8080
    assert s.mattermost.url is None
    assert s.database_url == "sqlite:///data/jira-chatops.db"
    assert s.channel_posts.thread_comments_days == 30


def test_example_config_is_valid() -> None:
    example = Path(__file__).resolve().parents[1] / "config.example.yaml"
    s = load_settings(example, {"MATTERMOST_BOT_TOKEN": "t0ken"})
    assert s.jira.instances[0].alias == "acme"
    assert s.subscriptions[0].filters.fields[0].values == ("High",)


def test_named_environment_variables_override_the_file(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server: {port: 9000}\nmattermost: {url: http://file.example}\n")
    s = load_settings(
        cfg,
        {
            "PORT": "9100",
            "DATABASE_URL": "postgresql://u@127.0.0.1:5432/test",
            "MATTERMOST_URL": "http://mm.example:8065/",
            "MATTERMOST_BOT_TOKEN": "abc",
            "JIRA_WEBHOOK_SECRET": "s3cret",
            "BOT_PUBLIC_URL": "https://bot.example/",
            "JIRA_WEBHOOK_PREVIOUS_SECRETS": "old1, old2",
        },
    )
    assert s.server.port == 9100
    assert s.database_url == "postgresql://u@127.0.0.1:5432/test"
    assert s.mattermost.url == "http://mm.example:8065"
    assert s.mattermost.bot_token is not None and s.mattermost.bot_token.get_secret_value() == "abc"
    assert s.jira.webhook_secret is not None and s.jira.webhook_secret.get_secret_value() == "s3cret"
    assert s.server.public_url == "https://bot.example"
    assert [x.get_secret_value() for x in s.jira.previous_webhook_secrets] == ["old1", "old2"]


def test_generic_nested_override() -> None:
    s = load_settings(None, {"JIRA_CHATOPS__DELIVERY__WORKERS": "9"})
    assert s.delivery.workers == 9


@pytest.mark.parametrize(
    ("yaml_text", "env", "fragment"),
    [
        ("server: {port: 70000}", {}, "server.port"),
        ("server: {prot: 1}", {}, "server.prot: unknown key"),
        ("mattermost: {url: chat.example.com}", {}, "mattermost.url"),
        ("database: {url: 'mysql://x'}", {}, "database.url"),
        ("[1, 2]", {}, "mapping"),
        ("server: {port: [", {}, "not valid YAML"),
        ("", {"PORT": "eighty"}, "server.port"),
        ("", {"BOT_ENCRYPTION_KEY": "c2hvcnQ="}, "security.encryption_key: must decode to 32"),
        (
            "",
            {"MATTERMOST_COMMAND_TOKENS": "a,b", "JIRA_CHATOPS__COMMANDS__SUBSCRIPTION_ROLE": "boss"},
            "commands",
        ),
    ],
)
def test_bad_config_names_the_key(tmp_path: Path, yaml_text: str, env: dict[str, str], fragment: str) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, env)
    assert fragment in str(e.value)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml", {})


def test_secrets_are_not_shown_in_repr() -> None:
    s = load_settings(None, {"JIRA_WEBHOOK_SECRET": "topsecretvalue"})
    assert "topsecretvalue" not in repr(s)


def test_config_errors_speak_yaml_with_file_and_line(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "server: 3\ndelivery:\n  workres: 2\n  max_attempts: many\nmattermost:\n  command_tokens: abc\n"
        "logging: {level: LOUD}\n"
    )
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, {})
    text = str(e.value)
    assert f"{cfg}:1: server: must be a mapping" in text
    assert f"{cfg}:3: delivery.workres: unknown key (did you mean `workers`?)" in text
    assert f"{cfg}:4: delivery.max_attempts: must be a whole number" in text
    assert f"{cfg}:6: mattermost.command_tokens: must be a list" in text
    assert f"{cfg}:7: logging.level: must be 'DEBUG', 'INFO', 'WARNING' or 'ERROR'" in text
    for pydantic_words in ("Input should", "Value error", "valid dictionary", "valid tuple", "instance of"):
        assert pydantic_words not in text


def test_bad_yaml_names_file_line_and_column(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("server:\n  port: [\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, {})
    assert str(e.value).startswith(f"{cfg}:3:1: not valid YAML: ")
    assert "<unicode string>" not in str(e.value)


def test_a_misspelled_choice_gets_a_did_you_mean(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("commands: {subscription_role: channel_admn}\nlogging: {level: WARN}\n")
    with pytest.raises(ConfigError) as e:
        load_settings(cfg, {})
    assert f"{cfg}:1: commands.subscription_role: must be 'users', " in str(e.value)
    assert "(did you mean `channel_admin`?)" in str(e.value)
    assert "(did you mean `WARNING`?)" in str(e.value)
