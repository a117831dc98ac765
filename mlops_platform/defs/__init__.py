"""Dagster definitions, one package per lifecycle stage."""
