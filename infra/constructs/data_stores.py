"""DataStores: the customer key and every stateful resource that holds seller data or secrets.

One customer-managed KMS key (rotation on) encrypts the tables, the data bucket, the LWA client
secret and the tokens themselves (envelope encryption in the functions, with the encryption
context ``purpose``). Access is granted per duty through the ``grant_*`` methods, which keep the key
usable only through DynamoDB/Secrets Manager or for the one token purpose asked for.
"""

from __future__ import annotations

import json

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import StageConfig
from infra.constructs import checkov_skip, tag_purpose
from infra.constructs.service_function import ServiceFunction
from infra.nag import acknowledge

# The encryption-context values the functions use for tokens (not credentials).
REFRESH_TOKEN_PURPOSE = "refresh_token"  # noqa: S105
ACCESS_TOKEN_PURPOSE = "access_token"  # noqa: S105
# Sparse indexes of the connections table (docs/internal-contracts.md, "Token lifecycle").
REFRESH_DUE_INDEX = "by_refresh_due"
REAUTHORIZATION_DUE_INDEX = "by_reauthorization_due"
# The report planner's cursors (docs/internal-contracts.md, "Report pipeline").
PLAN_DUE_INDEX = "by_plan_due"
# REVOKED and DELETION_REQUESTED connections by purge date (docs/internal-contracts.md, "Retention").
PURGE_DUE_INDEX = "by_purge_due"
# Consent candidates waiting for Amazon to confirm their seller (seller_insights.candidates).
VERIFICATION_DUE_INDEX = "by_verification_due"
# Report jobs parked until wake_at (long waits; report_fetcher.wakes); seller_insights.report_jobs.WAKE_DUE_INDEX.
WAKE_DUE_INDEX = "by_wake_due"
EXPORTS_PREFIX = "exports/"
# Operator notices that list sellers (the daily re-authorization digest): kept a week, then expired.
NOTICES_PREFIX = "notices/"
NOTICES_KEPT = Duration.days(7)
# Everything stored about a seller lives under sellers/{id}/{region}/ (architecture §3).
SELLERS_PREFIX = "sellers/"
# Stream report documents into the bucket (multipart for large ones) and read stored ones back.
SELLER_OBJECT_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts", "s3:GetObject")
# Erase every version and delete marker under a prefix, and abort its multipart uploads.
SELLER_PURGE_ACTIONS = ("s3:DeleteObjectVersion", "s3:DeleteObject", "s3:AbortMultipartUpload")
# What S3 needs from the caller to write (GenerateDataKey; Decrypt for multipart) and read SSE-KMS objects.
BUCKET_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
# What S3 needs from the caller to read SSE-KMS objects.
BUCKET_READ_KEY_ACTIONS = ("kms:Decrypt",)
# Item-level access for the duties; no Scan (hot paths use keys, architecture §3).
TABLE_READ_WRITE_ACTIONS = (
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:DescribeTable",
)
# Never granted: reads that are not by key.
UNKEYED_TABLE_ACTIONS = frozenset(
    {"dynamodb:Scan", "dynamodb:PartiQLSelect", "dynamodb:ExportTableToPointInTime", "dynamodb:*"}
)
# What DynamoDB needs from the caller to read and write a table under a customer key.
TABLE_KEY_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey", "kms:DescribeKey")
TOKEN_CRYPTO_ACTIONS = ("kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey")
# Every use of the key that takes an encryption context: what the refresh-token Deny covers.
REFRESH_TOKEN_KEY_USE = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey*", "kms:ReEncrypt*")
# What Secrets Manager needs from the caller to store a new secret version under a customer key.
SECRET_WRITE_KEY_ACTIONS = ("kms:Encrypt", "kms:GenerateDataKey")
# What Secrets Manager needs from the caller to return a secret stored under a customer key.
SECRET_READ_KEY_ACTIONS = ("kms:Decrypt",)


class DataStores(Construct):
    def __init__(self, scope: Construct, construct_id: str, *, config: StageConfig) -> None:
        super().__init__(scope, construct_id)
        self._config = config

        self.key = kms.Key(
            self,
            "TokenKey",
            description="Seller Insights: refresh tokens, tables, data bucket and LWA client secret",
            enable_key_rotation=True,
            removal_policy=config.removal_policy,
            pending_window=Duration.days(30 if config.retain else 7),
        )
        tag_purpose(self.key, "token_key")

        self.connections = self._table(
            "Connections",
            purpose="connections",
            partition_key="pk",
            sort_key="sk",
            ttl_attribute="expires_at",
        )
        # KEYS_ONLY: the refresher reads the item itself under its lease anyway.
        self.connections.add_global_secondary_index(
            index_name=REFRESH_DUE_INDEX,
            partition_key=dynamodb.Attribute(name="refresh_shard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="refresh_due_at", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        self.connections.add_global_secondary_index(
            index_name=REAUTHORIZATION_DUE_INDEX,
            partition_key=dynamodb.Attribute(name="reauth_shard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="reauthorization_due_at", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # ALL: the planner needs the whole cursor (due map, enabled types, marketplaces) per hit.
        self.connections.add_global_secondary_index(
            index_name=PLAN_DUE_INDEX,
            partition_key=dynamodb.Attribute(name="plan_shard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="next_plan_at", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        # KEYS_ONLY: the sweeper reads the connection item itself before it purges anything.
        self.connections.add_global_secondary_index(
            index_name=PURGE_DUE_INDEX,
            partition_key=dynamodb.Attribute(name="purge_shard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="purge_after", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # KEYS_ONLY: the verifier reads the candidate itself under its lease.
        self.connections.add_global_secondary_index(
            index_name=VERIFICATION_DUE_INDEX,
            partition_key=dynamodb.Attribute(name="verify_shard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="verify_due_at", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.KEYS_ONLY,
        )
        # INCLUDE version: the wake-jobs run un-parks each due job conditionally on the version the index shows
        # (one UpdateItem, ReturnValues ALL_NEW gives the message), with no read of the job first.
        self.connections.add_global_secondary_index(
            index_name=WAKE_DUE_INDEX,
            partition_key=dynamodb.Attribute(name="wake_shard", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="wake_at", type=dynamodb.AttributeType.NUMBER),
            projection_type=dynamodb.ProjectionType.INCLUDE,
            non_key_attributes=["version"],
        )
        self.connection_indexes = (REFRESH_DUE_INDEX, REAUTHORIZATION_DUE_INDEX, PLAN_DUE_INDEX, PURGE_DUE_INDEX,
                                   VERIFICATION_DUE_INDEX, WAKE_DUE_INDEX)
        self.oauth_state = self._table(
            "OAuthState", purpose="oauth_state", partition_key="state_hash", ttl_attribute="expires_at"
        )
        # Powertools idempotency schema: "id" partition key, "expiration" TTL attribute.
        self.idempotency = self._table(
            "Idempotency", purpose="idempotency", partition_key="id", ttl_attribute="expiration"
        )
        # Data-request records and deletion receipts (no seller id, token, e-mail or report content):
        # kept 25 months by TTL (the CCPA asks for 24), so they must outlive the stack's other data and
        # are retained, with deletion protection, in every stage.
        self.audit = self._table(
            "Audit", purpose="audit", partition_key="id", ttl_attribute="expires_at", always_retain=True
        )

        # Created with a generated placeholder client_secret so no real secret ever passes through
        # the template; operators write the real JSON with
        #   aws secretsmanager put-secret-value --secret-id <LwaClientSecretArn> --secret-string file://lwa.json
        # ({"client_id": ..., "client_secret": ..., "application_id": ...}).
        self.lwa_client_secret = secretsmanager.Secret(
            self,
            "LwaClientSecret",
            description="Login with Amazon client credentials of the SP-API application (JSON)",
            encryption_key=self.key,
            removal_policy=config.removal_policy,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=json.dumps({"client_id": "REPLACE_ME", "application_id": "REPLACE_ME"}),
                generate_string_key="client_secret",
                exclude_punctuation=True,
                password_length=64,
            ),
        )
        tag_purpose(self.lwa_client_secret, "lwa_client")
        acknowledge(
            self.lwa_client_secret,
            "AwsSolutions-SMG4",
            "The LWA client secret is rotated through the SP-API Application Management API "
            "(rotateApplicationClientSecret delivers the new value by notification, 180-day rule), "
            "not by a Secrets Manager rotation Lambda.",
        )

        # The key of the opaque seller keys (seller_insights.pseudonyms): HMAC-SHA256 over seller ids, for
        # object keys, logs and audit records that outlive a seller's data. Retained in every stage, like
        # the audit records keyed by it: without it no purge could find a seller's objects.
        self.seller_keys = secretsmanager.Secret(
            self,
            "SellerKeys",
            description="Key of the opaque seller keys (HMAC of seller ids); never rotated",
            encryption_key=self.key,
            removal_policy=RemovalPolicy.RETAIN,
            generate_secret_string=secretsmanager.SecretStringGenerator(exclude_punctuation=True, password_length=64),
        )
        tag_purpose(self.seller_keys, "seller_keys")
        acknowledge(
            self.seller_keys,
            "AwsSolutions-SMG4",
            "Never rotated on purpose: every stored object prefix, log line and audit record names sellers by "
            "the HMAC this key makes; a new key would orphan them all (and the purge could no longer find "
            "a seller's objects).",
        )

        self.access_logs_bucket = self._access_logs_bucket()
        self.data_bucket = self._data_bucket()

    # ---------------------------------------------------------------- resources

    def _table(
        self,
        construct_id: str,
        *,
        purpose: str,
        partition_key: str,
        ttl_attribute: str,
        sort_key: str | None = None,
        always_retain: bool = False,
    ) -> dynamodb.Table:
        """``always_retain``: deletion protection and RETAIN whatever the stage's ``removal`` says."""
        config = self._config
        retain = always_retain or config.retain
        table = dynamodb.Table(
            self,
            construct_id,
            partition_key=dynamodb.Attribute(name=partition_key, type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name=sort_key, type=dynamodb.AttributeType.STRING) if sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.CUSTOMER_MANAGED,
            encryption_key=self.key,
            # The window is part of the deletion promise, see StageConfig.pitr_recovery_days.
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True,
                recovery_period_in_days=config.pitr_recovery_days,
            ),
            time_to_live_attribute=ttl_attribute,
            deletion_protection=retain,
            removal_policy=RemovalPolicy.RETAIN if retain else RemovalPolicy.DESTROY,
        )
        tag_purpose(table, purpose)
        return table

    def _access_logs_bucket(self) -> s3.Bucket:
        config = self._config
        bucket = s3.Bucket(
            self,
            "AccessLogsBucket",
            # S3 server access logging cannot deliver to an SSE-KMS bucket, hence S3-managed keys.
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            removal_policy=config.removal_policy,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="keep-logs-one-year",
                    expiration=Duration.days(config.log_retention_days),
                    noncurrent_version_expiration=Duration.days(1),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
                s3.LifecycleRule(id="remove-expired-delete-markers", expired_object_delete_marker=True),
            ],
        )
        tag_purpose(bucket, "access_logs")
        acknowledge(
            bucket,
            "AwsSolutions-S1",
            "This is the server access log target of the data bucket; logging it into itself or a "
            "further bucket would only log the log deliveries.",
        )
        checkov_skip(
            bucket, "CKV_AWS_18", "the access-log target bucket itself; logging it would only log log deliveries"
        )
        return bucket

    def _data_bucket(self) -> s3.Bucket:
        config = self._config
        bucket = s3.Bucket(
            self,
            "DataBucket",
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            minimum_tls_version=1.2,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs_bucket,
            server_access_logs_prefix="data-bucket/",
            removal_policy=config.removal_policy,
            # A safety net only: the retention sweeper deletes every version itself (lifecycle lags).
            lifecycle_rules=[
                s3.LifecycleRule(id="expire-exports", prefix=EXPORTS_PREFIX, expiration=Duration.days(7)),
                # Digests name sellers: a week for operators, then gone (well inside the deletion promise).
                s3.LifecycleRule(id="expire-notices", prefix=NOTICES_PREFIX, expiration=NOTICES_KEPT),
                s3.LifecycleRule(
                    id="clean-versions-and-uploads",
                    noncurrent_version_expiration=Duration.days(1),
                    expired_object_delete_marker=True,
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
        tag_purpose(bucket, "data")
        return bucket

    # ------------------------------------------------------------------- grants

    def grant_tables_read_write(self, grantee: iam.IGrantable, *tables: dynamodb.Table) -> None:
        """Item read/write on ``tables``; the key only through DynamoDB, never for direct decrypts.

        The table ARNs only: ``Table.grant`` would add ``<table>/index/*`` as soon as a table has an
        index, and index access is granted per index (``grant_connection_index_query``).
        """
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(TABLE_READ_WRITE_ACTIONS),
            resource_arns=[table.table_arn for table in tables],
        )
        self._grant_key_via_service(grantee, "dynamodb", TABLE_KEY_ACTIONS)

    def grant_table_actions(self, grantee: iam.IGrantable, table: dynamodb.Table, *actions: str) -> None:
        """Exactly ``actions`` on ``table`` (its ARN only, no index), the key only through DynamoDB.

        Refuses unkeyed reads (Scan, PartiQL, exports): every duty finds its items by key or index.
        """
        unkeyed = sorted(a for a in actions if a in UNKEYED_TABLE_ACTIONS or not a.startswith("dynamodb:"))
        if not actions or unkeyed:
            raise ValueError(f"grant_table_actions needs keyed dynamodb actions, got {list(actions)!r}")
        iam.Grant.add_to_principal(grantee=grantee, actions=list(actions), resource_arns=[table.table_arn])
        self._grant_key_via_service(grantee, "dynamodb", TABLE_KEY_ACTIONS)

    def grant_connection_index_query(self, grantee: iam.IGrantable, *indexes: str) -> None:
        """Query on the named indexes of the connections table only (no ``index/*``)."""
        unknown = sorted(set(indexes) - set(self.connection_indexes))
        if not indexes or unknown:
            raise ValueError(
                f"grant_connection_index_query needs index names of the connections table "
                f"({', '.join(self.connection_indexes)}), got {list(indexes)!r}"
            )
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["dynamodb:Query"],
            resource_arns=[f"{self.connections.table_arn}/index/{name}" for name in indexes],
        )

    def grant_seller_objects_read_write(self, grantee: iam.IGrantable) -> None:
        """Put (also multipart) and get objects under ``sellers/`` of the data bucket; no list, no delete.

        The bucket's key only through S3. Exports and anything else in the bucket stay out of reach.
        """
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(SELLER_OBJECT_ACTIONS),
            resource_arns=[self.data_bucket.arn_for_objects(f"{SELLERS_PREFIX}*")],
        )
        self._grant_key_via_service(grantee, "s3", BUCKET_KEY_ACTIONS)

    def grant_seller_objects_purge(self, grantee: iam.IGrantable) -> None:
        """What the retention sweeper needs to erase what it owns for good, and nothing to read it.

        It owns two prefixes: ``sellers/`` (the reports) and ``exports/`` (the portability archives,
        erased with a seller's last connection). For each: every version and delete marker
        (ListBucketVersions with an ``s3:prefix`` condition, DeleteObjectVersion/DeleteObject on the
        objects) and the multipart uploads (ListBucketMultipartUploads, AbortMultipartUpload). No
        GetObject and no key: listing and deleting never decrypt an object.

        ListBucketMultipartUploads has no ``s3:prefix`` condition key (the service authorization
        reference lists none for it), so a prefix condition would never match and deny every listing:
        it is granted on the bucket unconditioned. It returns upload keys and ids only, never content,
        and the abort itself stays limited to the two prefixes.
        """
        bucket = self.data_bucket
        prefixes = (SELLERS_PREFIX, EXPORTS_PREFIX)
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:ListBucketVersions"],
            resource_arns=[bucket.bucket_arn],
            conditions={"StringLike": {"s3:prefix": [f"{prefix}*" for prefix in prefixes]}},
        )
        iam.Grant.add_to_principal(
            grantee=grantee, actions=["s3:ListBucketMultipartUploads"], resource_arns=[bucket.bucket_arn]
        )
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(SELLER_PURGE_ACTIONS),
            resource_arns=[bucket.arn_for_objects(f"{prefix}*") for prefix in prefixes],
        )

    def grant_seller_objects_read(self, grantee: iam.IGrantable) -> None:
        """GetObject under ``sellers/`` (the bucket's key only through S3, decrypt only)."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetObject"],
            resource_arns=[self.data_bucket.arn_for_objects(f"{SELLERS_PREFIX}*")],
        )
        self._grant_key_via_service(grantee, "s3", BUCKET_READ_KEY_ACTIONS)

    def grant_exports_read(self, grantee: iam.IGrantable) -> None:
        """GetObject under ``exports/`` only (the key through S3, decrypt only): what a presigned GET of an
        export archive is authorized as."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:GetObject"],
            resource_arns=[self.data_bucket.arn_for_objects(f"{EXPORTS_PREFIX}*")],
        )
        self._grant_key_via_service(grantee, "s3", BUCKET_READ_KEY_ACTIONS)

    def grant_exports_read_write(self, grantee: iam.IGrantable) -> None:
        """Stream export archives into ``exports/`` (multipart) and read them back, for presigned GETs.

        The presigned URL is signed with the grantee's credentials, so the download is authorized as
        the grantee: GetObject on ``exports/*`` and the key through S3.
        """
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(SELLER_OBJECT_ACTIONS),
            resource_arns=[self.data_bucket.arn_for_objects(f"{EXPORTS_PREFIX}*")],
        )
        self._grant_key_via_service(grantee, "s3", BUCKET_KEY_ACTIONS)

    def grant_notices_write(self, grantee: iam.IGrantable) -> None:
        """PutObject under ``notices/`` (operator digests), the bucket's key through S3 to encrypt only."""
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["s3:PutObject"],
            resource_arns=[self.data_bucket.arn_for_objects(f"{NOTICES_PREFIX}*")],
        )
        self._grant_key_via_service(grantee, "s3", ("kms:GenerateDataKey",))

    def restrict_refresh_tokens_to(self, *roles: iam.IRole) -> None:
        """Key policy: under ``purpose=refresh_token`` the key seals and opens for these roles and for no
        one else, whatever their IAM policies say: an explicit Deny on every other ``aws:PrincipalArn`` (an
        account administrator, the deploy role, any other function). There is no break-glass principal: a
        lost refresh token costs the seller a new consent, while a readable one costs the seller's account.
        Changing this statement takes a deployment of the stack, which shows in its diff and in CloudTrail."""
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="RefreshTokensOnlyForTheConsentAndTokenRoles",
                effect=iam.Effect.DENY,
                principals=[iam.AnyPrincipal()],
                actions=list(REFRESH_TOKEN_KEY_USE),
                resources=["*"],  # in a key policy "*" means this key
                conditions={
                    "StringEquals": {"kms:EncryptionContext:purpose": REFRESH_TOKEN_PURPOSE},
                    "ArnNotEquals": {"aws:PrincipalArn": [role.role_arn for role in roles]},
                },
            )
        )

    def grant_refresh_token_crypto(self, grantee: iam.IGrantable) -> None:
        """Envelope encryption of refresh tokens: only under the encryption context purpose=refresh_token."""
        self._grant_token_crypto(grantee, REFRESH_TOKEN_PURPOSE)

    def grant_access_token_crypto(self, grantee: iam.IGrantable) -> None:
        """Envelope encryption of cached access tokens: only under purpose=access_token."""
        self._grant_token_crypto(grantee, ACCESS_TOKEN_PURPOSE)

    def grant_seller_keys(self, function: ServiceFunction) -> None:
        """Every function names sellers by their opaque key: the secret's ARN in SELLER_KEY_SECRET_ID, and
        read access to it (the key only through Secrets Manager)."""
        function.add_environment("SELLER_KEY_SECRET_ID", self.seller_keys.secret_arn)
        # GetSecretValue only (grant_read would also name every role in the token key's own policy).
        iam.Grant.add_to_principal(
            grantee=function, actions=["secretsmanager:GetSecretValue"], resource_arns=[self.seller_keys.secret_arn]
        )
        self._grant_key_via_service(function, "secretsmanager", SECRET_READ_KEY_ACTIONS)

    def grant_lwa_client_read(self, grantee: iam.IGrantable) -> None:
        # Adds GetSecretValue/DescribeSecret and kms:Decrypt restricted to Secrets Manager.
        self.lwa_client_secret.grant_read(grantee)

    def grant_lwa_client_store(self, grantee: iam.IGrantable) -> None:
        """Store a new version of the LWA client secret (the rotated secret Amazon sends).

        PutSecretValue only (not UpdateSecret: no changing the key or description), and the key only
        through Secrets Manager.
        """
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=["secretsmanager:PutSecretValue"],
            resource_arns=[self.lwa_client_secret.secret_arn],
        )
        self._grant_key_via_service(grantee, "secretsmanager", SECRET_WRITE_KEY_ACTIONS)

    def _grant_token_crypto(self, grantee: iam.IGrantable, purpose: str) -> None:
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(TOKEN_CRYPTO_ACTIONS),
            resource_arns=[self.key.key_arn],
            conditions={"StringEquals": {"kms:EncryptionContext:purpose": purpose}},
        )

    def _grant_key_via_service(self, grantee: iam.IGrantable, service: str, actions: tuple[str, ...]) -> None:
        iam.Grant.add_to_principal(
            grantee=grantee,
            actions=list(actions),
            resource_arns=[self.key.key_arn],
            conditions={"StringEquals": {"kms:ViaService": f"{service}.{Stack.of(self).region}.amazonaws.com"}},
        )
