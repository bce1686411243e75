"""Envelope encryption for seller secrets (refresh tokens, cached access tokens).

Each seal asks KMS for a fresh AES-256 data key under the encryption context
`{purpose, seller, region}`, encrypts with AES-256-GCM and binds the same context as GCM associated
data. The context is never stored beside the ciphertext: the reader must know which seller and region
it is opening for, so a ciphertext copied to another seller's row fails to open (in KMS and in GCM).
Failures never fall back to plaintext.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from seller_insights.errors import KeyUnavailable, SealedDataInvalid

if TYPE_CHECKING:
    from types_boto3_kms.client import KMSClient

FORMAT_VERSION = 1
_NONCE_BYTES = 12
_INVALID_CIPHERTEXT = {"InvalidCiphertextException", "IncorrectKeyException"}


class Purpose(StrEnum):
    REFRESH_TOKEN = "refresh_token"  # noqa: S105 - a purpose label
    ACCESS_TOKEN = "access_token"  # noqa: S105 - a purpose label


@dataclass(frozen=True)
class SecretContext:
    purpose: Purpose
    seller: str
    region: str

    def as_kms_context(self) -> dict[str, str]:
        return {"purpose": str(self.purpose), "seller": self.seller, "region": self.region}

    def associated_data(self) -> bytes:
        return json.dumps(self.as_kms_context(), sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Sealed:
    """What is stored: the KMS-encrypted data key, the nonce and the GCM ciphertext+tag."""

    encrypted_key: bytes
    nonce: bytes
    ciphertext: bytes
    version: int = FORMAT_VERSION

    def to_item(self) -> dict[str, Any]:
        return {"v": self.version, "k": self.encrypted_key, "n": self.nonce, "c": self.ciphertext}

    @classmethod
    def from_item(cls, item: dict[str, Any]) -> Sealed:
        try:
            version = int(item["v"])
            parts = (bytes(item["k"]), bytes(item["n"]), bytes(item["c"]))
        except (KeyError, TypeError, ValueError):
            raise SealedDataInvalid("stored secret is not in the vault format") from None
        if version != FORMAT_VERSION:
            raise SealedDataInvalid(f"unsupported vault format version {version}")
        return cls(*parts, version=version)


class Vault:
    def __init__(self, kms: KMSClient, key_id: str) -> None:
        self._kms = kms
        self._key_id = key_id

    # cryptography is imported where a key is used, not with the module: the retention sweeper and the
    # data requests import `Sealed` only and never open a secret (bench.cold_import: ~10 ms CPU of their cold
    # import). The functions that do pay it at their first seal or open instead.
    def seal(self, plaintext: str, context: SecretContext) -> Sealed:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - cold import

        try:
            response = self._kms.generate_data_key(
                KeyId=self._key_id, KeySpec="AES_256", EncryptionContext=context.as_kms_context()
            )
        except ClientError as exc:
            raise KeyUnavailable(f"KMS refused to issue a data key: {_code(exc)}") from None
        data_key = response["Plaintext"]
        nonce = os.urandom(_NONCE_BYTES)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext.encode(), context.associated_data())
        del data_key
        return Sealed(response["CiphertextBlob"], nonce, ciphertext)

    def open(self, sealed: Sealed, context: SecretContext) -> str:
        from cryptography.exceptions import InvalidTag  # noqa: PLC0415 - cold import (see seal)
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: PLC0415 - cold import

        try:
            response = self._kms.decrypt(
                CiphertextBlob=sealed.encrypted_key,
                EncryptionContext=context.as_kms_context(),
                KeyId=self._key_id,
            )
        except ClientError as exc:
            if _code(exc) in _INVALID_CIPHERTEXT:
                raise SealedDataInvalid("data key does not open under this context") from None
            raise KeyUnavailable(f"KMS refused to decrypt: {_code(exc)}") from None
        try:
            plaintext = AESGCM(response["Plaintext"]).decrypt(
                sealed.nonce, sealed.ciphertext, context.associated_data()
            )
        except InvalidTag:
            raise SealedDataInvalid("ciphertext does not open under this context") from None
        return plaintext.decode()


def _code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", "Unknown"))
