"""The admin routes, declared once: the handler registers them, the audit names each request after its route,
and tests prove the HTTP API's route keys (infra/constructs/data_requests.py) and the ops CLI's calls are the
same. Data only: no AWS client, no Powertools.
"""

from __future__ import annotations

from dataclasses import dataclass

from seller_insights.data_rights import AuditType

SELLER_PATH = "/admin/sellers/{seller_id}"
SELLER_PREFIX = "/admin/sellers/"


@dataclass(frozen=True)
class AdminRoute:
    method: str
    suffix: str  # the path after the seller id: "", "/export", "/export/{request_id}", ...
    request_type: AuditType  # what the audit record calls a request of this route
    metric: str  # counted once per request done

    @property
    def path(self) -> str:
        """The route's path as API Gateway writes it (`/admin/sellers/{seller_id}/export`)."""
        return SELLER_PATH + self.suffix

    @property
    def key(self) -> str:
        """The HTTP API's route key (`POST /admin/sellers/{seller_id}/export`)."""
        return f"{self.method} {self.path}"


ROUTES: tuple[AdminRoute, ...] = (
    AdminRoute("GET", "", AuditType.ACCESS, "DataRequestAccess"),
    AdminRoute("PATCH", "", AuditType.CORRECTION, "DataRequestCorrection"),
    AdminRoute("POST", "/export", AuditType.EXPORT, "DataRequestExport"),
    AdminRoute("GET", "/export/{request_id}", AuditType.EXPORT_STATUS, "DataRequestExportStatus"),
    AdminRoute("POST", "/deletion", AuditType.DELETION, "DataRequestDeletion"),
    AdminRoute("DELETE", "/deletion", AuditType.DELETION_ROLLBACK, "DataRequestDeletionRollback"),
    AdminRoute("POST", "/tokens/removal", AuditType.TOKEN_REMOVAL, "DataRequestTokenRemoval"),
    AdminRoute("GET", "/key", AuditType.SELLER_KEY, "DataRequestSellerKey"),
    AdminRoute("POST", "/backfill", AuditType.BACKFILL, "DataRequestBackfill"),
)
SUFFIXES: tuple[str, ...] = tuple(dict.fromkeys(route.suffix for route in ROUTES))


def route_suffix(tail: str) -> tuple[str, dict[str, str]]:
    """The declared suffix a concrete one matches (`/export/abc` -> `/export/{request_id}`) with the values
    of its parameters; a suffix no route declares comes back as it is."""
    parts = tail.split("/")
    for suffix in SUFFIXES:
        pattern = suffix.split("/")
        if len(pattern) != len(parts):
            continue
        values: dict[str, str] = {}
        for want, got in zip(pattern, parts, strict=True):
            if want.startswith("{") and want.endswith("}") and got:
                values[want[1:-1]] = got
            elif want != got:
                break
        else:
            return suffix, values
    return tail, {}


def methods_of(suffix: str) -> list[str]:
    """The methods a path answers, sorted (the 405 answer's `Allow`)."""
    return sorted(route.method for route in ROUTES if route.suffix == suffix)


def request_type(suffix: str, method: str) -> AuditType:
    """The audit type of a request: its route's; for a method the path does not answer, the path's first
    route's (a PUT on `/deletion` is a refused deletion); for no such path, an access."""
    same_path = [route for route in ROUTES if route.suffix == suffix]
    exact = next((route for route in same_path if route.method == method), None)
    chosen = exact or (same_path[0] if same_path else None)
    return chosen.request_type if chosen else AuditType.ACCESS
