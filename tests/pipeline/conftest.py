"""The whole bot against a fake Mattermost and fake Jiras over real HTTP (the commands' harness)."""

from tests.commands.conftest import allow_private_instance_urls, harness

__all__ = ["allow_private_instance_urls", "harness"]
