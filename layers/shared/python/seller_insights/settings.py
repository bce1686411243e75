"""Typed settings read from the environment, validated once, with errors that name the variable.

A function declares a frozen dataclass that extends `BaseSettings` and the mixins of the fields it shares
with other functions (`ConnectionsTable`, `AuditTable`, ...: one declaration, one meaning, one check per
variable); its own fields it declares itself. Every field is read from the environment variable of the
same name in upper case (or `env_field(name=...)`). Supported types: str, int, float, bool, and `str | None` for
optional values.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from seller_insights.errors import ConfigurationError

LOCAL_STAGE = "local"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def env_field(name: str | None = None, default: Any = dataclasses.MISSING) -> Any:
    """A settings field read from `name` (default: the field name upper-cased)."""
    return field(default=default, metadata={"env": name})


@dataclass(frozen=True, kw_only=True)
class SettingsFields:
    """Base of `BaseSettings` and of every mixin: mixins that check their fields extend `validate()` and
    call super(), so a settings class runs every check of everything it composes."""

    def validate(self) -> None:
        """Cross-field rules; subclasses extend and call super()."""


@dataclass(frozen=True, kw_only=True)
class ConnectionsTable(SettingsFields):
    connections_table: str = env_field()


@dataclass(frozen=True, kw_only=True)
class AuditTable(SettingsFields):
    # The audit records of consents, verifications and data requests (purpose audit).
    audit_table: str = env_field()


@dataclass(frozen=True, kw_only=True)
class IdempotencyTable(SettingsFields):
    # One-time claims: a code exchange or an application notification is handled once.
    idempotency_table: str = env_field()


@dataclass(frozen=True, kw_only=True)
class DataBucket(SettingsFields):
    # Reports and exports under sellers/{seller_key}/ (seller_insights.object_keys).
    data_bucket: str = env_field()


@dataclass(frozen=True, kw_only=True)
class TokenKey(SettingsFields):
    # The KMS key that seals refresh and access tokens (seller_insights.vault).
    token_key_id: str = env_field()


@dataclass(frozen=True, kw_only=True)
class LwaClientSecret(SettingsFields):
    # The secret holding the LWA client id and secret.
    lwa_client_secret_id: str = env_field()


@dataclass(frozen=True, kw_only=True)
class ReportNotificationsQueue(SettingsFields):
    # The report pipeline's report_notifications queue (its ARN), where Amazon sends REPORT_PROCESSING_FINISHED:
    # the token refresher keeps its destination per region, the report fetcher subscribes sellers to it.
    # Absent: neither (report jobs poll only).
    report_notifications_queue_arn: str | None = env_field(default=None)


@dataclass(frozen=True, kw_only=True)
class PurgeSchedule(SettingsFields):
    # Days between a deletion request or a revocation and the purge of everything the seller left: the
    # 30-day promise less point-in-time recovery's window and the daily sweep's lag (stage config
    # purge_after_days). Every function that sets a purge date reads the same value.
    purge_after_days: int = env_field()

    def validate(self) -> None:
        super().validate()
        if not 1 <= self.purge_after_days <= 30:
            raise ConfigurationError("PURGE_AFTER_DAYS must be between 1 and 30 (the 30-day deletion promise)")


@dataclass(frozen=True, kw_only=True)
class BaseSettings(SettingsFields):
    stage: str
    # The secret that keys the opaque seller keys of object keys, logs and audit records (pseudonyms.py).
    seller_key_secret_id: str = env_field()
    # Set only by the local stack: Amazon's hosts are then served by the Amazon emulator.
    amazon_endpoint_override: str | None = env_field(default=None)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Self:
        environ = os.environ if environ is None else environ
        hints = typing.get_type_hints(cls)
        values: dict[str, Any] = {}
        problems: list[str] = []
        for f in dataclasses.fields(cls):
            name = f.metadata.get("env") or f.name.upper()
            raw = environ.get(name)
            if raw is None or raw == "":
                if f.default is dataclasses.MISSING:
                    problems.append(f"{name} is not set")
                continue
            try:
                values[f.name] = _convert(raw, hints[f.name])
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise ConfigurationError(
                f"{cls.__name__}: " + "; ".join(problems)
                + ". Set these in the function's environment (see docs/internal-contracts.md)."
            )
        settings = cls(**values)
        settings.validate()
        return settings

    @property
    def is_local(self) -> bool:
        return self.stage == LOCAL_STAGE

    def validate(self) -> None:
        super().validate()
        if self.amazon_endpoint_override and not self.is_local:
            raise ConfigurationError(
                "AMAZON_ENDPOINT_OVERRIDE is only allowed when STAGE=local; remove it from this stage"
            )


def _convert(raw: str, annotation: Any) -> Any:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(annotation) if a is not type(None)]
        annotation = options[0]
    if annotation is bool:
        lowered = raw.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"expected true or false, got {raw!r}")
    if annotation is int:
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
    if annotation is float:
        try:
            return float(raw)
        except ValueError:
            raise ValueError(f"expected a number, got {raw!r}") from None
    if annotation is str:
        return raw
    raise TypeError(f"unsupported settings type {annotation!r}")
