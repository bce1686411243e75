"""Token lifecycle duty: fresh access tokens, revocation, re-authorization notices, secret rotation."""
