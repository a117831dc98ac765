"""What `trained_model` hands downstream: where the model is and how it was made."""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ModelRef:
    mlflow_run_id: str
    model_uri: str  # the logged MLflow model (pyfunc around the TorchScript file)
    artifact_path: str  # the TorchScript file, loadable with torch alone
    threshold: float
    training_set_version: str
    device: str
    params: dict = field(default_factory=dict)
    # The logistic-regression baseline (a TabularNet with no hidden layer, same preprocessing),
    # trained in the same MLflow run: a TorchScript file like `artifact_path`.
    baseline_artifact_path: str | None = None
