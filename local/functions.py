"""The Lambda functions of the template, run in this process like warm Lambda containers."""

from __future__ import annotations

import contextlib
import importlib
import logging
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from local.template import ACCOUNT_ID, REGION, Resolver, Template, TemplateError, props, resources

if TYPE_CHECKING:
    from local.iam import Authorizer

log = logging.getLogger("local.functions")

FUNCTION_TYPE = "AWS::Lambda::Function"
# Lambda sets it per function; one process cannot, so the last function's value wins in the environment,
# and each invocation logs under its own function's value instead (FunctionRuntime.invoke).
SERVICE_VARIABLE = "POWERTOOLS_SERVICE_NAME"
_PER_FUNCTION_VARIABLES = frozenset({SERVICE_VARIABLE})

Handler = Callable[[Any, Any], Any]


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    name: str
    handler: str  # "oauth_callback.handler.lambda_handler"
    environment: dict[str, str]
    timeout_seconds: int
    memory_mb: int

    @property
    def arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.name}"


def function_specs(template: Template, resolver: Resolver) -> dict[str, FunctionSpec]:
    specs = {}
    for logical_id, resource in resources(template, FUNCTION_TYPE):
        p = props(resource)
        if not isinstance(p.get("Handler"), str):
            raise TemplateError(f"{logical_id}: a function without a Handler string")
        variables = (p.get("Environment") or {}).get("Variables") or {}
        environment = {
            name: resolver.resolve(value, where=f"{logical_id} environment {name}") for name, value in variables.items()
        }
        specs[logical_id] = FunctionSpec(
            logical_id=logical_id,
            name=resolver.refs[logical_id],
            handler=p["Handler"],
            environment=environment,
            timeout_seconds=int(p.get("Timeout", 3)),
            memory_mb=int(p.get("MemorySize", 128)),
        )
    return specs


def merged_environment(specs: dict[str, FunctionSpec], overrides: dict[str, str]) -> dict[str, str]:
    """One process environment for every function; two functions disagreeing on a value is an error."""
    merged: dict[str, str] = {}
    owner: dict[str, str] = {}
    for spec in specs.values():
        for name, value in spec.environment.items():
            if name in merged and merged[name] != value and name not in _PER_FUNCTION_VARIABLES | overrides.keys():
                raise TemplateError(
                    f"{owner[name]} and {spec.logical_id} set {name} to different values; the local stack runs "
                    "every function in one process and needs one value"
                )
            merged[name] = value
            owner[name] = spec.logical_id
    return {**merged, **overrides}


class LambdaContext:
    """What Lambda passes as `context` (the attributes Powertools reads)."""

    def __init__(self, spec: FunctionSpec) -> None:
        self.function_name = spec.name
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec.arn
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.name}"
        self.log_stream_name = f"local/[$LATEST]{uuid.uuid4().hex}"
        self._deadline = time.monotonic() + spec.timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


class FunctionRuntime:
    """Imports each handler on its first invocation and keeps it, like a warm container."""

    def __init__(self, specs: dict[str, FunctionSpec], authorizer: Authorizer | None = None) -> None:
        self.specs = specs
        # The local IAM guard: each invocation acts as its function's role (None: not evaluated).
        self.authorizer = authorizer
        self._handlers: dict[str, Handler] = {}
        self._lock = threading.Lock()
        # One warm container per function: it serves one invocation at a time, as in Lambda. (Powertools'
        # Logger and Metrics are per-process singletons that assume exactly that.)
        self._containers = {logical_id: threading.Lock() for logical_id in specs}

    def invoke(self, logical_id: str, event: Any) -> Any:
        spec = self.specs[logical_id]
        handler = self._handler(spec)
        started = time.monotonic()
        try:
            with self._containers[logical_id], self.acting_as(logical_id), self.logging_as(logical_id):
                return handler(event, LambdaContext(spec))
        finally:
            log.info("invoked %s in %.0f ms", spec.logical_id, (time.monotonic() - started) * 1000)

    def acting_as(self, logical_id: str) -> contextlib.AbstractContextManager[None]:
        """Every AWS call in this context is authorized as the function's role (Lambda's session name is
        the function's name); also what its event source mapping polls with."""
        if self.authorizer is None:
            return contextlib.nullcontext()
        return self.authorizer.acting_as_function(logical_id, self.specs[logical_id].name)

    def logging_as(self, logical_id: str) -> contextlib.AbstractContextManager[None]:
        """Records logged in this context carry the function's service, as in its own Lambda process."""
        # Imported here: the shared layer is on sys.path only once the stack added the code paths.
        from seller_insights.observability import logging_as  # noqa: PLC0415

        service = self.specs[logical_id].environment.get(SERVICE_VARIABLE)
        return contextlib.nullcontext() if service is None else logging_as(service)

    def _handler(self, spec: FunctionSpec) -> Handler:
        with self._lock:
            if spec.logical_id not in self._handlers:
                module_name, _, attribute = spec.handler.rpartition(".")
                module = importlib.import_module(module_name)
                self._handlers[spec.logical_id] = getattr(module, attribute)
            return self._handlers[spec.logical_id]
