"""Secrets move to the secrets server (OpenBao / Vault); the database keeps none.

* Signing keys: the private keys kept here (encrypted under CAMELEER_SECRET_KEY) are
  dropped; tokens and licenses are now signed by transit. The public keys stay, as retiring
  keys, so what they signed keeps verifying until the overlap passes and the key-maintenance
  job retires them. License rows now name transit key versions (``license-v<n>``), so their
  kid no longer references this table.
* Usage credentials: the secret now lives in the tenant's KV path; the table keeps the key
  id. Credentials issued before cannot be carried over (their secrets were encrypted under a
  key this revision no longer has): they are removed, and owners issue new ones.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade(app_role: str) -> None:
    op.drop_constraint("licenses_kid_fkey", "licenses", type_="foreignkey")
    op.execute("UPDATE signing_keys SET status = 'retiring', retiring_at = now() WHERE status = 'active'")
    op.drop_column("signing_keys", "private_key_encrypted")
    op.execute("DELETE FROM usage_credentials")
    op.drop_column("usage_credentials", "secret_encrypted")


def downgrade(app_role: str) -> None:
    # The private keys and the credentials' secrets are gone for good: the columns come back
    # empty, and the reference is not checked against licenses naming transit key versions.
    op.execute("DELETE FROM usage_credentials")
    op.add_column("usage_credentials", sa.Column("secret_encrypted", sa.LargeBinary(), nullable=False))
    op.add_column("signing_keys", sa.Column("private_key_encrypted", sa.LargeBinary(), nullable=True))
    op.execute("ALTER TABLE licenses ADD CONSTRAINT licenses_kid_fkey"
               " FOREIGN KEY (kid) REFERENCES signing_keys (kid) NOT VALID")
