"""Integration tests invoke handlers as their function's role, as in AWS.

The synthesized template's policies (local.template.load_template, cached in build/local/) are bound to
the resources the test made through the function's environment at invocation time: each variable whose
template value is a Ref or Fn::GetAtt of a logical id names that resource (local.iam.bind_environment).
Calls a test makes itself, outside `acting_as`, are not evaluated.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

from local.iam import Authorizer, PolicySet, bind_environment, policy_set
from local.iam.policies import function_for_handler
from local.template import Resolver, Template, load_template, repo_root

_policy_sets: dict[tuple[Any, ...], PolicySet] = {}


@functools.cache
def template() -> Template:
    return load_template(repo_root())


def function_id(duty: str) -> str:
    """The template's function whose handler is `{duty}.handler.lambda_handler`."""
    return function_for_handler(policies_for_environment(None), f"{duty}.handler.lambda_handler")


def policies_for_environment(function: str | None) -> PolicySet:
    """The template's policies bound through `function`'s environment (None: nothing bound)."""
    resolver = bind_environment(template(), function, os.environ) if function else None
    key = (function, tuple(sorted(resolver.refs.items())), tuple(sorted(resolver.attrs.items()))) if resolver else ()
    if key not in _policy_sets:
        _policy_sets[key] = policy_set(template(), resolver or Resolver(template()))
    return _policy_sets[key]


@contextlib.contextmanager
def acting_as(duty: str) -> Iterator[Authorizer]:
    """Every AWS call inside is authorized as `duty`'s role (e.g. "retention_sweeper"). A fresh
    authorizer per invocation: its look-ups of the test's resources (encryption keys) are not shared
    between tests that reuse resource names."""
    function = function_id(duty)
    authorizer = Authorizer(policies_for_environment(function))
    with authorizer.acting_as_function(function, session=duty):
        yield authorizer
