import pytest

from bot.jira.instances import decode_instance_id, encode_instance_id, resolve_instance


def test_instance_id_round_trip_padded_and_unpadded() -> None:
    url = "https://acme.atlassian.net"
    encoded = encode_instance_id(url + "/")
    assert encoded == "aHR0cHM6Ly9hY21lLmF0bGFzc2lhbi5uZXQ="
    assert decode_instance_id(encoded) == url
    assert decode_instance_id(encoded.rstrip("=")) == url


@pytest.mark.parametrize("bad", ["!!!", "bm90IGEgdXJs", "", "%%%%"])
def test_invalid_instance_ids(bad: str) -> None:
    assert decode_instance_id(bad) is None


A, B = "https://a.atlassian.net", "https://jira.b.example"


@pytest.mark.parametrize(
    ("path", "payload", "configured", "expected"),
    [
        (A, B, [A, B], A),  # the path wins
        (None, B, [A, B], B),  # else the payload's self URL
        (None, "https://proxy.internal", [A], A),  # else the only instance
        (None, "https://proxy.internal", [A, B], None),  # ambiguous
        ("https://other", B, [A, B], None),  # a path naming an unknown instance
        (None, B, [], B),  # nothing configured: trust the payload
        (None, "", [], None),
    ],
)
def test_resolve_instance(
    path: str | None, payload: str, configured: list[str], expected: str | None
) -> None:
    assert resolve_instance(path, payload, configured) == expected
