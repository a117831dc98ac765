"""What every stage's Definitions are built from: the settings and the dataset spec they name."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mlops_platform.datasets.check import require_matching_source
from mlops_platform.datasets.spec import DatasetSpec
from mlops_platform.settings import Settings

if TYPE_CHECKING:
    from dagster_dbt import DbtProject


@dataclass(frozen=True)
class Project:
    settings: Settings
    spec: DatasetSpec

    @classmethod
    def load(cls, settings: Settings | None = None) -> Project:
        """The environment's settings (or those given) and their spec, checked against its source."""
        settings = settings or Settings.from_env()
        spec = settings.load_spec()
        require_matching_source(spec, settings.dataset_spec_path)
        return cls(settings, spec)

    @functools.cached_property
    def dbt_project(self) -> DbtProject:
        """The dbt project rendered for this spec: the features stage's assets and the `dbt`
        resource share it."""
        from mlops_platform.defs.features.dbt import prepared_dbt_project

        return prepared_dbt_project(self.settings, self.spec)
