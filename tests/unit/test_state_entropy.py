"""States are 256-bit random, never repeat, and only their hash is stored."""

import base64
import hashlib

from oauth_callback.service import ConsentService
from oauth_callback.settings import ConsentSettings
from seller_insights.marketplaces import Region

SAMPLES = 10_000


class RecordingStates:
    """Keeps what the service would store (the state repository's `create` contract)."""

    def __init__(self) -> None:
        self.items = []

    def create(self, state) -> None:
        self.items.append(state)


def test_states_have_256_bits_and_never_collide():
    settings = ConsentSettings.from_env({
        "STAGE": "dev", "CONNECTIONS_TABLE": "c", "OAUTH_STATE_TABLE": "s", "IDEMPOTENCY_TABLE": "i",
        "AUDIT_TABLE": "a", "SELLER_KEY_SECRET_ID": "sk", "TOKEN_KEY_ID": "k", "LWA_CLIENT_SECRET_ID": "x",
        "APP_DRAFT": "true",
        "REDIRECT_URI": "https://api.example.com/callback"})
    states = RecordingStates()
    service = ConsentService(settings, states=states, connections=None, candidates=None, claims=None,  # type: ignore[arg-type]
                             vault=None, lwa=None, identity=None, audit=None, credentials=None)  # type: ignore[arg-type]
    issued = [service._issue_state(None, flow="website", region=Region.NA, marketplace="US")[0]
              for _ in range(SAMPLES)]
    assert len(set(issued)) == SAMPLES
    assert all(len(base64.urlsafe_b64decode(s + "=")) >= 32 for s in issued)
    stored = {item.state_hash for item in states.items}
    assert stored == {hashlib.sha256(s.encode()).hexdigest() for s in issued}
    assert not stored & set(issued)
