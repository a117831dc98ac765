"""Pure data and ML code: no Dagster imports, testable with a DataFrame and nothing else."""
