"""Every error the product raises on purpose is a SellerInsightsError, defined in seller_insights.errors."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from seller_insights import errors
from seller_insights.errors import SellerInsightsError

ROOT = Path(__file__).resolve().parents[2]

def _product_modules() -> list[str]:
    names = [f"seller_insights.{path.stem}"
             for path in sorted((ROOT / "layers/shared/python/seller_insights").glob("*.py"))
             if path.stem != "__init__"]
    for path in sorted((ROOT / "functions").glob("*/*.py")):
        if path.stem != "__init__":
            names.append(f"{path.parent.name}.{path.stem}")
    return names


def _exceptions_defined_in(module_name: str) -> list[type[BaseException]]:
    module = importlib.import_module(module_name)
    return [value for value in vars(module).values()
            if inspect.isclass(value) and issubclass(value, BaseException) and value.__module__ == module_name]


def test_every_product_exception_is_a_seller_insights_error_defined_in_errors() -> None:
    stray = []
    for module_name in _product_modules():
        for cls in _exceptions_defined_in(module_name):
            if issubclass(cls, SellerInsightsError) and module_name == errors.__name__:
                continue
            stray.append(f"{module_name}.{cls.__qualname__}")
    assert stray == []


def test_the_scan_covers_the_layer_and_every_function() -> None:
    modules = _product_modules()
    assert {"seller_insights.errors", "seller_insights.data_rights", "token_refresher.models",
            "report_fetcher.planner", "retention_sweeper.service", "data_requests.service"} <= set(modules)
    found = {cls.__name__ for cls in _exceptions_defined_in("seller_insights.errors")}
    assert {"ConcurrentChange", "PlanningFailed", "MalformedNotification", "EventPublishFailed"} <= found


@pytest.mark.parametrize(("error", "status"), [
    (errors.ConcurrentChange(), 409),
    (errors.NoDeletionPending(), 409),
    (errors.PurgeDatePassed("2026-01-01T00:00:00Z"), 409),
    (errors.DeletionPending("2026-01-01T00:00:00Z"), 409),
    (errors.ConnectionInProgress(), 409),
    (errors.IdentityUnconfirmed(), 503),
    (errors.StateExpired(), 400),
    (errors.UnknownMarketplace("XX"), 400),
    (errors.PurgeIncomplete("2 object versions survived deletion"), None),
    (errors.RetryLater("throttled"), None),
])
def test_an_error_carries_the_status_our_api_answers_with_it(error: SellerInsightsError, status: int | None) -> None:
    assert error.response_status == status


def test_an_outside_services_status_does_not_become_ours() -> None:
    refused = errors.LwaUnavailable("server_error", http_status=500)
    assert refused.http_status == 500
    assert refused.response_status is None
