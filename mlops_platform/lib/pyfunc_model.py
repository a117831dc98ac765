"""The registered MLflow model: a pyfunc around the TorchScript artifact.

The wrapper only reads the TorchScript file (network, preprocessing, vocabularies and
threshold inside); it does not use the training code's classes. Loading the pyfunc needs this
package for the wrapper class; the TorchScript file alone needs only torch.
"""

from importlib.metadata import version
from pathlib import Path

import mlflow.pyfunc
import pandas as pd

from mlops_platform.lib.model_artifact import ScoringModel, load_artifact

ARTIFACT_KEY = "torchscript"


def pyfunc_requirements() -> list[str]:
    """What the logged model needs, pinned to what trained it (MLflow's own inference of this
    fails on an editable install)."""
    return [f"{name}=={version(name)}" for name in ("mlflow", "torch", "pandas", "numpy", "mlops_platform")]


def log_pyfunc(artifact: Path, input_example: pd.DataFrame | None = None) -> "mlflow.models.model.ModelInfo":
    """Log the TorchScript file as this pyfunc (`model`) in the active MLflow run."""
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=TorchScriptClassifier(),
        artifacts={ARTIFACT_KEY: str(artifact)},
        input_example=input_example,
        pip_requirements=pyfunc_requirements(),
    )


class TorchScriptClassifier(mlflow.pyfunc.PythonModel):
    """`predict` returns the positive-class probability and the thresholded prediction."""

    def load_context(self, context: mlflow.pyfunc.PythonModelContext) -> None:
        self.model: ScoringModel = load_artifact(Path(context.artifacts[ARTIFACT_KEY]))

    def __getstate__(self) -> dict:
        # MLflow loads the instance to check the input example, then pickles it: the loaded
        # TorchScript module is rebuilt by load_context, never pickled.
        return {k: v for k, v in self.__dict__.items() if k != "model"}

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        probability = self.model.predict_proba(model_input)
        return pd.DataFrame(
            {"probability": probability, "prediction": (probability >= self.model.threshold).astype(int)}
        )
