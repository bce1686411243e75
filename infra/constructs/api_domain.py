"""ApiDomain: the HTTP API's own domain name (optional, per stage: cdk.json ``domain``).

Amazon keeps the redirect URI and the Log-in URI registered for the app; the execute-api URL changes
whenever the API is re-created, the domain does not. A regional API Gateway domain name with TLS 1.2 and a
mapping of the API's ``$default`` stage to its root; the certificate is given (``certificate_arn``) or
requested here with DNS validation in ``hosted_zone``, where an alias record also points the name at the API.
"""

from __future__ import annotations

from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_route53 as route53
from aws_cdk import aws_route53_targets as route53_targets
from constructs import Construct

from infra.config import CustomDomain


class ApiDomain(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        domain: CustomDomain,
        api: apigwv2.HttpApi,
        stage: apigwv2.HttpStage,
    ) -> None:
        super().__init__(scope, construct_id)
        self.url = domain.url
        zone = (
            route53.HostedZone.from_hosted_zone_attributes(
                self, "Zone", hosted_zone_id=domain.hosted_zone.id, zone_name=domain.hosted_zone.name
            )
            if domain.hosted_zone is not None
            else None
        )
        if domain.certificate_arn is not None:
            certificate = acm.Certificate.from_certificate_arn(self, "Certificate", domain.certificate_arn)
        else:
            assert zone is not None  # CustomDomain requires one of the two
            certificate = acm.Certificate(
                self,
                "Certificate",
                domain_name=domain.name,
                validation=acm.CertificateValidation.from_dns(zone),
            )
        self.domain_name = apigwv2.DomainName(
            self,
            "DomainName",
            domain_name=domain.name,
            certificate=certificate,
            endpoint_type=apigwv2.EndpointType.REGIONAL,
            security_policy=apigwv2.SecurityPolicy.TLS_1_2,
        )
        apigwv2.ApiMapping(self, "Mapping", api=api, domain_name=self.domain_name, stage=stage)
        if zone is not None:
            target = route53.RecordTarget.from_alias(
                route53_targets.ApiGatewayv2DomainProperties(
                    self.domain_name.regional_domain_name, self.domain_name.regional_hosted_zone_id
                )
            )
            route53.ARecord(self, "AliasRecord", zone=zone, record_name=domain.name, target=target)
            route53.AaaaRecord(self, "AliasRecordIpv6", zone=zone, record_name=domain.name, target=target)

    @property
    def target(self) -> str:
        """Where a CNAME of the domain must point when the stack does not manage its DNS."""
        return self.domain_name.regional_domain_name
