"""Command handlers, one module per command group; importing this package registers them."""

from bot.commands.handlers import (
    account,  # noqa: F401
    admin,  # noqa: F401
    change,  # noqa: F401
    issue,  # noqa: F401
    post_actions,  # noqa: F401
    subscribe,  # noqa: F401
    thread,  # noqa: F401
)
