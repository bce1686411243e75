"""Regions, marketplaces and the Amazon hosts that belong to them (Amazon's SP-API docs:
"Selling Partner API endpoints" and "Marketplace IDs").

An authorization is regional: consent in one marketplace's Seller Central covers every marketplace
of its region. The consent URL therefore goes to the Seller Central of the seller's marketplace.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from urllib.parse import urlsplit

from seller_insights.errors import UnknownMarketplace

LWA_TOKEN_URL = "https://api.amazon.com/auth/o2/token"  # noqa: S105 - a URL, not a password
CONSENT_PATH = "/apps/authorize/consent"
# Where the Log-in URI sends the browser back: Amazon's confirmation page of one application.
CONFIRM_PATH = "/apps/authorize/confirm/"


class Region(StrEnum):
    NA = "NA"
    EU = "EU"
    FE = "FE"


SPAPI_ENDPOINTS: dict[Region, str] = {
    Region.NA: "https://sellingpartnerapi-na.amazon.com",
    Region.EU: "https://sellingpartnerapi-eu.amazon.com",
    Region.FE: "https://sellingpartnerapi-fe.amazon.com",
}


@dataclass(frozen=True)
class Marketplace:
    code: str
    country: str
    region: Region
    marketplace_id: str
    seller_central: str
    # None where no Amazon-authored source confirms a Vendor Central host (IE, ZA).
    vendor_central: str | None

    def consent_base(self) -> str:
        return self.seller_central

    @property
    def currency(self) -> str:
        """The marketplace's default currency (ISO 4217), as Amazon's getAccount reports it."""
        return _CURRENCIES[self.code]


_EU_SC = "https://sellercentral-europe.amazon.com"  # shared by UK, DE, FR, IT, ES

_ROWS: tuple[Marketplace, ...] = (
    Marketplace("US", "United States", Region.NA, "ATVPDKIKX0DER",
                "https://sellercentral.amazon.com", "https://vendorcentral.amazon.com"),
    Marketplace("CA", "Canada", Region.NA, "A2EUQ1WTGCTBG2",
                "https://sellercentral.amazon.ca", "https://vendorcentral.amazon.ca"),
    Marketplace("MX", "Mexico", Region.NA, "A1AM78C64UM0Y8",
                "https://sellercentral.amazon.com.mx", "https://vendorcentral.amazon.com.mx"),
    Marketplace("BR", "Brazil", Region.NA, "A2Q3Y263D00KWC",
                "https://sellercentral.amazon.com.br", "https://vendorcentral.amazon.com.br"),
    Marketplace("UK", "United Kingdom", Region.EU, "A1F83G8C2ARO7P",
                _EU_SC, "https://vendorcentral.amazon.co.uk"),
    Marketplace("DE", "Germany", Region.EU, "A1PA6795UKMFR9",
                _EU_SC, "https://vendorcentral.amazon.de"),
    Marketplace("FR", "France", Region.EU, "A13V1IB3VIYZZH",
                _EU_SC, "https://vendorcentral.amazon.fr"),
    Marketplace("IT", "Italy", Region.EU, "APJ6JRA9NG5V4",
                _EU_SC, "https://vendorcentral.amazon.it"),
    Marketplace("ES", "Spain", Region.EU, "A1RKKUPIHCS9HS",
                _EU_SC, "https://vendorcentral.amazon.es"),
    Marketplace("NL", "Netherlands", Region.EU, "A1805IZSGTT6HS",
                "https://sellercentral.amazon.nl", "https://vendorcentral.amazon.nl"),
    Marketplace("SE", "Sweden", Region.EU, "A2NODRKZP88ZB9",
                "https://sellercentral.amazon.se", "https://vendorcentral.amazon.se"),
    Marketplace("PL", "Poland", Region.EU, "A1C3SOZRARQ6R3",
                "https://sellercentral.amazon.pl", "https://vendorcentral.amazon.pl"),
    Marketplace("BE", "Belgium", Region.EU, "AMEN7PMS3EDWL",
                "https://sellercentral.amazon.com.be", "https://vendorcentral.amazon.com.be"),
    # IE and ZA Seller Central hosts come from third-party sources only (Amazon lists none).
    Marketplace("IE", "Ireland", Region.EU, "A28R8C7NBKEWEA",
                "https://sellercentral.amazon.ie", None),
    Marketplace("TR", "Turkey", Region.EU, "A33AVAJ2PDY3EV",
                "https://sellercentral.amazon.com.tr", "https://vendorcentral.amazon.com.tr"),
    Marketplace("AE", "United Arab Emirates", Region.EU, "A2VIGQ35RCS4UG",
                "https://sellercentral.amazon.ae", "https://vendorcentral.amazon.me"),
    Marketplace("SA", "Saudi Arabia", Region.EU, "A17E79C6D8DWNP",
                "https://sellercentral.amazon.sa", "https://vendorcentral.amazon.me"),
    Marketplace("EG", "Egypt", Region.EU, "ARBP9OOSHTCHU",
                "https://sellercentral.amazon.eg", "https://vendorcentral.amazon.me"),
    # Vendor Central IN: the developer guide's corrected value; Amazon's sample uses
    # www.vendorcentral.in (Amazon's pages disagree).
    Marketplace("IN", "India", Region.EU, "A21TJRUUN4KGV",
                "https://sellercentral.amazon.in", "https://vendorcentral.amazon.in"),
    Marketplace("ZA", "South Africa", Region.EU, "AE08WJ6YKNBMC",
                "https://sellercentral.amazon.co.za", None),
    Marketplace("JP", "Japan", Region.FE, "A1VC38T7YXB528",
                "https://sellercentral.amazon.co.jp", "https://vendorcentral.amazon.co.jp"),
    Marketplace("AU", "Australia", Region.FE, "A39IBJ37TRP1C6",
                "https://sellercentral.amazon.com.au", "https://vendorcentral.amazon.com.au"),
    Marketplace("SG", "Singapore", Region.FE, "A19VAU5U5O7RUS",
                "https://sellercentral.amazon.sg", "https://vendorcentral.amazon.com.sg"),
)

_EURO = ("DE", "FR", "IT", "ES", "NL", "BE", "IE")
_CURRENCIES: dict[str, str] = {
    "US": "USD", "CA": "CAD", "MX": "MXN", "BR": "BRL", "UK": "GBP", **dict.fromkeys(_EURO, "EUR"),
    "SE": "SEK", "PL": "PLN", "TR": "TRY", "AE": "AED", "SA": "SAR", "EG": "EGP", "IN": "INR", "ZA": "ZAR",
    "JP": "JPY", "AU": "AUD", "SG": "SGD",
}

MARKETPLACES: dict[str, Marketplace] = {m.code: m for m in _ROWS}
_ALIASES = {"GB": "UK"}


def marketplace(code: str) -> Marketplace:
    """The marketplace for a country code (case-insensitive; GB is accepted for UK)."""
    key = code.strip().upper()
    key = _ALIASES.get(key, key)
    try:
        return MARKETPLACES[key]
    except KeyError:
        raise UnknownMarketplace(code) from None


def marketplace_codes() -> list[str]:
    return [m.code for m in _ROWS]


def central_host_regions() -> dict[str, Region]:
    """Every Seller Central and Vendor Central host, with its region: the /login allowlist.

    vendorcentral.amazon.me serves AE, SA and EG, all in EU, so the mapping is unambiguous.
    """
    hosts: dict[str, Region] = {}
    for m in _ROWS:
        for base in (m.seller_central, m.vendor_central):
            if base:
                host = urlsplit(base).hostname
                assert host is not None
                hosts[host] = m.region
    return hosts


def main_marketplace(region: Region | str) -> Marketplace:
    """The marketplace most sellers of a region sell in (the first of that region: US, UK, JP)."""
    return next(m for m in _ROWS if m.region.value == str(region))


def main_seller_central(region: Region) -> str:
    """The Seller Central most sellers of a region use (the first marketplace of that region)."""
    return next(m.seller_central for m in _ROWS if m.region is region)
