"""A local stand-in for Amazon: Seller Central consent, the Log-in URI hop and LWA, over HTTP.

The product rewrites every Amazon URL `https://{host}{path}` to `{emulator}/_hosts/{host}{path}`
(`AMAZON_ENDPOINT_OVERRIDE`); the emulator serves those and a control API under `/_emulator/`.
"""

from .emulator import AmazonEmulator
from .marketplaces import Region
from .registration import ClientSecret, EmulatorApp, LwaClient

__all__ = ["AmazonEmulator", "ClientSecret", "EmulatorApp", "LwaClient", "Region"]
