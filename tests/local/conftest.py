"""The in-process fixtures (tests/support/fixtures.py)."""

from tests.support.fixtures import consent_env, emulator, moto_endpoint, product_clock, sqs, token_env  # noqa: F401
