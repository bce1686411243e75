"""The synthesized CloudFormation template of the `local` stage, and the little of CloudFormation's
intrinsic functions the local stack needs to read it.

Synthesis runs the CDK app in-process (about 20 s), so the template is cached under `build/local/`,
keyed by a hash of every file that can change it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger("local.template")

STACK_NAME = "SellerInsights-local"
PURPOSE_TAG = "seller-insights:purpose"
SCHEDULE_TAG = "seller-insights:schedule"
REGION = "us-east-1"
ACCOUNT_ID = "123456789012"  # moto's default account

Template = dict[str, Any]
Resource = dict[str, Any]

# What the template's identity depends on; anything else (tests, docs, local/) does not change it.
_SOURCES = ("infra", "functions", "layers/shared", "cdk.json", "app.py")


class TemplateError(RuntimeError):
    """The template cannot be synthesized or holds something the local stack cannot run."""


def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent


def source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for source in _SOURCES:
        path = root / source
        files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
        for file in files:
            if "__pycache__" in file.parts or file.suffix == ".pyc":
                continue
            digest.update(file.relative_to(root).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()[:16]


def load_template(root: Path, template_file: Path | None = None) -> Template:
    """The `local` stage's template: from `template_file` if given, else the cache, else synthesis."""
    if template_file is not None:
        return _read_json(template_file)
    cache = root / "build" / "local" / f"template-{source_digest(root)}.json"
    if cache.is_file():
        log.info("using the cached template %s", cache.relative_to(root))
        return _read_json(cache)
    log.info("synthesizing the CDK app for stage 'local' (this takes a while; later starts use a cache)")
    template = synthesize(root)
    cache.parent.mkdir(parents=True, exist_ok=True)
    for old in cache.parent.glob("template-*.json"):
        old.unlink()
    tmp = cache.with_suffix(".tmp")
    tmp.write_text(json.dumps(template, indent=1, sort_keys=True))
    tmp.replace(cache)
    return template


def synthesize(root: Path) -> Template:
    if not (root / "build" / "layers" / "deps").is_dir():
        raise TemplateError(
            "build/layers/deps is missing: build the dependency layer first "
            "(python -m layers.deps.build, or make layers)"
        )
    os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from infra.app import build_app  # noqa: PLC0415 - slow (jsii), and only on a cache miss
    except ImportError as exc:
        raise TemplateError(f"cannot import infra.app.build_app: {exc}") from exc
    # jsii relays the Node process's console output to sys.stdout; stdout belongs to the JSON line.
    with tempfile.TemporaryDirectory(prefix="si-local-synth-") as outdir, contextlib.redirect_stdout(sys.stderr):
        app = build_app("local", outdir=outdir)
        template: Template = app.synth().get_stack_by_name(STACK_NAME).template
    return template


def _read_json(path: Path) -> Template:
    data = json.loads(path.read_text())
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{path} is not a CloudFormation template")
    return data


# --- reading the template -------------------------------------------------------------------------


def resources(template: Template, *types: str) -> Iterator[tuple[str, Resource]]:
    for logical_id, resource in template["Resources"].items():
        if resource.get("Type") in types:
            yield logical_id, resource


def props(resource: Resource) -> dict[str, Any]:
    properties: dict[str, Any] = resource.get("Properties") or {}
    return properties


def tag(resource: Resource, key: str) -> str | None:
    """A tag's value, from the list form (most types) or the map form (SSM, some others)."""
    tags = props(resource).get("Tags")
    if isinstance(tags, Mapping):
        value = tags.get(key)
        return value if isinstance(value, str) else None
    for item in tags or []:
        if isinstance(item, Mapping) and item.get("Key") == key and isinstance(item.get("Value"), str):
            return str(item["Value"])
    # AWS::DynamoDB::GlobalTable keeps its tags on the replicas.
    for replica in props(resource).get("Replicas") or []:
        for item in replica.get("Tags") or []:
            if item.get("Key") == key and isinstance(item.get("Value"), str):
                return str(item["Value"])
    return None


def referenced_id(value: Any) -> str | None:
    """The logical id behind `{"Ref": X}` or `{"Fn::GetAtt": [X, ...]}`, else None."""
    if isinstance(value, Mapping) and len(value) == 1:
        if "Ref" in value and isinstance(value["Ref"], str):
            return str(value["Ref"])
        if "Fn::GetAtt" in value:
            target = value["Fn::GetAtt"]
            if isinstance(target, str):
                return target.split(".", 1)[0]
            if isinstance(target, list) and target and isinstance(target[0], str):
                return str(target[0])
    return None


def dependencies(value: Any) -> set[str]:
    """Every logical id that a property value refers to."""
    found: set[str] = set()
    if isinstance(value, Mapping):
        ref = referenced_id(value)
        if ref is not None and not ref.startswith("AWS::"):
            found.add(ref)
        for item in value.values():
            found |= dependencies(item)
    elif isinstance(value, list):
        for item in value:
            found |= dependencies(item)
    return found


FUNCTION_TYPE = "AWS::Lambda::Function"
ALIAS_TYPE = "AWS::Lambda::Alias"
VERSION_TYPE = "AWS::Lambda::Version"


def invoked_function(template: Template, value: Any) -> str | None:
    """The function a trigger's value (an event source's FunctionName, a rule target's Arn, an integration's
    IntegrationUri) invokes: the function it names, or the one behind the alias or version it names. Deployed
    triggers invoke each function's `live` alias; locally there is one warm container per function, whatever
    its version. None unless exactly one function is meant."""
    found = {function for logical_id in dependencies(value) if (function := _function_behind(template, logical_id))}
    return found.pop() if len(found) == 1 else None


def _function_behind(template: Template, logical_id: str) -> str | None:
    resource = template["Resources"].get(logical_id) or {}
    if resource.get("Type") == FUNCTION_TYPE:
        return logical_id
    if resource.get("Type") in (ALIAS_TYPE, VERSION_TYPE):
        function_id = referenced_id(props(resource).get("FunctionName"))
        if function_id is not None and function_id != logical_id:
            return _function_behind(template, function_id)
    return None


class Resolver:
    """Turns intrinsic-function values into strings, from the physical ids of created resources."""

    def __init__(self, template: Template) -> None:
        self._template = template
        self.refs: dict[str, str] = {}
        self.attrs: dict[tuple[str, str], str] = {}

    def record(self, logical_id: str, ref: str, arn: str | None = None) -> None:
        self.refs[logical_id] = ref
        if arn is not None:
            self.attrs[(logical_id, "Arn")] = arn

    def resolve(self, value: Any, where: str = "template") -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "true" if value else "false"
        if isinstance(value, int | float):
            return str(value)
        if isinstance(value, Mapping) and len(value) == 1:
            ((name, arg),) = value.items()
            if name == "Ref":
                return self._ref(str(arg), where)
            if name == "Fn::GetAtt":
                logical_id, attr = arg.split(".", 1) if isinstance(arg, str) else arg
                return self._get_att(logical_id, attr, where)
            if name == "Fn::Join" and isinstance(arg, list) and len(arg) == 2:
                separator, parts = arg
                return str(separator).join(self.resolve(part, where) for part in parts)
            raise TemplateError(f"{where}: the local stack does not support the intrinsic {name}")
        raise TemplateError(f"{where}: cannot resolve {json.dumps(value)[:200]}")

    def _ref(self, logical_id: str, where: str) -> str:
        pseudo = {
            "AWS::Region": REGION,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": STACK_NAME,
        }
        if logical_id in pseudo:
            return pseudo[logical_id]
        if logical_id in self.refs:
            return self.refs[logical_id]
        raise TemplateError(
            f"{where}: Ref to {logical_id} ({self._type(logical_id)}), which the local stack does not create"
        )

    def _get_att(self, logical_id: str, attr: str, where: str) -> str:
        if (logical_id, attr) in self.attrs:
            return self.attrs[(logical_id, attr)]
        raise TemplateError(
            f"{where}: Fn::GetAtt {logical_id}.{attr} ({self._type(logical_id)}) is not available locally"
        )

    def _type(self, logical_id: str) -> str:
        resource = self._template["Resources"].get(logical_id)
        return str(resource.get("Type")) if resource else "not in the template"


# --- roles ----------------------------------------------------------------------------------------

ROLE_TYPE = "AWS::IAM::Role"


def role_name(logical_id: str) -> str:
    """The deterministic name the local stack gives a role of the template (IAM allows 64 characters)."""
    return f"si-local-{logical_id}"[:64]


def record_roles(template: Template, resolver: Resolver) -> None:
    """Names and ARNs for every role, so that policies naming a role (a key policy's principal, an
    `aws:PrincipalArn` condition) resolve to the principal the local IAM guard acts as."""
    for logical_id, _ in resources(template, ROLE_TYPE):
        name = role_name(logical_id)
        resolver.record(logical_id, name, f"arn:aws:iam::{ACCOUNT_ID}:role/{name}")
