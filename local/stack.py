"""The whole product on one machine: the AWS emulator with the template's resources, the Amazon
emulator, and the real handlers behind the local API gateway. Used by `serve`, `demo` and tests.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from local.amazon import AmazonEmulator
from local.aws import AwsEmulator, CreatedResources, create_resources
from local.functions import FunctionRuntime, function_specs, merged_environment
from local.gateway import AdminCredentials, Gateway, GatewayServer, routes_from
from local.iam import Authorizer, install, policy_set
from local.iam.guard import set_stack_authorizer
from local.poller import QueuePoller, mappings
from local.scheduler import schedules
from local.template import PURPOSE_TAG, REGION, STACK_NAME, load_template, repo_root, tag

log = logging.getLogger("local.stack")


@dataclass(frozen=True)
class StackOptions:
    host: str = "127.0.0.1"
    api_port: int = 0
    amazon_port: int = 0
    aws_port: int = 0
    template_file: Path | None = None  # a synthesized template instead of synthesizing
    # The functions log at WARNING and publish no metrics: for the demo, whose story is on stderr.
    quiet_functions: bool = False


def add_code_paths(root: Path) -> None:
    """The same imports as inside Lambda: functions/ (handler modules) and the shared layer."""
    for path in (root / "layers" / "shared" / "python", root / "functions", root):
        if str(path) not in sys.path:
            sys.path.insert(0, str(path))


# The queue Amazon's application notifications go to (Developer Console → notification preferences).
NOTIFICATIONS_PURPOSE = "notifications"


def register_notification_queue(amazon: AmazonEmulator, created: CreatedResources, sqs_endpoint: str) -> str | None:
    """Registers the template's `notifications` queue with the Amazon emulator; its URL, or None."""
    queue_url = created.queues.get(NOTIFICATIONS_PURPOSE)
    if queue_url:
        amazon.configure(notification_queue_url=queue_url, sqs_endpoint=sqs_endpoint)
        log.info("Amazon emulator sends application notifications to the %s queue", NOTIFICATIONS_PURPOSE)
    return queue_url


# The queue REPORT_PROCESSING_FINISHED goes to (a Notifications API subscription on Amazon's side).
REPORT_NOTIFICATIONS_PURPOSE = "report_notifications"


def register_report_notification_queue(
    amazon: AmazonEmulator, created: CreatedResources, sqs_endpoint: str
) -> str | None:
    """Registers the template's `report_notifications` queue, if it has one; its URL, or None."""
    queue_url = created.queues.get(REPORT_NOTIFICATIONS_PURPOSE)
    if queue_url:
        amazon.configure(report_notification_queue_url=queue_url, sqs_endpoint=sqs_endpoint)
        log.info("Amazon emulator sends REPORT_PROCESSING_FINISHED to the %s queue", REPORT_NOTIFICATIONS_PURPOSE)
    return queue_url


class _StackAuthorizer:
    """Forgets the stack's authorizer when the stack stops, saying what the guard cost."""

    def __init__(self, authorizer: Authorizer) -> None:
        self.authorizer = authorizer

    def stop(self) -> None:
        set_stack_authorizer(None)
        checked, seconds = self.authorizer.checked, self.authorizer.seconds
        log.info("IAM guard: %d calls checked in %.2f s (%.0f µs a call, look-ups included)",
                 checked, seconds, seconds / checked * 1e6 if checked else 0)


class LocalStack:
    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self._stoppers: list[Any] = []
        self.api_url = self.amazon_url = self.aws_url = ""
        self.resources: dict[str, dict[str, str]] = {}
        self.authorizer: Authorizer | None = None

    def start(self) -> LocalStack:
        started = time.monotonic()
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        log.info("local stack ready in %.1f s", time.monotonic() - started)
        return self

    def _start(self) -> None:
        root = repo_root()
        add_code_paths(root)
        # The shared layer is importable only once its path is set, as in Lambda.
        from seller_insights.clock import OffsetClock, set_clock  # noqa: PLC0415

        opts = self.options
        template = load_template(root, opts.template_file)

        aws = AwsEmulator(opts.host, opts.aws_port)
        self.aws_url = aws.start()
        self._stoppers.append(aws)

        # Bound now, served last: the Amazon emulator and the functions need the API's URL.
        server = GatewayServer(opts.host, opts.api_port)
        self._stoppers.append(server)
        self.api_url = server.url

        self.amazon = AmazonEmulator(
            redirect_uris=[f"{self.api_url}/callback"],
            login_uri=f"{self.api_url}/login",
            draft=True,
            host=opts.host,
            port=opts.amazon_port,
        )
        self.amazon.start()
        self._stoppers.append(self.amazon)
        self.amazon_url = self.amazon.base_url

        created = create_resources(template, self.amazon.credentials(), self.api_url)
        self.created = created
        self.template = template
        self.resources = created.public()
        register_notification_queue(self.amazon, created, self.aws_url)
        register_report_notification_queue(self.amazon, created, self.aws_url)

        specs = function_specs(template, created.resolver)
        os.environ.update(
            merged_environment(
                specs,
                {
                    "STAGE": "local",
                    "AMAZON_ENDPOINT_OVERRIDE": self.amazon_url,
                    "REDIRECT_URI": f"{self.api_url}/callback",
                    # X-Ray has no daemon here; Powertools' Tracer would only warn.
                    "POWERTOOLS_TRACE_DISABLED": "true",
                    **({"LOG_LEVEL": "WARNING", "POWERTOOLS_METRICS_DISABLED": "true"}
                       if opts.quiet_functions else {}),
                },
            )
        )
        self.clock = OffsetClock()
        set_clock(self.clock)
        self.authorizer = self._iam(template, created)
        runtime = FunctionRuntime(specs, self.authorizer)
        self.runtime = runtime
        self.admin = AdminCredentials.generate()
        queue_purposes = dict(created.queues)
        self.poller = QueuePoller(mappings(template, created), runtime, queue_purposes, self.clock.now)
        self.gateway = Gateway(
            routes=routes_from(template),
            runtime=runtime,
            schedules=schedules(template),
            poller=self.poller,
            clock=self.clock,
            admin=self.admin,
            amazon_url=self.amazon_url,
            queue_urls=created.queue_urls,
            rule_names=created.rule_names,
        )
        self.gateway.describe = self.describe
        server.serve(self.gateway)
        log.info("local API on %s (routes: %s)", self.api_url, ", ".join(r.key for r in self.gateway.routes))

    def _iam(self, template: dict[str, Any], created: Any) -> Authorizer | None:
        """The local IAM guard over the template's policies (docs/local-stack.md, "Permissions")."""
        if not install():
            return None
        authorizer = Authorizer(policy_set(template, created.resolver))
        set_stack_authorizer(authorizer)
        self._stoppers.append(_StackAuthorizer(authorizer))
        log.info("IAM enforced: every AWS call of a function is checked against its role's policies")
        return authorizer

    def info(self) -> dict[str, Any]:
        """The one JSON line of `serve` (docs/local-stack.md)."""
        return {
            "api": self.api_url,
            "amazon": self.amazon_url,
            "aws": self.aws_url,
            "region": REGION,
            "admin": {
                "access_key_id": self.admin.access_key_id,
                "secret_access_key": self.admin.secret_access_key,
            },
            "resources": self.resources,
            "iam": "enforced" if self.authorizer is not None else "off",
        }

    def describe(self) -> dict[str, Any]:
        """`GET /_local/stack`: the JSON line, the stack's name and its inventory: every template resource
        that exists here, with type, physical id (what `Ref` gives), ARN and purpose tag."""
        resolver = self.created.resolver
        inventory = []
        for logical_id, resource in self.template["Resources"].items():
            physical_id = resolver.refs.get(logical_id)
            if physical_id is None:
                continue
            inventory.append({"logical_id": logical_id, "type": resource.get("Type", ""), "physical_id": physical_id,
                              "purpose": tag(resource, PURPOSE_TAG), "arn": resolver.attrs.get((logical_id, "Arn"))})
        return {**self.info(), "stack": STACK_NAME, "inventory": inventory}

    def stop(self) -> None:
        while self._stoppers:
            stoppable = self._stoppers.pop()
            try:
                stoppable.stop()
            except Exception:
                log.exception("stopping %s failed", type(stoppable).__name__)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
