"""The bot's models of what Mattermost sends integrations read only fields a real server sends
(the lists in tests/fakes/mattermost/interactions.py, with their server references), and the fake
refuses to build a request with any other field: no test can pass on an invented field again."""

from __future__ import annotations

import pytest

from bot.mattermost.payloads import ActionRequest, DialogSubmission, SlashCommandRequest
from tests.fakes.mattermost import FakeMattermost
from tests.fakes.mattermost.interactions import (
    ACTION_REQUEST_FIELDS,
    COMMAND_FORM_FIELDS,
    DIALOG_SUBMISSION_FIELDS,
    _only,
)


def test_the_slash_command_model_reads_only_the_servers_form_fields() -> None:
    assert set(SlashCommandRequest.model_fields) == COMMAND_FORM_FIELDS
    assert "root_id" not in COMMAND_FORM_FIELDS


def test_the_click_and_dialog_models_read_only_the_servers_fields() -> None:
    assert set(ActionRequest.model_fields) == ACTION_REQUEST_FIELDS
    # `context` is the bot's own: the verified `state`, filled in after the signature check.
    assert set(DialogSubmission.model_fields) - {"context"} == DIALOG_SUBMISSION_FIELDS


def test_a_form_built_by_the_fake_has_only_those_fields() -> None:
    mm = FakeMattermost()
    user = mm.add_user("alice")
    channel = mm.add_channel("acme", "dev", members=[user])
    mm.add_user("bob")
    form = mm.slash_form(user, channel, "assign ABC-1 @bob", "token", base_url="http://mm", root_id="x" * 26)
    assert set(form.fields) <= COMMAND_FORM_FIELDS
    assert "root_id" not in form.fields  # typed in a thread, yet the form does not say so
    assert form.fields["user_mentions"] == ["bob"]
    with pytest.raises(AssertionError, match="root_id"):
        _only(COMMAND_FORM_FIELDS, ["text", "root_id"], "a slash command's form")
