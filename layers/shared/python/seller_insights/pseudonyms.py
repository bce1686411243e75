"""The opaque seller key: what object keys, logs, metrics, audit records and receipts carry instead of a
seller id.

They outlive the seller's data (S3 server access logs and CloudWatch logs are kept 365 days, audit records
25 months), so they must not hold it: a keyed HMAC-SHA256 of the seller id, with a 256-bit key that lives in
Secrets Manager (`SELLER_KEY_SECRET_ID`, generated at deployment, never rotated, retained with the stack's
records) and is readable by the functions only. Without the key a seller key cannot be tied to a seller id,
not even by trying every known id, as an unkeyed digest could; once a seller is purged we hold no id to tie
it to. Changing the key would orphan every stored prefix and audit record, so there is no rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError

from seller_insights.errors import ConfigurationError
from seller_insights.redaction import register_secret

SECRET_ENV = "SELLER_KEY_SECRET_ID"  # noqa: S105 - the name of a variable, not a secret
MIN_KEY_LENGTH = 32
KEY_MAX_AGE_SECONDS = 24 * 3600  # the key never changes; the cache only bounds a misconfiguration's life
SELLER_KEY_HEX = 32  # 128 bits

_lock = threading.Lock()
_fixed: bytes | None = None


def use_key(key: bytes | None) -> None:
    """Use this key instead of the secret (tests and local tools that check a stack from outside);
    None goes back to the secret."""
    global _fixed  # noqa: PLW0603 - one key per process, as in Lambda
    if key is not None and len(key) < MIN_KEY_LENGTH:
        raise ValueError(f"a seller-key key needs at least {MIN_KEY_LENGTH} bytes")
    with _lock:
        _fixed = key


def seller_key(seller_id: str) -> str:
    """The opaque, stable key of a seller (32 hex characters)."""
    return keyed(_key(), seller_id)


def keyed(key: bytes, seller_id: str) -> str:
    return hmac.new(key, f"seller:{seller_id}".encode(), hashlib.sha256).hexdigest()[:SELLER_KEY_HEX]


def _key() -> bytes:
    with _lock:
        if _fixed is not None:
            return _fixed
    secret_id = os.environ.get(SECRET_ENV)
    if not secret_id:
        raise ConfigurationError(f"{SECRET_ENV} is not set: seller keys need the secret the stack creates for them")
    try:
        value = parameters.get_secret(secret_id, max_age=KEY_MAX_AGE_SECONDS)
    except GetParameterError:
        raise ConfigurationError(f"the seller-key secret ({SECRET_ENV}) could not be read from Secrets Manager") \
            from None
    if not isinstance(value, str) or len(value) < MIN_KEY_LENGTH:
        raise ConfigurationError(f"the seller-key secret ({SECRET_ENV}) must hold at least {MIN_KEY_LENGTH} "
                                 "characters")
    register_secret(value)
    return value.encode()
