"""The dataset spec: everything the platform knows about a dataset, loaded from YAML.

No module of the platform names a column of a dataset; every column, type, domain,
label, sensitive attribute and gate threshold comes from a spec like `adult.yaml`.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from mlops_platform.datasets.metric_names import CLASSIFICATION_METRICS, FAIRNESS_GAPS
from mlops_platform.datasets.simulation import AnalysisPolicy, Shift

# Columns the platform adds at ingestion; a dataset may not use these names.
RESERVED_COLUMNS = frozenset(
    {"record_id", "event_timestamp", "ingestion_date", "label", "quarantine_reason", "raw_record"}
)
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]*$")


class SpecError(ValueError):
    """A dataset spec that cannot be used; the message names the file and the field."""


_INTEGER_CODE = re.compile(r"-?(0|[1-9][0-9]*)")
_LARGEST_CODE = 2**53  # beyond it a float no longer holds every integer


def is_integer_code(text: str) -> bool:
    """`0`, `17`, `-3`: the text of an integer with no sign, zero or space to spare."""
    return _INTEGER_CODE.fullmatch(text) is not None


def category_text(value: object) -> str:
    """A category value as text: YAML's `1` and `1.0` are the integer code `1`, text stays as it is.

    Refused: booleans (YAML reads unquoted yes/no/on/off/true/false so, and the text the user
    meant is lost: quoting it keeps it), floats that are not whole numbers, and numbers too large
    or not finite. Quote a category the CSV writes as `2.0`, `0.5` or `010`.
    """
    if isinstance(value, bool):
        raise ValueError(
            f"{str(value).lower()} was read as a boolean (YAML reads unquoted yes/no/on/off/true/false "
            'so): quote it, e.g. "yes"'
        )
    if isinstance(value, float):
        if not value.is_integer():
            raise ValueError(f"{value!r} is not an integer code: quote a category written with a fraction")
        value = int(value)
    if isinstance(value, int):
        if abs(value) > _LARGEST_CODE:
            raise ValueError(f"{value} is too large for an integer code: quote it")
        return str(value)
    if isinstance(value, str):
        return value
    raise ValueError(f"expected a string or a number, got {type(value).__name__}")


def _category_list(values: object) -> object:
    return [category_text(v) for v in values] if isinstance(values, list) else values


def _category(value: object) -> object:
    return category_text(value) if value is not None else value


# Integer and float values are accepted where categories are listed, and normalized to text.
CategoryValue = Annotated[str, BeforeValidator(_category)]
CategoryList = Annotated[list[str], BeforeValidator(_category_list)]


def shown(values: object) -> str:
    """Values in an error message as the spec's YAML spells them: `[0, 1]`, `>50K`."""
    if isinstance(values, list | tuple | set | frozenset):
        return "[" + ", ".join(shown(v) for v in values) + "]"
    return str(values)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ColumnSpec(_Strict):
    """One column of the landed data: its type and the expectations on its values."""

    type: Literal["integer", "float", "categorical", "timestamp"]
    nullable: bool = False
    min: float | None = None
    max: float | None = None
    domain: CategoryList | None = None

    @property
    def is_numeric(self) -> bool:
        return self.type in ("integer", "float")

    @model_validator(mode="after")
    def _bounds_match_type(self) -> ColumnSpec:
        if self.is_numeric and self.domain is not None:
            raise ValueError("'domain' applies to categorical columns only")
        if self.type == "timestamp" and self.domain is not None:
            raise ValueError("'domain' applies to categorical columns only")
        if not self.is_numeric and (self.min is not None or self.max is not None):
            raise ValueError("'min'/'max' apply to integer and float columns only")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        if self.domain is not None and not self.domain:
            raise ValueError("'domain' must list at least one value")
        return self


class SourceSpec(_Strict):
    """Where the demo data comes from, and which of its columns identify and time a record."""

    path: Path
    id_column: str | None = None
    timestamp_column: str | None = None


class LabelSpec(_Strict):
    column: str
    positive_class: CategoryValue


class FeaturesSpec(_Strict):
    """The model inputs, and how much of them the online store holds.

    `online_ttl_days`: the online store holds the records whose event day is within this many
    days of the newest one (what serving can still be asked for); older records live in the
    offline store only. null: every record online. `online_write_batch_size`: rows per
    online-store write.
    """

    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    online_ttl_days: int | None = Field(30, ge=1)
    online_write_batch_size: int = Field(10_000, ge=1)

    @property
    def all(self) -> list[str]:
        return [*self.numeric, *self.categorical]


class SensitiveAttribute(_Strict):
    """A column the fairness report groups by; numeric ones are binned at `bins` edges.

    `max_gaps` are the gate's limits for this attribute (a ceiling for differences, a
    floor for `demographic_parity_ratio`); gaps without a limit are reported, not gated.
    """

    column: str
    bins: list[float] | None = None
    max_gaps: dict[str, float] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _known_gaps(self) -> SensitiveAttribute:
        unknown = set(self.max_gaps) - set(FAIRNESS_GAPS)
        if unknown:
            raise ValueError(f"max_gaps: unknown gap(s) {sorted(unknown)}; known: {list(FAIRNESS_GAPS)}")
        if self.bins is not None and sorted(self.bins) != self.bins:
            raise ValueError("bins must be increasing")
        return self


class QualitySpec(_Strict):
    max_quarantine_fraction: float = Field(0.05, ge=0.0, le=1.0)


class SplitSpec(_Strict):
    """Fractions of records held out; assignment is a stable hash of the record id."""

    validation: float = Field(0.15, gt=0.0, lt=1.0)
    test: float = Field(0.15, gt=0.0, lt=1.0)

    @model_validator(mode="after")
    def _leaves_training_data(self) -> SplitSpec:
        if self.validation + self.test >= 0.9:
            raise ValueError("validation + test must leave at least 10% for training")
        return self


class SimulationSpec(_Strict):
    """How the demo splits the source into a reference period and daily landing batches.

    `sampling`: `sequential` lands day *i* as rows `[i * rows_per_day, (i + 1) * rows_per_day)`
    of the shuffled source and refuses days past its end; `resample` draws every day's rows
    with replacement, numeric values jittered; `auto` is sequential while the source holds the
    day and resamples after, so `rows_per_day` may exceed the source. `jitter`: the noise on
    resampled numeric values, as a fraction of each column's robust spread (scaled MAD).
    """

    start_date: dt.date
    reference_days: int = Field(30, ge=1)
    rows_per_day: int = Field(1000, ge=1)
    seed: int = Field(0, ge=0)
    sampling: Literal["auto", "sequential", "resample"] = "auto"
    jitter: float = Field(0.1, ge=0.0, le=1.0)
    # how `mlops demo` moves the data it lands after the first model, and its traffic:
    # `simulate-batches --shift` syntax (NUM=+15, CAT=VALUE:0.8)
    demo_drift: list[str] = Field(default_factory=list)


class SearchSpec(_Strict):
    """`hyperparameter_search`: Optuna trials scored on the validation split only.

    `trials: 0` turns the search off (`trained_model` takes the `training` values as they
    are). `timeout_minutes`: no trial starts after it. `parameters`: which of the training
    values the search varies (see `lib/hyperparameter_search.py` for their ranges).
    """

    trials: int = Field(0, ge=0)
    timeout_minutes: float | None = Field(None, gt=0.0)
    parameters: list[Literal["learning_rate", "weight_decay", "dropout", "hidden_sizes", "batch_size"]] = (
        Field(default_factory=lambda: ["learning_rate", "weight_decay", "dropout", "hidden_sizes"])
    )

    @model_validator(mode="after")
    def _something_to_search(self) -> SearchSpec:
        if self.trials > 0 and not self.parameters:
            raise ValueError("parameters: name at least one parameter to search, or set trials: 0")
        if len(set(self.parameters)) != len(self.parameters):
            raise ValueError("parameters: a parameter is listed twice")
        return self


class TrainingSpec(_Strict):
    """How `trained_model` trains; every launch path (UI, CLI, schedule, sensors) uses these
    values, and a run's config can override each one.

    `batch_size`, `epochs`, `patience`: null picks them from the size of the train split
    (`lib/training_params.py`: every epoch takes enough optimizer steps on 150 rows and on
    10 M). `time_budget_minutes`: training stops after the epoch that passes it (null: none).
    `class_weighting: balanced` weighs positives by negatives / positives in the loss.
    """

    hidden_sizes: list[int] = Field(default_factory=lambda: [64, 32])  # [] is a linear model
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    optimizer: Literal["adamw", "sgd"] = "adamw"
    learning_rate: float = Field(2e-3, gt=0.0)
    weight_decay: float = Field(1e-4, ge=0.0)
    batch_size: int | None = Field(None, ge=1)
    epochs: int | None = Field(None, ge=1)
    patience: int | None = Field(None, ge=1)
    class_weighting: Literal["none", "balanced"] = "none"
    seed: int = Field(0, ge=0)
    time_budget_minutes: float | None = Field(None, gt=0.0)
    search: SearchSpec = SearchSpec()

    @model_validator(mode="after")
    def _positive_widths(self) -> TrainingSpec:
        if any(width < 1 for width in self.hidden_sizes):
            raise ValueError(f"hidden_sizes {self.hidden_sizes}: every layer needs at least 1 unit")
        return self


class GateSpec(_Strict):
    """Thresholds of the model gates (evaluation, fairness, drift).

    `min_metrics`/`max_metrics`: test-split limits. `judge`: `point` applies a limit to the
    measured value, `interval` to the worse end of its bootstrap 95% interval (what a small
    test split can vouch for). `regression_tolerance`: how much worse than the current
    champion a metric may be. `baseline_tolerance`: how far the model's validation ROC AUC
    may trail the logistic-regression baseline's. `min_group_size`: a smaller group's rates
    are noise; a gated gap that needs it cannot be measured, and `on_unmeasurable` says
    whether that fails the fairness gate (`fail`) or passes it with a warning (`warn`).
    """

    min_metrics: dict[str, float] = Field(default_factory=dict)
    max_metrics: dict[str, float] = Field(default_factory=dict)
    judge: Literal["point", "interval"] = "point"
    regression_tolerance: float = Field(0.01, ge=0.0)
    regression_metrics: list[str] = Field(default_factory=lambda: ["roc_auc", "pr_auc"])
    baseline_tolerance: float = Field(0.01, ge=0.0)
    min_group_size: int = Field(30, ge=1)
    on_unmeasurable: Literal["fail", "warn"] = "fail"
    bootstrap_samples: int = Field(500, ge=50)
    max_drift_share: float = Field(0.3, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _known_metrics(self) -> GateSpec:
        named = [*self.min_metrics, *self.max_metrics, *self.regression_metrics]
        unknown = sorted(set(named) - set(CLASSIFICATION_METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(CLASSIFICATION_METRICS)}")
        return self


class MonitoringSpec(_Strict):
    """How `drift_sensor` watches served traffic: the newest `window_rows` predictions are
    compared with the training data once at least `min_window_rows` arrived; after requesting a
    retrain it waits for the drift episode to end and at least `retrain_cooldown_minutes`."""

    sensor_interval_seconds: int = Field(60, ge=5)  # how often drift_sensor looks at new predictions
    window_rows: int = Field(1000, ge=50)
    min_window_rows: int = Field(300, ge=30)
    reference_rows: int = Field(2000, ge=100)
    retrain_cooldown_minutes: float = Field(60.0, ge=0.0)
    min_labelled_rows: int = Field(100, ge=10)  # live_performance judges a version from this many
    max_live_degradation: float = Field(0.05, ge=0.0)  # live metric below registration's by at most
    live_metrics: list[str] = Field(default_factory=lambda: ["roc_auc"])

    @model_validator(mode="after")
    def _known_live_metrics(self) -> MonitoringSpec:
        unknown = sorted(set(self.live_metrics) - set(CLASSIFICATION_METRICS))
        if unknown:
            raise ValueError(
                f"live_metrics: unknown metric(s) {unknown}; known: {list(CLASSIFICATION_METRICS)}"
            )
        return self

    @model_validator(mode="after")
    def _window_holds_minimum(self) -> MonitoringSpec:
        if self.min_window_rows > self.window_rows:
            raise ValueError("min_window_rows must not exceed window_rows")
        return self


class DeploymentSpec(_Strict):
    """The defaults of `deploy_model`'s canary (a run's config can override them): the traffic
    steps, how long each one dwells at least, how long it may wait for enough requests, and
    the analysis thresholds (`AnalysisPolicy` in `lib/canary_analysis.py`, whose defaults apply
    to any threshold not named here)."""

    canary_steps: list[int] = Field(default_factory=lambda: [10, 50, 100])
    dwell_seconds: float = Field(30.0, ge=0.0)
    max_wait_seconds: float = Field(300.0, ge=0.0)
    analysis: dict[str, float] = Field(default_factory=dict)
    # Governance: a person approves each version (`mlops approve`) before it takes any traffic;
    # deploy_model waits at most `approval_timeout_seconds` for the decision. Not run config:
    # a run cannot waive it.
    require_approval: bool = False
    approval_timeout_seconds: float = Field(3600.0, gt=0.0)

    @model_validator(mode="after")
    def _steps_end_at_full_traffic(self) -> DeploymentSpec:
        steps = self.canary_steps
        if (
            not steps
            or steps[-1] != 100
            or any(not 0 < s <= 100 for s in steps)
            or steps != sorted(set(steps))
        ):
            raise ValueError(f"canary_steps {steps}: increasing percents in (0, 100], the last one 100")
        return self

    @model_validator(mode="after")
    def _known_thresholds(self) -> DeploymentSpec:
        known = set(AnalysisPolicy.__dataclass_fields__)
        unknown = sorted(set(self.analysis) - known)
        if unknown:
            raise ValueError(f"analysis: unknown threshold(s) {unknown}; known: {sorted(known)}")
        return self


class DatasetSpec(_Strict):
    """A dataset, fully described: the one input every asset is built from."""

    name: str
    description: str = ""
    model_name: str | None = None
    source: SourceSpec
    columns: dict[str, ColumnSpec]
    label: LabelSpec
    features: FeaturesSpec
    sensitive_attributes: list[SensitiveAttribute] = Field(default_factory=list)
    quality: QualitySpec = QualitySpec()
    split: SplitSpec = SplitSpec()
    simulation: SimulationSpec
    training: TrainingSpec = TrainingSpec()
    gates: GateSpec = GateSpec()
    monitoring: MonitoringSpec = MonitoringSpec()
    deployment: DeploymentSpec = DeploymentSpec()

    @property
    def registered_model_name(self) -> str:
        return self.model_name or f"{self.name}_classifier"

    @model_validator(mode="after")
    def _references_resolve(self) -> DatasetSpec:
        if not _IDENTIFIER.match(self.name):
            raise ValueError(f"name {self.name!r} must be a lower-case identifier")
        for column in self.columns:
            if not _IDENTIFIER.match(column):
                raise ValueError(f"columns.{column}: must be a lower-case SQL identifier")
            if column in RESERVED_COLUMNS:
                raise ValueError(f"columns.{column}: the platform reserves this name")
        self._require_column("label.column", self.label.column)
        label = self.columns[self.label.column]
        if label.domain is not None and self.label.positive_class not in label.domain:
            raise ValueError(
                f"label.positive_class {shown(self.label.positive_class)} is not in the domain "
                f"of column {self.label.column}: {shown(label.domain)}"
            )
        for kind, names in (("numeric", self.features.numeric), ("categorical", self.features.categorical)):
            for name in names:
                self._require_column(f"features.{kind}", name)
                if name == self.label.column:
                    raise ValueError(f"features.{kind}: {name!r} is the label")
                expected = ("integer", "float") if kind == "numeric" else ("categorical",)
                if self.columns[name].type not in expected:
                    raise ValueError(f"features.{kind}: column {name!r} has type {self.columns[name].type!r}")
        if not self.features.all:
            raise ValueError("features: list at least one numeric or categorical feature")
        if len(set(self.features.all)) != len(self.features.all):
            raise ValueError("features: a column is listed twice")
        for i, attr in enumerate(self.sensitive_attributes):
            self._require_column(f"sensitive_attributes.{i}.column", attr.column)
            if attr.column in [a.column for a in self.sensitive_attributes[:i]]:
                raise ValueError(f"sensitive_attributes.{i}.column: {attr.column!r} is listed twice")
            if attr.bins is not None and not self.columns[attr.column].is_numeric:
                raise ValueError(f"sensitive_attributes.{i}.bins: {attr.column!r} is not numeric")
        for i, text in enumerate(self.simulation.demo_drift):
            try:
                column = Shift.parse(text).column
            except ValueError as exc:
                raise ValueError(f"simulation.demo_drift.{i}: {exc}") from None
            self._require_column(f"simulation.demo_drift.{i}", column)
        if self.source.id_column is not None:
            self._require_column("source.id_column", self.source.id_column)
        if self.source.timestamp_column is not None:
            self._require_column("source.timestamp_column", self.source.timestamp_column)
            if self.columns[self.source.timestamp_column].type != "timestamp":
                raise ValueError("source.timestamp_column: the column must have type 'timestamp'")
        return self

    def _require_column(self, field: str, name: str) -> None:
        if name not in self.columns:
            raise ValueError(f"{field}: {name!r} is not declared under 'columns'")


def load_spec(path: str | Path) -> DatasetSpec:
    """Load and validate a spec; relative source paths resolve against the spec's folder."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"dataset spec {path} does not exist")
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SpecError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise SpecError(f"{path}: expected a mapping at the top level")
    try:
        spec = DatasetSpec.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<spec>'}: {err['msg']}" for err in exc.errors()
        )
        raise SpecError(f"{path}: {problems}") from None
    if not spec.source.path.is_absolute():
        source = spec.source.model_copy(update={"path": (path.parent / spec.source.path).resolve()})
        spec = spec.model_copy(update={"source": source})
    return spec


def shipped_spec_path(name: str = "adult") -> Path:
    """Path of a spec shipped inside the package."""
    return Path(__file__).parent / f"{name}.yaml"
