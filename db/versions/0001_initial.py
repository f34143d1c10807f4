"""Accounts, users, associations, API keys, workflows, calls (AEG nodes), tool edges, ledger.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("parent", sa.String(64)),
        sa.Column("fairshare", sa.Integer, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
    )
    op.create_table(
        "associations",
        sa.Column(
            "user", sa.String(64), sa.ForeignKey("users.name", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column(
            "account",
            sa.String(64),
            sa.ForeignKey("accounts.name", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("fairshare", sa.Integer, nullable=False),
    )
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(16), primary_key=True),
        sa.Column("user", sa.String(64), sa.ForeignKey("users.name"), nullable=False),
        sa.Column("account", sa.String(64), sa.ForeignKey("accounts.name"), nullable=False),
        sa.Column("secret_sha256", sa.String(64), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("note", sa.String(200)),
    )
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("started_at", sa.Float, nullable=False),
        sa.Column("finished_at", sa.Float),
    )
    op.create_index("ix_workflows_account", "workflows", ["account"])
    op.create_index("ix_workflows_started_at", "workflows", ["started_at"])
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(64), primary_key=True),
        sa.Column("workflow_id", sa.String(128), sa.ForeignKey("workflows.id"), nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("model", sa.String(128), nullable=False),
        sa.Column("worker", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("arrived_at", sa.Float, nullable=False),
        sa.Column("dispatched_at", sa.Float, nullable=False),
        sa.Column("first_token_at", sa.Float),
        sa.Column("finished_at", sa.Float, nullable=False),
        sa.Column("worker_time_s", sa.Float, nullable=False),
        sa.Column("next_tool", sa.String(64)),
    )
    op.create_index("ix_calls_workflow_seq", "calls", ["workflow_id", "seq"])
    op.create_table(
        "tool_edges",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("workflow_id", sa.String(128), sa.ForeignKey("workflows.id"), nullable=False),
        sa.Column("from_call", sa.String(64), sa.ForeignKey("calls.call_id"), nullable=False),
        sa.Column("to_call", sa.String(64), sa.ForeignKey("calls.call_id"), nullable=False),
        sa.Column("tool", sa.String(64), nullable=False),
        sa.Column("duration_s", sa.Float, nullable=False),
        sa.UniqueConstraint("to_call", name="uq_tool_edges_to_call"),
    )
    op.create_index("ix_tool_edges_workflow_id", "tool_edges", ["workflow_id"])
    op.create_table(
        "usage_ledger",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "call_id", sa.String(64), sa.ForeignKey("calls.call_id"), nullable=False, unique=True
        ),
        sa.Column("workflow_id", sa.String(128), nullable=False),
        sa.Column("account", sa.String(64), nullable=False),
        sa.Column("user", sa.String(64), nullable=False),
        sa.Column("prompt_tokens", sa.Integer, nullable=False),
        sa.Column("cached_tokens", sa.Integer, nullable=False),
        sa.Column("output_tokens", sa.Integer, nullable=False),
        sa.Column("worker_seconds", sa.Float, nullable=False),
        sa.Column("at", sa.Float, nullable=False),
    )
    op.create_index("ix_ledger_account_at", "usage_ledger", ["account", "at"])


def downgrade() -> None:
    for table in (
        "usage_ledger",
        "tool_edges",
        "calls",
        "workflows",
        "api_keys",
        "associations",
        "users",
        "accounts",
    ):
        op.drop_table(table)
