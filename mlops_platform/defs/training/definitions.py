"""Training: the hyperparameter search, the model, its evaluation and fairness gates, and the
`retrain_model` job with its weekly schedule."""

import dagster as dg

from mlops_platform.defs.project import Project
from mlops_platform.defs.training.evaluation import build_evaluation_asset
from mlops_platform.defs.training.fairness import build_fairness_asset
from mlops_platform.defs.training.hyperparameter_search import build_hyperparameter_search_asset
from mlops_platform.defs.training.jobs import build_retrain_job, build_weekly_retrain_schedule
from mlops_platform.defs.training.trained_model import build_trained_model_asset


def build(project: Project) -> dg.Definitions:
    settings, spec = project.settings, project.spec
    model_evaluation, evaluation_gates = build_evaluation_asset(settings, spec)
    fairness_report, fairness_gate = build_fairness_asset(settings, spec)
    retrain_model = build_retrain_job()
    return dg.Definitions(
        assets=[
            build_hyperparameter_search_asset(settings, spec),
            build_trained_model_asset(settings, spec),
            model_evaluation,
            fairness_report,
        ],
        asset_checks=[*evaluation_gates, fairness_gate],
        jobs=[retrain_model],
        schedules=[build_weekly_retrain_schedule(retrain_model)],
    )
