"""One construct per duty; ``infra/stack.py`` composes them."""

from aws_cdk import CfnElement, CfnResource, Stack, Tags
from constructs import IConstruct

PURPOSE_TAG = "seller-insights:purpose"
# Purposes by construct address: tags are applied only at synthesis, and Observability needs a queue's
# purpose while the stack is composed (its oldest-message-age threshold).
_PURPOSES: dict[str, str] = {}


def tag_purpose(construct: IConstruct, purpose: str) -> None:
    """Mark a stateful resource with its contract purpose (the local stack finds it by this tag)."""
    Tags.of(construct).add(PURPOSE_TAG, purpose)
    _PURPOSES[construct.node.addr] = purpose


def purpose_of(construct: IConstruct) -> str | None:
    """The purpose `tag_purpose` gave the construct (None: none)."""
    return _PURPOSES.get(construct.node.addr)


def checkov_skip(construct: IConstruct, check_id: str, comment: str) -> None:
    """Skip one checkov check on this construct's CloudFormation resource only, with the reason."""
    resource = construct if isinstance(construct, CfnResource) else construct.node.default_child
    if not isinstance(resource, CfnResource):
        raise TypeError(f"{construct.node.path} has no CloudFormation resource to annotate")
    metadata = resource.get_metadata("checkov") or {"skip": []}
    metadata["skip"].append({"id": check_id, "comment": comment})
    resource.add_metadata("checkov", metadata)


def logical_ref(resource: object) -> str:
    """The token cdk-nag uses for a resource in IAM5 finding ids: its logical id as synthesized."""
    if not isinstance(resource, CfnElement):
        raise TypeError(f"{resource!r} is not a CloudFormation element")
    return Stack.of(resource).resolve(resource.logical_id)  # type: ignore[no-any-return]
