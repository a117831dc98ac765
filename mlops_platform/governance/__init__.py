"""Governance: approvals, traces, the audit trail and reproduction, read from the MLflow registry
and the Dagster instance (no store of their own)."""
