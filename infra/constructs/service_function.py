"""ServiceFunction: the only place a Lambda function is created.

Every function gets the same shape (docs/internal-contracts.md, architecture §4): Python 3.13 on
arm64, the ``functions/`` folder as code with every other duty left out, the shared and deps
layers, an explicit log group with the stage's retention, JSON logging, active X-Ray tracing,
explicit memory and timeout, the common environment, and its own role without managed policies.

Every deployment publishes a version of each function and moves its ``live`` alias to it; every trigger
(SQS event sources, schedule targets, API integrations and their invoke permissions) invokes the alias,
never the bare function, so ``make rollback`` (ops/rollback.py) can point a function back to its previous
version without touching a trigger.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import jsii
from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from aws_cdk.aws_apigatewayv2_integrations import HttpLambdaIntegration
from constructs import Construct, IConstruct

from infra import REPO_ROOT
from infra.bytecode import compiled_copy
from infra.config import StageConfig
from infra.constructs import checkov_skip
from infra.constructs.log_groups import stage_log_group
from infra.nag import acknowledge

FUNCTIONS_DIR = REPO_ROOT / "functions"
SHARED_LAYER_DIR = REPO_ROOT / "layers" / "shared"
DEPS_LAYER_DIR = REPO_ROOT / "build" / "layers" / "deps"
METRICS_NAMESPACE = "SellerInsights"
RUNTIME = lambda_.Runtime.PYTHON_3_13
ARCHITECTURE = lambda_.Architecture.ARM_64
# The alias every trigger invokes; ops/rollback.py moves it between published versions.
LIVE_ALIAS = "live"


class AssetMissingError(RuntimeError):
    """A folder that synthesis packages into an asset does not exist."""


def _require_dir(path: Path, hint: str) -> Path:
    if not path.is_dir():
        shown = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path
        raise AssetMissingError(f"{shown} is missing: {hint}")
    return path


class FunctionLayers(Construct):
    """The shared-code layer and the third-party layer, created once per stack."""

    _ID = "FunctionLayers"

    def __init__(self, scope: Construct, construct_id: str) -> None:
        super().__init__(scope, construct_id)
        _require_dir(SHARED_LAYER_DIR / "python", "the shared layer must hold python/seller_insights")
        _require_dir(
            DEPS_LAYER_DIR / "python",
            "build the third-party layer first with `make layer` (python -m layers.deps.build)",
        )
        # Both ship their .pyc, compiled for the same Python 3.13 as the runtime (infra/bytecode.py).
        self.shared = self._layer(
            "Shared",
            compiled_copy(SHARED_LAYER_DIR, "shared-layer"),
            "seller_insights: code every function shares",
        )
        self.deps = self._layer(
            "Deps",
            DEPS_LAYER_DIR,
            "third-party packages of requirements.txt (manylinux2014_aarch64, CPython 3.13)",
        )

    def _layer(self, construct_id: str, path: Path, description: str) -> lambda_.LayerVersion:
        return lambda_.LayerVersion(
            self,
            construct_id,
            code=lambda_.Code.from_asset(str(path)),
            description=description,
            compatible_runtimes=[RUNTIME],
            compatible_architectures=[ARCHITECTURE],
        )

    @classmethod
    def of(cls, scope: IConstruct) -> FunctionLayers:
        stack = Stack.of(scope)
        existing = stack.node.try_find_child(cls._ID)
        if isinstance(existing, FunctionLayers):
            return existing
        return cls(stack, cls._ID)

    @property
    def all(self) -> list[lambda_.ILayerVersion]:
        return [self.shared, self.deps]


def function_code(duty: str) -> lambda_.Code:
    """The ``functions/`` folder, with its .pyc, with every other duty (and any other top-level entry) excluded."""
    _require_dir(FUNCTIONS_DIR / duty, f"no package functions/{duty}/ for the duty {duty!r}")
    code = compiled_copy(FUNCTIONS_DIR, "functions")
    others = sorted(entry.name for entry in code.iterdir() if entry.name != duty)
    return lambda_.Code.from_asset(str(code), exclude=others)


def common_environment(duty: str, config: StageConfig) -> dict[str, str]:
    return {
        "STAGE": config.name,
        "POWERTOOLS_SERVICE_NAME": duty,
        "POWERTOOLS_METRICS_NAMESPACE": METRICS_NAMESPACE,
        "LOG_LEVEL": "INFO",
    }


@jsii.implements(iam.IGrantable)
class ServiceFunction(Construct):
    """A duty's Lambda function with its log group and execution role; grants go to its role."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        duty: str,
        config: StageConfig,
        description: str,
        environment: Mapping[str, str] | None = None,
        memory_mb: int | None = None,
        timeout: Duration | None = None,
        reserved_concurrency: int | None = None,
        dead_letter_queue: sqs.IQueue | None = None,
        recursive_loop: lambda_.RecursiveLoop | None = None,
    ) -> None:
        """``dead_letter_queue``: where Lambda puts asynchronous events that failed every retry.
        ``recursive_loop``: ALLOW only for a function that re-queues onto its own trigger by design, with a
        bound of its own (the caller says which, and why); None keeps Lambda's default (Terminate)."""
        super().__init__(scope, construct_id)
        self.duty = duty
        self._config = config
        env = common_environment(duty, config)
        clashes = sorted(set(env) & set(environment or {}))
        if clashes:
            raise ValueError(f"ServiceFunction {duty!r} may not override common variables: {', '.join(clashes)}")
        env.update(environment or {})

        self.log_group = stage_log_group(self, "LogGroup", config)
        # An own role instead of AWSLambdaBasicExecutionRole: write access to this log group only.
        self.role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Execution role of the {duty} function",
        )
        self.log_group.grant_write(self.role)

        self.function = lambda_.Function(
            self,
            "Function",
            description=description,
            runtime=RUNTIME,
            architecture=ARCHITECTURE,
            handler=f"{duty}.handler.lambda_handler",
            code=function_code(duty),
            layers=FunctionLayers.of(self).all,
            role=self.role,
            environment=env,
            memory_size=memory_mb or config.function_memory_mb,
            timeout=timeout or Duration.seconds(config.function_timeout_seconds),
            reserved_concurrent_executions=reserved_concurrency or config.reserved_concurrency,
            dead_letter_queue=dead_letter_queue,
            recursive_loop=recursive_loop,
            tracing=lambda_.Tracing.ACTIVE,
            log_group=self.log_group,
            logging_format=lambda_.LoggingFormat.JSON,
            application_log_level_v2=lambda_.ApplicationLogLevel.INFO,
            system_log_level_v2=lambda_.SystemLogLevel.WARN,
            # Keep the version a deployment replaces (CloudFormation would delete it): make rollback goes back
            # to it. Versions go with the function when the stack is deleted.
            current_version_options=lambda_.VersionOptions(removal_policy=RemovalPolicy.RETAIN),
        )
        # A version per deployment whose code or configuration changed (old ones retained, above).
        self.live = lambda_.Alias(self, "LiveAlias", alias_name=LIVE_ALIAS, version=self.function.current_version,
                                  description=f"What every trigger of the {duty} function invokes")
        if dead_letter_queue is not None and dead_letter_queue.encryption_master_key is not None:
            # Function grants only sqs:SendMessage; sending to an SSE-KMS queue also needs its key.
            iam.Grant.add_to_principal(
                grantee=self.role,
                actions=["kms:GenerateDataKey", "kms:Decrypt"],
                resource_arns=[dead_letter_queue.encryption_master_key.key_arn],
                conditions={"StringEquals": {"kms:ViaService": f"sqs.{Stack.of(self).region}.amazonaws.com"}},
            )
        runtime_reason = (
            "Python 3.13 on purpose: the deps layer's wheels and .pyc files are built for CPython 3.13 "
            "by the repository's interpreter (.python-version); a runtime upgrade moves toolchain, layer "
            "and functions together."
        )
        acknowledge(self.function, "AwsSolutions-L1", runtime_reason)
        acknowledge(self.function, "Serverless-LambdaLatestVersion", runtime_reason)
        acknowledge(
            self.role,
            "AwsSolutions-IAM5[Resource::*]",
            "X-Ray active tracing needs xray:PutTraceSegments and xray:PutTelemetryRecords, "
            "which support no resource-level permissions (AWS requires Resource '*').",
        )

    def add_environment(self, name: str, value: str) -> None:
        """One more variable, for values that exist only after the function (e.g. a queue sized from its timeout)."""
        if name in common_environment(self.duty, self._config):
            raise ValueError(f"ServiceFunction {self.duty!r} may not override the common variable {name}")
        self.function.add_environment(name, value)

    def acknowledge_synchronous_only(self, invoker: str) -> None:
        """For functions that are never invoked asynchronously, where a DLQ would never be used."""
        acknowledge(
            self.function,
            "Serverless-LambdaDLQ",
            f"Invoked only synchronously by {invoker}: the caller receives the error, Lambda never "
            "queues an event that could fail later, so a dead-letter target would stay empty.",
        )
        checkov_skip(
            self.function, "CKV_AWS_116", f"invoked only synchronously by {invoker}; no async events to dead-letter"
        )

    def http_integration(self, construct_id: str) -> HttpLambdaIntegration:
        """An HTTP API integration (payload 2.0) that invokes the live alias; its permission names the alias."""
        return HttpLambdaIntegration(
            construct_id, self.live, payload_format_version=apigwv2.PayloadFormatVersion.VERSION_2_0
        )

    @property
    def grant_principal(self) -> iam.IPrincipal:
        return self.role
