"""A used refresh token keeps its successor, sealed with a key derived from the used token
itself, for the reuse interval (api.auth.sessions): a repeat within it (a retried refresh, two
tabs renewing at once) is answered with the same successor instead of ending the session.

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0017"
down_revision = "0016"
branch_labels = None
depends_on = None


def upgrade(app_role: str) -> None:
    op.add_column("refresh_tokens", sa.Column("successor_sealed", sa.LargeBinary()))


def downgrade(app_role: str) -> None:
    op.drop_column("refresh_tokens", "successor_sealed")
