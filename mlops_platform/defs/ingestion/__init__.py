"""Ingestion: landing files to validated `raw_data` and `quarantined_rows`."""
