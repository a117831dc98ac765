"""Tests of mlops_platform: real components on small data."""
