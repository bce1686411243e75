import boto3
import pytest
from moto import mock_aws

from seller_insights.errors import SealedDataInvalid
from seller_insights.vault import Purpose, Sealed, SecretContext, Vault

TOKEN = "Atzr|IwEBIExampleRefreshToken0123456789abcdef"


@pytest.fixture
def vault(log_guard):
    log_guard.watch(TOKEN)
    with mock_aws():
        kms = boto3.client("kms")
        yield Vault(kms, kms.create_key()["KeyMetadata"]["Arn"])


def test_round_trip_under_the_same_context(vault):
    context = SecretContext(Purpose.REFRESH_TOKEN, "A1SELLER00001", "NA")
    sealed = vault.seal(TOKEN, context)
    assert TOKEN.encode() not in sealed.ciphertext and b"Atzr" not in sealed.ciphertext
    assert vault.open(sealed, context) == TOKEN
    assert Sealed.from_item(sealed.to_item()) == sealed


@pytest.mark.parametrize("other", [
    SecretContext(Purpose.REFRESH_TOKEN, "A1SELLER00002", "NA"),
    SecretContext(Purpose.REFRESH_TOKEN, "A1SELLER00001", "EU"),
    SecretContext(Purpose.ACCESS_TOKEN, "A1SELLER00001", "NA"),
])
def test_ciphertext_does_not_open_for_another_seller_region_or_purpose(vault, other):
    sealed = vault.seal(TOKEN, SecretContext(Purpose.REFRESH_TOKEN, "A1SELLER00001", "NA"))
    with pytest.raises(SealedDataInvalid):
        vault.open(sealed, other)


def test_tampered_ciphertext_is_refused(vault):
    context = SecretContext(Purpose.REFRESH_TOKEN, "A1SELLER00001", "NA")
    sealed = vault.seal(TOKEN, context)
    flipped = Sealed(sealed.encrypted_key, sealed.nonce, bytes([sealed.ciphertext[0] ^ 1]) + sealed.ciphertext[1:])
    with pytest.raises(SealedDataInvalid):
        vault.open(flipped, context)


def test_every_seal_uses_a_fresh_data_key_and_nonce(vault):
    context = SecretContext(Purpose.REFRESH_TOKEN, "A1SELLER00001", "NA")
    a, b = vault.seal(TOKEN, context), vault.seal(TOKEN, context)
    assert a.encrypted_key != b.encrypted_key and a.nonce != b.nonce and a.ciphertext != b.ciphertext


def test_unknown_format_is_refused():
    with pytest.raises(SealedDataInvalid):
        Sealed.from_item({"v": 9, "k": b"x", "n": b"x", "c": b"x"})
    with pytest.raises(SealedDataInvalid):
        Sealed.from_item({"plaintext": TOKEN})
