"""Per call, where its time went inside the engine: queue, prefill, decode, preemptions.

The worker reads them from vLLM's per-request stats; `saga-hpc fit-profile` fits
the simulator's cost profile to them. Nullable: rows written before, and calls
served by an engine without these stats, have none.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        batch.add_column(sa.Column("engine_queue_s", sa.Float))
        batch.add_column(sa.Column("prefill_s", sa.Float))
        batch.add_column(sa.Column("decode_s", sa.Float))
        batch.add_column(sa.Column("preemptions", sa.Integer))


def downgrade() -> None:
    with op.batch_alter_table("calls") as batch:
        for column in ("preemptions", "decode_s", "prefill_s", "engine_queue_s"):
            batch.drop_column(column)
