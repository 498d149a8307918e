"""API settings from the environment (pydantic-settings; the Helm chart sets them).

| variable | default | meaning |
| --- | --- | --- |
| SHUNTER_API_NAMESPACE | default | namespace used when a request names none |
| SHUNTER_API_WATCH_NAMESPACE | (all) | the namespaces served, comma-separated (the operator's |
|  |  | SHUNTER_NAMESPACE); the watch cache holds the first, the others |
|  |  | are read live (the API's Roles allow no cluster-wide watch) |
| SHUNTER_EXCLUDE_NAMESPACES | kube-system | namespaces never served: submissions refused (403) |
| SHUNTER_API_AUTH | kubernetes | `kubernetes`: bearer tokens checked by TokenReview and |
|  |  | SubjectAccessReview; `none`: no checks (a trusted local demo only) |
| SHUNTER_API_IDENTITY | impersonate | how writes reach the API server: `impersonate` acts as the |
|  |  | caller (their RBAC, the audit log's user; needs constrained |
|  |  | impersonation, Kubernetes >= 1.36 or 1.35 with its feature gate); |
|  |  | `serviceAccount`: as the API itself, after a SubjectAccessReview |
| SHUNTER_API_DEFAULT_IMAGE | shunter/trainer:latest | image of a submitted job that names none |
| SHUNTER_API_CANCEL_WAIT_SECONDS | 10 | how long POST /cancel waits for a final phase |
| SHUNTER_API_SIMULATOR | false | tell the UI the cluster's nodes are kwok's (`make demo`): |
|  |  | its submit form then offers the `sim.shunter.dev/*` fields |
| SHUNTER_API_TOKEN_AUDIENCES | (the API server's) | audiences TokenReview checks tokens for |
|  |  | (comma-separated) |
| SHUNTER_API_MAX_BODY_BYTES | 262144 | largest request body; a larger one is 413, unread |
| SHUNTER_API_STREAMS_PER_USER | 8 | GET /stream connections one user may hold open |
| SHUNTER_API_FOLLOWS_PER_USER | 4 | followed logs one user may hold open |
| SHUNTER_API_FOLLOW_SECONDS | 1800 | a followed log ends after this long (the client reopens it) |
| SHUNTER_API_REAUTHORIZE_SECONDS | 30 | how often an open stream or followed log checks its |
|  |  | caller's token and permission again |
| SHUNTER_API_LOG_CONNECTIONS | 32 | connections to the API server for logs, a pool apart |
|  |  | from the one of reviews and writes |
| DATABASE_URL | (none) | PostgreSQL with the mirror, for GET /jobs |
| SHUNTER_ALLOWED_CLAIMS | (none) | claims a job may mount besides the labelled ones |
|  |  | (`ns/name,ns/*`, the operator's setting: see shunter.domain.claims) |
| SHUNTER_CHECKPOINT_SIZE | (none) | the operator's default checkpoint size: with it, every job |
|  |  | mounts a `NAME-checkpoints` claim, which submit checks too |
| SHUNTER_MAX_SIZED_GRACE_SECONDS | 600 | the operator's cap on a grace period sized from a job's |
|  |  | checkpoint writes (its queue's bound wins): "work lost if |
|  |  | stopped now" sizes a stop as the operator would |
| SHUNTER_API_TLS_CERTFILE | (none) | PEM certificate (chain): serve HTTPS instead of HTTP |
| SHUNTER_API_TLS_KEYFILE | (none) | its PEM private key (both or neither) |
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shunter.domain.claims import parse_allowed
from shunter.domain.scope import EXCLUDE_SETTING, Scope


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SHUNTER_API_", extra="ignore", populate_by_name=True
    )

    namespace: str = "default"
    watch_namespaces: str = Field("", validation_alias="SHUNTER_API_WATCH_NAMESPACE")
    # The operator's setting, read by the API too; None: the default (kube-system).
    exclude_namespaces: str | None = Field(
        None, validation_alias=AliasChoices(EXCLUDE_SETTING, "SHUNTER_API_EXCLUDE_NAMESPACES")
    )
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    auth: Literal["kubernetes", "none"] = "kubernetes"
    identity: Literal["impersonate", "serviceAccount"] = "impersonate"
    default_image: str = "shunter/trainer:latest"
    cancel_wait_seconds: float = Field(10.0, ge=0, le=120)
    simulator: bool = False
    token_audiences: str = ""
    max_body_bytes: int = Field(256 * 1024, ge=1024, le=64 * 1024 * 1024)
    streams_per_user: int = Field(8, ge=1, le=1000)
    follows_per_user: int = Field(4, ge=1, le=1000)
    follow_seconds: float = Field(1800.0, gt=0, le=24 * 3600)
    reauthorize_seconds: float = Field(30.0, gt=0, le=3600)
    log_connections: int = Field(32, ge=1, le=1000)
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "SHUNTER_API_DATABASE_URL")
    )
    # The operator's setting, read by the API too (the chart sets both the same).
    allowed_claims: str = Field(
        "", validation_alias=AliasChoices("SHUNTER_ALLOWED_CLAIMS", "SHUNTER_API_ALLOWED_CLAIMS")
    )

    # Also the operator's: which jobs get a NAME-checkpoints claim (shunter.api.claims).
    checkpoint_size: str | None = Field(
        None,
        validation_alias=AliasChoices("SHUNTER_CHECKPOINT_SIZE", "SHUNTER_API_CHECKPOINT_SIZE"),
    )

    # Also the operator's (Rules.max_sized_grace): the work-lost figure of a running job
    # (shunter.api.appraisal) judges a stop's grace as the operator would.
    max_sized_grace_seconds: int = Field(
        600, ge=1, le=24 * 3600,
        validation_alias=AliasChoices(
            "SHUNTER_MAX_SIZED_GRACE_SECONDS", "SHUNTER_API_MAX_SIZED_GRACE_SECONDS"
        ),
    )  # fmt: skip

    @field_validator("allowed_claims")
    @classmethod
    def _claims(cls, raw: str) -> str:
        parse_allowed(raw)  # refuses a malformed entry at start-up
        return raw

    @property
    def impersonates(self) -> bool:
        """Writes act as the caller (auth on, and the installer did not opt out)."""
        return self.auth == "kubernetes" and self.identity == "impersonate"

    @property
    def claims_allowed(self) -> frozenset[str]:
        return parse_allowed(self.allowed_claims)

    @model_validator(mode="after")
    def _tls_pair(self) -> ApiSettings:
        if bool(self.tls_certfile) != bool(self.tls_keyfile):
            raise ValueError("SHUNTER_API_TLS_CERTFILE and SHUNTER_API_TLS_KEYFILE go together")
        if not self.scope.cluster_wide and not self.scope.namespaces:
            raise ValueError("every watched namespace is excluded: nothing to serve")
        return self

    @property
    def scope(self) -> Scope:
        return Scope.parse(self.watch_namespaces, self.exclude_namespaces)

    @property
    def watch_namespace(self) -> str | None:
        """The namespace the watch cache holds (None: all). With several, the first:
        the others are read live, as any namespace outside the cache is."""
        targets = self.scope.watch_targets()
        return targets[0] if targets else None
