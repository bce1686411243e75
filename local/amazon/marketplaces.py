"""Regions, Seller/Vendor Central hosts, marketplaces and API hosts (Amazon's SP-API docs:
"Selling Partner API endpoints" and "Marketplace IDs").

The emulator works out a request's region from the host it was addressed to, exactly as Amazon
does: an authorization given on a region's Central covers that seller in every marketplace of the
region.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Literal


class Region(StrEnum):
    NA = "NA"
    EU = "EU"
    FE = "FE"


REGION_NAMES: dict[Region, str] = {
    Region.NA: "North America",
    Region.EU: "Europe",
    Region.FE: "Far East",
}

CentralKind = Literal["seller", "vendor"]


@dataclass(frozen=True)
class CentralHost:
    host: str
    region: Region
    kind: CentralKind
    countries: tuple[str, ...]


def _hosts(kind: CentralKind, rows: list[tuple[str, Region, str]]) -> list[CentralHost]:
    return [CentralHost(host, region, kind, tuple(countries.split())) for host, region, countries in rows]


# Every Seller Central and Vendor Central host of §1.2, plus the national Seller Central hosts of
# the European marketplaces that share sellercentral-europe (they still exist and redirect there).
_CENTRAL_HOSTS: list[CentralHost] = _hosts(
    "seller",
    [
        ("sellercentral.amazon.com", Region.NA, "US"),
        ("sellercentral.amazon.ca", Region.NA, "CA"),
        ("sellercentral.amazon.com.mx", Region.NA, "MX"),
        ("sellercentral.amazon.com.br", Region.NA, "BR"),
        ("sellercentral-europe.amazon.com", Region.EU, "UK DE FR IT ES"),
        ("sellercentral.amazon.co.uk", Region.EU, "UK"),
        ("sellercentral.amazon.de", Region.EU, "DE"),
        ("sellercentral.amazon.fr", Region.EU, "FR"),
        ("sellercentral.amazon.it", Region.EU, "IT"),
        ("sellercentral.amazon.es", Region.EU, "ES"),
        ("sellercentral.amazon.nl", Region.EU, "NL"),
        ("sellercentral.amazon.se", Region.EU, "SE"),
        ("sellercentral.amazon.pl", Region.EU, "PL"),
        ("sellercentral.amazon.com.be", Region.EU, "BE"),
        ("sellercentral.amazon.com.tr", Region.EU, "TR"),
        ("sellercentral.amazon.ae", Region.EU, "AE"),
        ("sellercentral.amazon.sa", Region.EU, "SA"),
        ("sellercentral.amazon.eg", Region.EU, "EG"),
        ("sellercentral.amazon.in", Region.EU, "IN"),
        ("sellercentral.amazon.ie", Region.EU, "IE"),  # UNCONFIRMED in the reference
        ("sellercentral.amazon.co.za", Region.EU, "ZA"),  # UNCONFIRMED in the reference
        ("sellercentral.amazon.co.jp", Region.FE, "JP"),
        ("sellercentral.amazon.com.au", Region.FE, "AU"),
        ("sellercentral.amazon.sg", Region.FE, "SG"),
    ],
) + _hosts(
    "vendor",
    [
        ("vendorcentral.amazon.com", Region.NA, "US"),
        ("vendorcentral.amazon.ca", Region.NA, "CA"),
        ("vendorcentral.amazon.com.mx", Region.NA, "MX"),
        ("vendorcentral.amazon.com.br", Region.NA, "BR"),
        ("vendorcentral.amazon.co.uk", Region.EU, "UK"),
        ("vendorcentral.amazon.de", Region.EU, "DE"),
        ("vendorcentral.amazon.fr", Region.EU, "FR"),
        ("vendorcentral.amazon.it", Region.EU, "IT"),
        ("vendorcentral.amazon.es", Region.EU, "ES"),
        ("vendorcentral.amazon.nl", Region.EU, "NL"),
        ("vendorcentral.amazon.se", Region.EU, "SE"),
        ("vendorcentral.amazon.pl", Region.EU, "PL"),
        ("vendorcentral.amazon.com.be", Region.EU, "BE"),
        ("vendorcentral.amazon.com.tr", Region.EU, "TR"),
        ("vendorcentral.amazon.me", Region.EU, "AE SA EG"),
        # The reference lists both for India (UNCONFIRMED which is current): accept both.
        ("vendorcentral.amazon.in", Region.EU, "IN"),
        ("www.vendorcentral.in", Region.EU, "IN"),
        ("vendorcentral.amazon.co.jp", Region.FE, "JP"),
        ("vendorcentral.amazon.com.au", Region.FE, "AU"),
        ("vendorcentral.amazon.com.sg", Region.FE, "SG"),
    ],
)

CENTRAL_HOSTS: dict[str, CentralHost] = {h.host: h for h in _CENTRAL_HOSTS}

# The Seller Central the Appstore flow sends a seller of each region back to.
MAIN_SELLER_CENTRAL: dict[Region, str] = {
    Region.NA: "sellercentral.amazon.com",
    Region.EU: "sellercentral-europe.amazon.com",
    Region.FE: "sellercentral.amazon.co.jp",
}

LWA_HOST = "api.amazon.com"

# The SP-API's regional hosts (Sellers, Application Management; later the Reports API).
SPAPI_HOSTS: dict[str, Region] = {
    "sellingpartnerapi-na.amazon.com": Region.NA,
    "sellingpartnerapi-eu.amazon.com": Region.EU,
    "sellingpartnerapi-fe.amazon.com": Region.FE,
}


@dataclass(frozen=True)
class Marketplace:
    country: str
    name: str
    region: Region
    marketplace_id: str


_MARKETPLACE_ROWS = """
US United States NA ATVPDKIKX0DER
CA Canada NA A2EUQ1WTGCTBG2
MX Mexico NA A1AM78C64UM0Y8
BR Brazil NA A2Q3Y263D00KWC
UK United Kingdom EU A1F83G8C2ARO7P
DE Germany EU A1PA6795UKMFR9
FR France EU A13V1IB3VIYZZH
IT Italy EU APJ6JRA9NG5V4
ES Spain EU A1RKKUPIHCS9HS
NL Netherlands EU A1805IZSGTT6HS
SE Sweden EU A2NODRKZP88ZB9
PL Poland EU A1C3SOZRARQ6R3
BE Belgium EU AMEN7PMS3EDWL
IE Ireland EU A28R8C7NBKEWEA
TR Turkey EU A33AVAJ2PDY3EV
AE United Arab Emirates EU A2VIGQ35RCS4UG
SA Saudi Arabia EU A17E79C6D8DWNP
EG Egypt EU ARBP9OOSHTCHU
IN India EU A21TJRUUN4KGV
ZA South Africa EU AE08WJ6YKNBMC
JP Japan FE A1VC38T7YXB528
AU Australia FE A39IBJ37TRP1C6
SG Singapore FE A19VAU5U5O7RUS
"""


def _marketplaces() -> dict[str, Marketplace]:
    out: dict[str, Marketplace] = {}
    for line in _MARKETPLACE_ROWS.strip().splitlines():
        country, *name, region, marketplace_id = line.split()
        out[country] = Marketplace(country, " ".join(name), Region(region), marketplace_id)
    return out


MARKETPLACES: dict[str, Marketplace] = _marketplaces()
MARKETPLACES_BY_ID: dict[str, Marketplace] = {m.marketplace_id: m for m in MARKETPLACES.values()}


def central_host(host: str) -> CentralHost | None:
    """The Seller/Vendor Central behind a host name (case-insensitive), or None."""
    return CENTRAL_HOSTS.get(host.lower())


@dataclass(frozen=True)
class Storefront:
    """What getMarketplaceParticipations says about a marketplace (sellers.json `Marketplace`)."""

    name: str
    country_code: str  # ISO 3166-1: GB for the UK marketplace
    currency: str
    language: str
    domain: str


STOREFRONTS: dict[str, Storefront] = {
    "US": Storefront("Amazon.com", "US", "USD", "en_US", "www.amazon.com"),
    "CA": Storefront("Amazon.ca", "CA", "CAD", "en_CA", "www.amazon.ca"),
    "MX": Storefront("Amazon.com.mx", "MX", "MXN", "es_MX", "www.amazon.com.mx"),
    "UK": Storefront("Amazon.co.uk", "GB", "GBP", "en_GB", "www.amazon.co.uk"),
    "DE": Storefront("Amazon.de", "DE", "EUR", "de_DE", "www.amazon.de"),
    "FR": Storefront("Amazon.fr", "FR", "EUR", "fr_FR", "www.amazon.fr"),
    "IT": Storefront("Amazon.it", "IT", "EUR", "it_IT", "www.amazon.it"),
    "ES": Storefront("Amazon.es", "ES", "EUR", "es_ES", "www.amazon.es"),
    "JP": Storefront("Amazon.co.jp", "JP", "JPY", "ja_JP", "www.amazon.co.jp"),
}

# The marketplaces every emulated seller of a region participates in: a plausible subset.
PARTICIPATIONS: dict[Region, tuple[str, ...]] = {
    Region.NA: ("US", "CA", "MX"),
    Region.EU: ("UK", "DE", "FR", "IT", "ES"),
    Region.FE: ("JP",),
}
