"""ContextSigner: signed contexts for buttons and dialogs, checked before anything acts on them."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from bot.security import signing
from bot.security.signing import (
    ContextSigner,
    ExpiredContext,
    ForgedContext,
    MemoryNonces,
    ReplayedContext,
    canonical_json,
    derive_key,
)

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
KEY = derive_key(b"m" * 32, "interactive-context")


@pytest.fixture
def signer() -> ContextSigner:
    return ContextSigner(KEY)


def go_round_trip(value: dict[str, object]) -> dict[str, object]:
    """What Mattermost's Go server hands back: keys re-ordered, HTML characters escaped as
    \\u003c etc. on the wire, parsed again on our side."""
    wire = json.dumps(value, sort_keys=True).replace("<", "\\u003c").replace(">", "\\u003e")
    return json.loads(wire.replace("&", "\\u0026"))


def test_signed_context_verifies_after_the_round_trip_through_mattermost(signer: ContextSigner) -> None:
    context = {"action": "transition", "issue": "PROJ-1", "to": "In <Progress> & done", "n": 3, "ok": True}
    signed = signer.sign(context, ttl_seconds=600, now=NOW)
    assert {"_exp", "_nonce", "_sig"} <= signed.keys()
    assert signed["_exp"] == int(NOW.timestamp()) + 600
    back = dict(reversed(list(go_round_trip(signed).items())))
    assert signer.verify(back, NOW + timedelta(seconds=599)) == context


def test_nonces_differ_between_signatures(signer: ContextSigner) -> None:
    a = signer.sign({"x": "1"}, ttl_seconds=60, now=NOW)
    b = signer.sign({"x": "1"}, ttl_seconds=60, now=NOW)
    assert a["_nonce"] != b["_nonce"] and a["_sig"] != b["_sig"]


@pytest.mark.parametrize(
    "tamper",
    [
        lambda c: c.update(issue="PROJ-2"),
        lambda c: c.update(extra="added"),
        lambda c: c.pop("issue"),
        lambda c: c.update(_exp=c["_exp"] + 3600),
        lambda c: c.update(_sig=c["_sig"][:-2] + "AA"),
        lambda c: c.pop("_sig"),
        lambda c: c.update(_sig=""),
        lambda c: c.update(_sig=12345),
    ],
    ids=["value", "added key", "removed key", "expiry", "signature", "no signature", "empty", "not a string"],
)
def test_tampered_contexts_are_refused(signer: ContextSigner, tamper: object) -> None:
    signed = signer.sign({"action": "view", "issue": "PROJ-1"}, ttl_seconds=600, now=NOW)
    tamper(signed)  # type: ignore[operator]
    with pytest.raises(ForgedContext):
        signer.verify(signed, NOW)


def test_a_context_signed_with_another_key_is_refused(signer: ContextSigner) -> None:
    other = ContextSigner(derive_key(b"o" * 32, "interactive-context"))
    with pytest.raises(ForgedContext, match="bad signature"):
        signer.verify(other.sign({"a": "b"}, ttl_seconds=60, now=NOW), NOW)


def test_missing_or_non_object_contexts_are_refused(signer: ContextSigner) -> None:
    for value in (None, {}, {"action": "view"}):
        with pytest.raises(ForgedContext):
            signer.verify(value, NOW)  # type: ignore[arg-type]


def test_expired_contexts_are_refused(signer: ContextSigner) -> None:
    signed = signer.sign({"a": "b"}, ttl_seconds=60, now=NOW)
    with pytest.raises(ExpiredContext):
        signer.verify(signed, NOW + timedelta(seconds=60))
    assert issubclass(ExpiredContext, ForgedContext)


def test_user_binding(signer: ContextSigner) -> None:
    signed = signer.sign({"a": "b"}, ttl_seconds=60, now=NOW, user_id="u1")
    assert signer.verify(signed, NOW, user_id="u1") == {"a": "b"}
    with pytest.raises(ForgedContext, match="another user"):
        signer.verify(signed, NOW, user_id="u2")


def test_sign_refuses_what_would_not_come_back_unchanged(signer: ContextSigner) -> None:
    with pytest.raises(ValueError, match="reserved"):
        signer.sign({"_sig": "x"}, ttl_seconds=60, now=NOW)
    with pytest.raises(ValueError, match="floats"):
        signer.sign({"n": 1.5}, ttl_seconds=60, now=NOW)
    with pytest.raises(ValueError, match="round trip"):
        signer.sign({"n": 2**60}, ttl_seconds=60, now=NOW)
    with pytest.raises(ValueError, match="keys must be strings"):
        signer.sign({"d": {1: "x"}}, ttl_seconds=60, now=NOW)
    with pytest.raises(ValueError, match="timezone"):
        signer.sign({"a": "b"}, ttl_seconds=60, now=datetime(2025, 1, 1))


def test_nested_values_survive(signer: ContextSigner) -> None:
    context = {"ids": ["a", "b"], "filter": {"key": "status", "values": [1, 2]}, "none": None}
    assert signer.verify(go_round_trip(signer.sign(context, ttl_seconds=5, now=NOW)), NOW) == context


async def test_single_use_contexts_are_refused_the_second_time(signer: ContextSigner) -> None:
    calls: list[tuple[str, datetime]] = []
    seen: set[str] = set()

    async def remember(nonce: str, expires_at: datetime) -> bool:
        calls.append((nonce, expires_at))
        if nonce in seen:
            return False
        seen.add(nonce)
        return True

    once = signer.sign({"pick": "ann"}, ttl_seconds=300, now=NOW, once=True)
    assert await signer.verify_once(once, NOW, remember) == {"pick": "ann"}
    with pytest.raises(ReplayedContext):
        await signer.verify_once(once, NOW, remember)
    assert calls[0] == (once["_nonce"], NOW + timedelta(seconds=300))

    reusable = signer.sign({"view": "PROJ-1"}, ttl_seconds=300, now=NOW)
    for _ in range(3):
        assert await signer.verify_once(reusable, NOW, remember) == {"view": "PROJ-1"}
    assert len(calls) == 2  # reusable contexts never touch the nonce store


async def test_memory_nonces_forget_expired_ones() -> None:
    clock = [NOW]
    nonces = MemoryNonces(lambda: clock[0])
    assert await nonces("n1", NOW + timedelta(seconds=10)) is True
    assert await nonces("n1", NOW + timedelta(seconds=10)) is False
    clock[0] = NOW + timedelta(seconds=11)
    assert await nonces("n2", NOW + timedelta(seconds=30)) is True
    assert "n1" not in nonces._seen


async def test_dialog_state_as_a_string(signer: ContextSigner) -> None:
    state = signer.dumps({"callback": "create", "project": "PROJ"}, ttl_seconds=900, now=NOW, user_id="u1")
    assert isinstance(state, str) and json.loads(state)["_uid"] == "u1"
    assert signer.loads(state, NOW, user_id="u1") == {"callback": "create", "project": "PROJ"}
    for bad in ("", "not json", "[1]", state.replace("PROJ", "EVIL")):
        with pytest.raises(ForgedContext):
            signer.loads(bad, NOW)
    once = signer.dumps({"a": "b"}, ttl_seconds=60, now=NOW, once=True)
    nonces = MemoryNonces(lambda: NOW)
    assert await signer.loads_once(once, NOW, nonces) == {"a": "b"}
    with pytest.raises(ReplayedContext):
        await signer.loads_once(once, NOW, nonces)


def test_signatures_are_compared_in_constant_time(
    signer: ContextSigner, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[bytes, bytes]] = []
    real = signing.hmac.compare_digest

    def spy(a: bytes, b: bytes) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", spy)
    signed = signer.sign({"a": "b"}, ttl_seconds=60, now=NOW)
    signer.verify(signed, NOW)
    assert compared == [(signed["_sig"].encode(), signed["_sig"].encode())]


def test_keys_are_derived_per_purpose_and_must_be_long_enough() -> None:
    master = b"k" * 32
    assert derive_key(master, "interactive-context") != derive_key(master, "token-encryption")
    assert len(derive_key(master, "x")) == 32
    with pytest.raises(ValueError):
        derive_key(b"short", "x")
    with pytest.raises(ValueError):
        ContextSigner(b"short")
    assert "k" * 8 not in repr(ContextSigner(master))


def test_canonical_json_is_order_independent() -> None:
    assert canonical_json({"b": 1, "a": [1, {"d": 2, "c": 3}]}) == b'{"a":[1,{"c":3,"d":2}],"b":1}'
