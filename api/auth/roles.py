"""Tenant roles (ordered: owner > admin > developer > viewer) and platform roles."""

from __future__ import annotations

import enum


class TenantRole(enum.StrEnum):
    VIEWER = "viewer"
    DEVELOPER = "developer"
    ADMIN = "admin"
    OWNER = "owner"

    @property
    def rank(self) -> int:
        return list(TenantRole).index(self)

    def satisfies(self, needed: TenantRole) -> bool:
        return self.rank >= needed.rank


class PlatformRole(enum.StrEnum):
    OPERATOR = "operator"
    AUDITOR = "auditor"


OPERATORS = (PlatformRole.OPERATOR,)
READERS = (PlatformRole.OPERATOR, PlatformRole.AUDITOR)
