"""The LWA client credentials (client id, secret, application id) from Secrets Manager.

Read through Powertools Parameters with a max age, so a rotated secret is picked up within minutes
without a redeploy. Fails closed: a missing or malformed secret is a ConfigurationError, never an
empty default.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from aws_lambda_powertools.utilities import parameters
from aws_lambda_powertools.utilities.parameters.exceptions import GetParameterError, TransformParameterError

from seller_insights.errors import ConfigurationError
from seller_insights.redaction import register_secret

MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class LwaClientCredentials:
    client_id: str
    client_secret: str
    application_id: str
    # During a rotation overlap the old secret still works until it expires.
    previous_client_secret: str | None = None
    previous_client_secret_expires_at: str | None = None  # ISO-8601

    def previous_secret_valid_at(self, moment: datetime) -> str | None:
        """The previous secret if it is still inside its overlap window at `moment`."""
        if not self.previous_client_secret or not self.previous_client_secret_expires_at:
            return None
        try:
            expires = datetime.fromisoformat(self.previous_client_secret_expires_at.replace("Z", "+00:00"))
        except ValueError:
            return None
        return self.previous_client_secret if moment < expires else None

    def __repr__(self) -> str:  # never print the secret, even in a debugger dump
        return f"LwaClientCredentials(client_id={self.client_id!r}, application_id={self.application_id!r})"


class CredentialsSource(Protocol):
    def __call__(self, force_fetch: bool = False) -> LwaClientCredentials: ...


class SecretsManagerCredentials:
    def __init__(self, secret_id: str, max_age: int = MAX_AGE_SECONDS) -> None:
        self._secret_id = secret_id
        self._max_age = max_age

    def __call__(self, force_fetch: bool = False) -> LwaClientCredentials:
        try:
            value: Any = parameters.get_secret(
                self._secret_id, transform="json", max_age=self._max_age, force_fetch=force_fetch
            )
        except (GetParameterError, TransformParameterError):
            raise ConfigurationError(
                "the LWA client secret could not be read as JSON from Secrets Manager; check "
                "LWA_CLIENT_SECRET_ID and the secret's value (see README, 'Configure the SP-API app')"
            ) from None
        return parse_credentials(value)


def parse_credentials(value: Any) -> LwaClientCredentials:
    if not isinstance(value, dict):
        raise ConfigurationError("the LWA client secret must be a JSON object")
    missing = [k for k in ("client_id", "client_secret", "application_id") if not value.get(k)]
    placeholders = [k for k in ("client_id", "application_id") if value.get(k) == "REPLACE_ME"]
    if missing or placeholders:
        raise ConfigurationError(
            "the LWA client secret lacks "
            + ", ".join(missing + placeholders)
            + "; put the app's values in with `aws secretsmanager put-secret-value`"
        )
    previous = value.get("previous_client_secret") or None
    register_secret(value["client_secret"], previous)
    return LwaClientCredentials(
        client_id=str(value["client_id"]),
        client_secret=str(value["client_secret"]),
        application_id=str(value["application_id"]),
        previous_client_secret=str(previous) if previous else None,
        previous_client_secret_expires_at=value.get("previous_client_secret_expires_at") or None,
    )
