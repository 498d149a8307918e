"""API settings from the environment (pydantic-settings; the Helm chart sets them).

| variable | default | meaning |
| --- | --- | --- |
| SHUNTER_API_NAMESPACE | default | namespace used when a request names none |
| SHUNTER_API_WATCH_NAMESPACE | (all) | limit the watch cache to one namespace |
| SHUNTER_API_AUTH | kubernetes | `kubernetes`: bearer tokens checked by TokenReview and |
|  |  | SubjectAccessReview; `none`: no checks (a trusted local demo only) |
| SHUNTER_API_DEFAULT_IMAGE | shunter/trainer:latest | image of a submitted job that names none |
| SHUNTER_API_CANCEL_WAIT_SECONDS | 10 | how long POST /cancel waits for a final phase |
| SHUNTER_API_SIMULATOR | false | tell the UI the cluster's nodes are kwok's (`make demo`): |
|  |  | its submit form then offers the `sim.shunter.dev/*` fields |
| DATABASE_URL | (none) | PostgreSQL with the mirror, for GET /jobs |
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ApiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHUNTER_API_", extra="ignore")

    namespace: str = "default"
    watch_namespace: str | None = None
    auth: Literal["kubernetes", "none"] = "kubernetes"
    default_image: str = "shunter/trainer:latest"
    cancel_wait_seconds: float = Field(10.0, ge=0, le=120)
    simulator: bool = False
    database_url: str | None = Field(
        None, validation_alias=AliasChoices("DATABASE_URL", "SHUNTER_API_DATABASE_URL")
    )
