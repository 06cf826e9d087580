"""Keys, signatures and secrets the bot relies on."""

from bot.security.signing import (
    ContextSigner,
    ExpiredContext,
    ForgedContext,
    MemoryNonces,
    NonceRecorder,
    ReplayedContext,
    derive_key,
)

__all__ = [
    "ContextSigner",
    "ExpiredContext",
    "ForgedContext",
    "MemoryNonces",
    "NonceRecorder",
    "ReplayedContext",
    "derive_key",
]
