"""In-process stand-ins for the services the bot talks to."""

from tests.fakes.mattermost import FakeMattermost, RecordedRequest, SlashForm

__all__ = ["FakeMattermost", "RecordedRequest", "SlashForm"]
from tests.fakes.jira import FakeJira as FakeJira
