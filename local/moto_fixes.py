"""Where moto differs from AWS in ways the product depends on, made to behave like AWS.

DynamoDB applies a conditional write atomically: two writers racing on one item never both pass their
condition. moto checks the condition and then writes, without a lock, so under concurrent requests
both can pass (measured: four parallel callbacks with one state, two or three got through the
conditional delete in most runs). The product's single-use state,
one-exchange code claims and token refresh lease all rely on the AWS behaviour, so the local stack and
the tests serialise moto's DynamoDB item writes with one lock.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.sqs import models as sqs_models

_WRITES = ("put_item", "update_item", "delete_item", "transact_write_items", "get_item")
_lock = threading.RLock()
_applied = False


def _serialised(method: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        with _lock:
            return method(*args, **kwargs)

    return call


def make_dynamodb_writes_atomic() -> None:
    """Idempotent; applies to every moto DynamoDB backend in this process (in-process or server)."""
    global _applied  # noqa: PLW0603 - a process-wide patch is applied once
    if _applied:
        return
    for name in _WRITES:
        setattr(DynamoDBBackend, name, _serialised(getattr(DynamoDBBackend, name)))
    _applied = True


def make_sqs_follow_the_product_clock() -> None:
    """moto counts SQS delays and visibility timeouts in real time, so moving the virtual clock (the
    demo's hour, the tests' fixed clock) would not make a delayed or in-flight message visible. Read
    SQS's time from the product clock instead, as AWS would if that were the time."""
    # Imported here: the shared layer is importable only once the local stack has set sys.path.
    from seller_insights import clock  # noqa: PLC0415

    if getattr(sqs_models, "_follows_product_clock", False):
        return
    sqs_models.unix_time = lambda *_: clock.now().timestamp()  # type: ignore[attr-defined]
    sqs_models.unix_time_millis = lambda *_: clock.now().timestamp() * 1000  # type: ignore[attr-defined]
    sqs_models._follows_product_clock = True  # type: ignore[attr-defined]
