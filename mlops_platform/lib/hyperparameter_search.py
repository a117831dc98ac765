"""Hyperparameter search with Optuna, judged on the validation split only.

Each trial trains with `lib.training.fit` and reports its validation loss after every epoch:
a median pruner stops trials that trail the median of earlier ones at the same epoch, and the
trial's value is its best validation loss. The test split is never read here. The TPE sampler
is seeded and training is deterministic, so the same data, parameters and trial budget give the
same trials (a `timeout_minutes` that cuts the search short makes the number of trials depend
on the machine's speed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_platform.lib.training_params import TINY_BATCH_SIZE, TrainingParams, auto_batch_size

if TYPE_CHECKING:
    import optuna
    import torch

    from mlops_platform.lib.training import TrainingData

# The space searched for each parameter the spec names (`training.search.parameters`).
LEARNING_RATE = (1e-4, 3e-2)  # log-uniform
WEIGHT_DECAY = (1e-6, 1e-1)  # log-uniform
DROPOUT = (0.0, 0.5)
HIDDEN_SIZES = ("16", "32", "64", "32-16", "64-32", "128-64")  # layer widths, input side first
BATCH_SIZE_FACTORS = (0.25, 0.5, 1.0, 2.0)  # times the automatic batch size of the train split
PRUNER_STARTUP_TRIALS = 5  # trials that always run to the end before the pruner judges others
PRUNER_WARMUP_EPOCHS = 3


@dataclass
class Trial:
    """One trial: what it tried, how it ended, its validation loss per epoch."""

    number: int
    params: dict[str, Any]  # the searched values, as `TrainingParams` fields
    state: str  # COMPLETE, PRUNED or FAIL
    value: float | None  # best validation loss; None when it failed
    best_epoch: int | None
    history: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class SearchResult:
    best: Trial
    trials: list[Trial]

    @property
    def best_params(self) -> dict[str, Any]:
        return dict(self.best.params)


def _suggest(trial: optuna.Trial, name: str, train_rows: int) -> Any:
    if name == "learning_rate":
        return trial.suggest_float(name, *LEARNING_RATE, log=True)
    if name == "weight_decay":
        return trial.suggest_float(name, *WEIGHT_DECAY, log=True)
    if name == "dropout":
        return trial.suggest_float(name, *DROPOUT)
    if name == "hidden_sizes":
        return [int(width) for width in trial.suggest_categorical(name, HIDDEN_SIZES).split("-")]
    if name == "batch_size":
        auto = auto_batch_size(train_rows)
        choices = sorted({max(TINY_BATCH_SIZE, int(auto * f)) for f in BATCH_SIZE_FACTORS})
        return trial.suggest_categorical(name, choices)
    raise ValueError(f"training.search.parameters: cannot search {name!r}")


def search(
    load: Callable[[TrainingParams], TrainingData],
    base: TrainingParams,
    parameters: Sequence[str],
    trials: int,
    timeout_minutes: float | None = None,
    device: torch.device | None = None,
    on_trial: Callable[[Trial], None] | None = None,
) -> SearchResult:
    """Run up to `trials` trials varying `parameters` around `base`; the lowest validation loss wins.

    `load` gives the training data for a trial's parameters (its batch size may differ).
    `on_trial` is called after each trial (to log it). A trial whose validation loss is never
    finite (it diverged) fails and the search goes on. Raises ValueError when no trial completed.
    """
    import optuna

    from mlops_platform.lib.training import fit

    if trials < 1:
        raise ValueError("a search needs at least one trial")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=base.seed),
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_EPOCHS
        ),
    )
    done: list[Trial] = []
    loaded: dict[int | None, TrainingData] = {}

    def finish(record: Trial, state: str, started: float) -> None:
        record.state = state
        record.seconds = time.perf_counter() - started
        losses = [epoch["validation_loss"] for epoch in record.history]
        losses = [loss if math.isfinite(loss) else math.inf for loss in losses]
        if losses and min(losses) < math.inf:
            record.value = min(losses)
            record.best_epoch = losses.index(record.value) + 1
        done.append(record)
        if on_trial is not None:
            on_trial(record)

    def objective(trial: optuna.Trial) -> float:
        if None not in loaded:
            loaded[None] = load(base)
        first = loaded[None]
        suggested = {name: _suggest(trial, name, first.train.rows) for name in parameters}
        params = dataclasses.replace(base, **suggested)
        if params.batch_size in (None, first.params.batch_size):
            data = first
        else:
            if params.batch_size not in loaded:
                loaded[params.batch_size] = load(params)
            data = loaded[params.batch_size]
        data = dataclasses.replace(data, params=params.for_rows(data.train.rows))
        record = Trial(trial.number, suggested, "RUNNING", None, None)
        started = time.perf_counter()

        def report(epoch: dict[str, float]) -> None:
            record.history.append(epoch)
            trial.report(epoch["validation_loss"], int(epoch["epoch"]))
            if trial.should_prune():
                raise optuna.TrialPruned()

        try:
            fit(data, device=device, on_epoch=report)
        except optuna.TrialPruned:
            finish(record, "PRUNED", started)
            raise
        except Exception:
            finish(record, "FAIL", started)
            raise
        diverged = not any(math.isfinite(e["validation_loss"]) for e in record.history)
        finish(record, "FAIL" if diverged else "COMPLETE", started)
        return math.nan if diverged else record.value  # NaN: Optuna fails the trial and goes on

    study.optimize(
        objective,
        n_trials=trials,
        timeout=timeout_minutes * 60 if timeout_minutes is not None else None,
        catch=(),
    )
    completed = [t for t in done if t.state == "COMPLETE"]
    if not completed:
        states = ", ".join(f"{[t.state for t in done].count(x)} {x.lower()}" for x in ("PRUNED", "FAIL"))
        raise ValueError(
            f"no trial of {len(done)} completed ({states}; a failed trial never reached a finite "
            "validation loss): see the trials' runs in MLflow"
        )
    best = next(t for t in completed if t.number == study.best_trial.number)
    return SearchResult(best=best, trials=sorted(done, key=lambda t: t.number))


def trials_table(result: SearchResult) -> str:
    """The trials as a markdown table, the best one marked."""
    names = sorted({name for t in result.trials for name in t.params})
    lines = [
        "| trial | state | validation loss | best epoch | epochs run | "
        + " | ".join(names)
        + " |\n|---:|---|---:|---:|---:|"
        + "---|" * len(names)
    ]
    for t in result.trials:
        mark = " (best)" if t.number == result.best.number else ""
        value = f"{t.value:.4f}" if t.value is not None else "-"
        shown = [_shown(t.params.get(name)) for name in names]
        lines.append(
            f"| {t.number}{mark} | {t.state} | {value} | {t.best_epoch or '-'} | {len(t.history)} | "
            + " | ".join(shown)
            + " |"
        )
    return "\n".join(lines)


def _shown(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return "-" if value is None else str(value)


def plot_trials(result: SearchResult, path: Path) -> Path:
    """Validation loss of each trial (pruned ones hollow) and the best so far."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6))
    scored = [t for t in result.trials if t.value is not None]
    for state, marker in (("COMPLETE", "o"), ("PRUNED", "x")):
        shown = [t for t in scored if t.state == state]
        ax.scatter([t.number for t in shown], [t.value for t in shown], marker=marker, label=state.lower())
    best, running = [], float("inf")
    for t in scored:
        if t.state == "COMPLETE":
            running = min(running, t.value)
        best.append(running)
    ax.step([t.number for t in scored], best, where="post", color="black", label="best so far")
    ax.set(xlabel="trial", ylabel="validation loss (best epoch)", title="Hyperparameter search")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
