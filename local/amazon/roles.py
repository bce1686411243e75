"""Roles: what the application's registration and each seller's account allow (Seller Central, Developer
Profile "Roles"; Amazon's "Selling Partner API roles" page).

A call whose report type, schema or operation needs a role the application or the seller lacks gets a 403
`Unauthorized` with a token that is otherwise fine: the same code as a bad token, which is why the
product must not take every 403 for an expired token. Tests withhold a role for the whole application
(`seller=None`) or for one seller through `/_emulator/roles`.
"""

from __future__ import annotations

import threading

BRAND_ANALYTICS = "Brand Analytics"
INVENTORY_AND_ORDER_TRACKING = "Inventory and Order Tracking"
PRODUCT_LISTING = "Product Listing"
AMAZON_FULFILLMENT = "Amazon Fulfillment"
FINANCE_AND_ACCOUNTING = "Finance and Accounting"
SELLING_PARTNER_INSIGHTS = "Selling Partner Insights"

ROLES = (BRAND_ANALYTICS, INVENTORY_AND_ORDER_TRACKING, PRODUCT_LISTING, AMAZON_FULFILLMENT,
         FINANCE_AND_ACCOUNTING, SELLING_PARTNER_INSIGHTS)

# The role each report type needs (Amazon's report type pages list it per type).
REPORT_TYPE_ROLES: dict[str, str] = {
    "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_LAST_UPDATE_GENERAL": INVENTORY_AND_ORDER_TRACKING,
    "GET_FLAT_FILE_ALL_ORDERS_DATA_BY_ORDER_DATE_GENERAL": INVENTORY_AND_ORDER_TRACKING,
    "GET_MERCHANT_LISTINGS_ALL_DATA": PRODUCT_LISTING,
    "GET_FBA_MYI_UNSUPPRESSED_INVENTORY_DATA": AMAZON_FULFILLMENT,
    "GET_FBA_FULFILLMENT_CUSTOMER_RETURNS_DATA": AMAZON_FULFILLMENT,
    "GET_SALES_AND_TRAFFIC_REPORT": BRAND_ANALYTICS,
    "GET_V2_SETTLEMENT_REPORT_DATA_FLAT_FILE_V2": FINANCE_AND_ACCOUNTING,
}


class RoleBook:
    """Withheld roles: (None, role) for the whole application, (seller, role) for one seller."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._withheld: set[tuple[str | None, str]] = set()

    def withhold(self, role: str, seller: str | None = None) -> None:
        self._check(role)
        with self._lock:
            self._withheld.add((seller, role))

    def restore(self, role: str, seller: str | None = None) -> None:
        self._check(role)
        with self._lock:
            self._withheld.discard((seller, role))

    def withheld(self, seller: str, role: str) -> bool:
        """True when the application or this seller lacks `role`."""
        with self._lock:
            return (None, role) in self._withheld or (seller, role) in self._withheld

    def report_type_withheld(self, seller: str, report_type: str) -> bool:
        role = REPORT_TYPE_ROLES.get(report_type)
        return role is not None and self.withheld(seller, role)

    def listed(self) -> list[dict[str, str | None]]:
        with self._lock:
            return [{"role": role, "selling_partner_id": seller}
                    for seller, role in sorted(self._withheld, key=lambda e: (e[1], e[0] or ""))]

    def clear(self) -> None:
        with self._lock:
            self._withheld.clear()

    @staticmethod
    def _check(role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
