"""Consent duty: /connect, /login, /callback and the /done outcome page."""
