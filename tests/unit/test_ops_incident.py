"""ops incident's pure parts: which connections were reachable in a window, and the Amazon draft (counts only)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ops.api import OpsError
from ops.cli import _parser
from ops.incident import _moment, amazon_draft, reachable

SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 30, tzinfo=UTC)


def connection(**fields: str) -> dict[str, str]:
    return {"pk": "SELLER#A1B2C3D4E5", "sk": "CONN#EU", "region": "EU", "marketplace": "DE", **fields}


@pytest.mark.parametrize(("fields", "tokens"), [
    ({"status": "ACTIVE", "created_at": "2025-01-01T00:00:00Z"}, "yes"),
    ({"status": "REVOKED", "created_at": "2025-01-01T00:00:00Z", "revoked_at": "2026-11-10T00:00:00Z"}, "yes"),
    ({"status": "REVOKED", "created_at": "2025-01-01T00:00:00Z", "revoked_at": "2026-10-01T00:00:00Z"}, "no"),
    ({"status": "TOKENS_REMOVED", "created_at": "2025-01-01T00:00:00Z", "updated_at": "2026-10-31T23:59:59Z"}, "no"),
    ({"status": "DELETION_REQUESTED", "created_at": "2026-11-29T00:00:00Z",
      "updated_at": "2026-11-29T10:00:00Z"}, "yes"),
])
def test_a_stored_connection_made_before_the_window_ends_was_reachable(fields: dict[str, str], tokens: str) -> None:
    row = reachable(connection(**fields), SINCE, UNTIL)
    assert row is not None
    assert (row["region"], row["status"], row["tokens_held_in_window"]) == ("EU", fields["status"], tokens)


def test_a_connection_made_after_the_window_was_not() -> None:
    assert reachable(connection(status="ACTIVE", created_at="2026-12-01T00:00:00Z"), SINCE, UNTIL) is None


def test_the_draft_has_counts_and_the_deadline_but_no_seller() -> None:
    rows = [{"seller_id": "A1SELLER0001", "region": "NA", "tokens_held_in_window": "yes"},
            {"seller_id": "A1SELLER0001", "region": "EU", "tokens_held_in_window": "no"},
            {"seller_id": "A2SELLER0002", "region": "EU", "tokens_held_in_window": "no"}]
    contacts = {"A1SELLER0001": {"contact_email": "someone@example.com"}}
    detected = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    text = amazon_draft(rows, contacts, since=SINCE, until=UNTIL, detected=detected, now=detected)
    assert "To: security@amazon.com" in text
    assert "within 24 hours, by 2026-12-01T08:00:00Z" in text
    assert "reachable: 2 (3 regional connections; by region: EU: 2, NA: 1)" in text
    assert "refresh tokens held in the window: 1" in text
    assert "With contact data stored (e-mail/name): 1" in text
    assert "A1SELLER0001" not in text and "someone@example.com" not in text


def test_the_commands_parse_and_revoke_all_needs_confirmation() -> None:
    args = _parser().parse_args(["incident", "affected", "--since", "2026-11-01", "--local", "http://x"])
    assert args.fleet_command.__name__ == "affected" and args.until is None
    args = _parser().parse_args(["incident", "revoke-all", "--local", "http://x"])
    assert args.yes is False
    with pytest.raises(SystemExit):
        _parser().parse_args(["incident", "affected", "--local", "http://x"])  # --since is required


def test_a_malformed_time_says_what_to_write() -> None:
    with pytest.raises(OpsError, match="ISO 8601") as raised:
        _moment("yesterday", "--since")
    assert raised.value.exit_code == 2
    assert _moment("2026-11-30", "--since") == datetime(2026, 11, 30, tzinfo=UTC)
