"""Request and response bodies of the tenant endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, EmailStr, Field

from api.auth.passwords import NewPassword
from api.db.models import Operation, Tenant
from api.tiers import SlugField, TierName


class SignupRequest(BaseModel):
    organization_name: str = Field(min_length=1, max_length=200, examples=["Acme Corp"])
    slug: SlugField = Field(examples=["acme"])
    owner_email: EmailStr
    owner_password: NewPassword
    tier: TierName = Field(examples=["low"])


class SignupVerification(BaseModel):
    token: str = Field(min_length=16, max_length=200, description="The token of the mailed link (after #token=)")


class OrganizationRequest(BaseModel):
    organization_name: str = Field(min_length=1, max_length=200, examples=["Acme Labs"])
    slug: SlugField = Field(examples=["acme-labs"])
    tier: TierName = Field(examples=["low"])


SIGNUP_MAILED = "A mail is on its way to the owner's address; follow its link to create the organisation."


class SignupAccepted(BaseModel):
    """The answer to every accepted signup, whether or not the email already has an account."""

    status: Literal["verification_mailed"] = "verification_mailed"
    detail: str = SIGNUP_MAILED


class ChangeTierRequest(BaseModel):
    tier: TierName


class TenantOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    tier: str
    status: str
    placement: str
    failure_reason: str | None
    created_at: datetime

    @classmethod
    def of(cls, tenant: Tenant) -> TenantOut:
        return cls.model_validate(tenant, from_attributes=True)


class OperationRef(BaseModel):
    id: uuid.UUID
    kind: str
    status: str
    url: str

    @classmethod
    def of(cls, operation: Operation) -> OperationRef:
        return cls(id=operation.id, kind=operation.kind, status=operation.status, url=f"/v1/operations/{operation.id}")


class AcceptedOperation(BaseModel):
    tenant: TenantOut
    operation: OperationRef


class MemberOut(BaseModel):
    user_id: uuid.UUID
    email: str
    role: str


class HistoryEntry(BaseModel):
    at: datetime
    source: str  # "audit" or "stack"
    action: str
    actor: str | None = None
    result: str
    details: dict[str, Any] = Field(default={}, description=(
        "An audit record's details; for a stack update: stack, version, message, resource_changes, ended_at "
        "and operation_id, the tenant's operation the update was made for (null for one made outside the service)"))


class TenantHistory(BaseModel):
    tenant_id: uuid.UUID
    entries: list[HistoryEntry]
    stack_history_error: str | None = None
