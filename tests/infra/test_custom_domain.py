"""An optional custom domain per stage: certificate, regional TLS 1.2 domain name, API mapping, and the
redirect and Log-in URIs on the domain so they survive a re-created API."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest

from infra.app import load_cdk_context, stack_id
from infra.config import ConfigError, StageConfig
from infra.nag import add_nag_checks
from infra.stack import SellerInsightsStack
from tests.infra.conftest import resources, synthesize

pytestmark = pytest.mark.slow

ZONE = {"id": "Z0123456789ABCDEFGHIJ", "name": "example.com"}
CERTIFICATE_ARN = "arn:aws:acm:eu-west-1:123456789012:certificate/12345678-1234-1234-1234-123456789012"


def _stage(domain: dict[str, Any] | None, **more: Any) -> dict[str, Any]:
    stage: dict[str, Any] = dict(load_cdk_context()["stages"]["dev"])
    stage.update(domain=domain, **more)
    return stage


def _synth(tmp_path: Path, stage: dict[str, Any]) -> dict[str, Any]:
    """The dev stack with `stage` as an extra stage 'domaintest', through the nag gate like `cdk synth`."""
    context = load_cdk_context()
    context["stages"] = {**context["stages"], "domaintest": stage}
    app = cdk.App(context=context, outdir=str(tmp_path))
    config = StageConfig.from_context("domaintest", context["stages"])
    SellerInsightsStack(app, stack_id(config.name), config=config)
    add_nag_checks(app)
    return synthesize(app, "domaintest")


@pytest.fixture(scope="module")
def with_zone(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth(tmp_path_factory.mktemp("domain-zone"), _stage({"name": "api.example.com", "hosted_zone": ZONE}))


@pytest.fixture(scope="module")
def with_certificate(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    return _synth(tmp_path_factory.mktemp("domain-cert"),
                  _stage({"name": "insights.example.org", "certificate_arn": CERTIFICATE_ARN,
                          "disable_execute_api_endpoint": False}))


def _environment(raw: dict[str, Any], handler: str) -> dict[str, Any]:
    (function,) = [f for f in resources(raw, "AWS::Lambda::Function").values() if f["Properties"]["Handler"] == handler]
    return dict(function["Properties"]["Environment"]["Variables"])


def test_a_created_certificate_is_validated_in_its_zone_and_the_name_points_at_the_api(
    with_zone: dict[str, Any]) -> None:
    (certificate,) = resources(with_zone, "AWS::CertificateManager::Certificate").values()
    assert certificate["Properties"]["DomainName"] == "api.example.com"
    assert certificate["Properties"]["ValidationMethod"] == "DNS"
    assert certificate["Properties"]["DomainValidationOptions"] == [
        {"DomainName": "api.example.com", "HostedZoneId": ZONE["id"]}]
    (domain_id, domain), = resources(with_zone, "AWS::ApiGatewayV2::DomainName").items()
    (config,) = domain["Properties"]["DomainNameConfigurations"]
    assert config["EndpointType"] == "REGIONAL" and config["SecurityPolicy"] == "TLS_1_2"
    assert config["CertificateArn"] == {"Ref": next(iter(resources(with_zone, "AWS::CertificateManager::Certificate")))}
    (mapping,) = resources(with_zone, "AWS::ApiGatewayV2::ApiMapping").values()
    (api_id,) = resources(with_zone, "AWS::ApiGatewayV2::Api")
    assert mapping["Properties"]["ApiId"] == {"Ref": api_id}
    assert mapping["Properties"]["DomainName"] == {"Ref": domain_id}
    assert mapping["Properties"]["Stage"] == "$default" or "Ref" in mapping["Properties"]["Stage"]
    records = resources(with_zone, "AWS::Route53::RecordSet").values()
    assert sorted(r["Properties"]["Type"] for r in records) == ["A", "AAAA"]
    for record in records:
        assert record["Properties"]["Name"] == "api.example.com."
        assert record["Properties"]["HostedZoneId"] == ZONE["id"]
        assert domain_id in json.dumps(record["Properties"]["AliasTarget"])


def test_with_a_domain_the_redirect_and_login_uris_use_it(with_zone: dict[str, Any]) -> None:
    env = _environment(with_zone, "oauth_callback.handler.lambda_handler")
    assert env["REDIRECT_URI"] == "https://api.example.com/callback"
    outputs = {name: output["Value"] for name, output in with_zone["Outputs"].items()}
    assert outputs["RedirectUri"] == "https://api.example.com/callback"
    assert outputs["LoginUri"] == "https://api.example.com/login"
    assert outputs["ApiUrl"] == "https://api.example.com/"
    # One address: the execute-api endpoint is off (the HTTPS-only rule), so a re-created API changes nothing.
    (api,) = resources(with_zone, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"]["DisableExecuteApiEndpoint"] is True


def test_an_existing_certificate_is_used_as_given_and_dns_is_left_to_the_operator(
    with_certificate: dict[str, Any],
) -> None:
    assert not resources(with_certificate, "AWS::CertificateManager::Certificate")
    assert not resources(with_certificate, "AWS::Route53::RecordSet")
    (domain_id, domain), = resources(with_certificate, "AWS::ApiGatewayV2::DomainName").items()
    assert domain["Properties"]["DomainNameConfigurations"][0]["CertificateArn"] == CERTIFICATE_ARN
    assert with_certificate["Outputs"]["DomainTarget"]["Value"] == {"Fn::GetAtt": [domain_id, "RegionalDomainName"]}
    assert with_certificate["Outputs"]["LoginUri"]["Value"] == "https://insights.example.org/login"
    (api,) = resources(with_certificate, "AWS::ApiGatewayV2::Api").values()
    assert api["Properties"].get("DisableExecuteApiEndpoint") in (None, False)


def test_without_a_domain_the_uris_follow_the_execute_api_url(raw: dict[str, Any]) -> None:
    assert not resources(raw, "AWS::ApiGatewayV2::DomainName")
    (api_id,) = resources(raw, "AWS::ApiGatewayV2::Api")
    assert api_id in json.dumps(raw["Outputs"]["LoginUri"]["Value"])
    assert raw["Outputs"]["LoginUri"]["Value"]["Fn::Join"][1][-1].endswith("/login")
    assert "DomainTarget" not in raw["Outputs"]


@pytest.mark.parametrize(
    ("domain", "more", "message"),
    [
        ({"name": "api.example.com"}, {}, r"stages\.x\.domain' needs a certificate: give certificate_arn"),
        ({"name": "api.example.com", "hosted_zone": {**ZONE, "name": "other.com"}}, {},
         r"domain\.hosted_zone' 'other\.com' does not hold the domain 'api\.example\.com'"),
        ({"name": "*.example.com", "hosted_zone": ZONE}, {}, r"domain\.name' must be a domain name"),
        ({"name": "api.example.com", "certificate_arn": "arn:aws:acm:x"}, {},
         r"domain\.certificate_arn' must be null or an ACM certificate ARN"),
        ({"name": "api.example.com", "hosted_zone": {"id": "zone-1", "name": "example.com"}}, {},
         r"domain\.hosted_zone\.id' must be a Route 53 hosted zone id"),
        ("api.example.com", {}, r"stages\.x\.domain' must be \{\"name\": \"api\.example\.com\""),
        ({"name": "api.example.com", "hosted_zone": "Z0123"}, {},
         r"domain\.hosted_zone' must be \{\"id\": \"Z0123456789ABCDEFGHIJ\", \"name\": \"example\.com\"\}"),
        ({"name": "api.example.com", "hosted_zone": ZONE, "zone": "x"}, {}, r"domain' has unknown key\(s\): zone"),
        ({"name": "api.example.com", "hosted_zone": ZONE}, {"redirect_uri": "https://other.example.com/callback"},
         r"domain' and redirect_uri are both set: with a domain the redirect URI is https://api\.example\.com/callback"),
    ],
)
def test_a_bad_domain_stops_the_synth_naming_the_key(domain: Any, more: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        StageConfig.from_context("x", {"x": _stage(domain, **more)})


def test_stages_without_app_draft_are_drafts_and_prod_keeps_what_it_says() -> None:
    stages = load_cdk_context()["stages"]
    unsaid = {key: value for key, value in stages["dev"].items() if key != "app_draft"}
    assert StageConfig.from_context("new", {"new": unsaid}).app_draft is True
    assert StageConfig.from_context("prod", stages).app_draft is False
    assert StageConfig.from_context("prod", {"prod": {**stages["prod"], "app_draft": True}}).app_draft is True
