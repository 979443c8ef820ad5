"""Typed schemas for every config group, registered in Hydra's ConfigStore.

The root schema is stored as ``base_config`` and named as the first default of
``configs/config.yaml``, so every group option is merged onto a typed node: an unknown
key or a value of the wrong type fails at composition time with one clear line.
Value checks that types cannot express (positive epochs, a known optimizer name) live
in :func:`validate`, which runs before TensorFlow is imported.

This module must stay free of TensorFlow imports: ``dlrun --help`` and config errors
answer from here.
"""

from __future__ import annotations

import difflib
import math
import os
from dataclasses import MISSING as MISSING_FIELD
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING

from dlrun.errors import ConfigError
from dlrun.task import HEADLINES

TASKS = ("binary", "multiclass", "regression")
SCALINGS = ("standard", "minmax", "none")
SCHEDULES = ("constant", "exponential", "step", "cosine", "inverse_time")
EVALS = ("holdout", "kfold", "iterated_kfold")
DEVICES = ("auto", "cpu", "gpu")
PROGRESS = ("auto", "rich", "plain", "none")
LOOPS = ("auto", "fast", "fit")
ACTIVATIONS = ("relu", "elu", "selu", "gelu", "tanh", "sigmoid", "swish", "leaky_relu", "linear")


@dataclass
class CreditConfig:
    """credit_synthetic's generator (dlrun.data.credit): a planted, documented bias."""

    rows: int = 6000
    share_b: float = 0.4  # share of applicants in group B
    label_bias: float = 1.0  # logit taken off group B's historical decisions
    proxy_strength: float = 0.8  # how strongly the neighbourhood score tracks the group
    data_seed: int = 7  # the data is fixed; the run's seed varies splits and weights


@dataclass
class CompasConfig:
    """compas's rows (dlrun.data.compas): which race values to keep."""

    # ProPublica's two-group comparison; [] keeps all six values (three have under 350 rows).
    races: list[str] = field(default_factory=lambda: ["African-American", "Caucasian"])


@dataclass
class DatasetConfig:
    """Which data to load and how to prepare it."""

    name: str = MISSING
    task: str | None = None  # binary | multiclass | regression; None infers it from the target
    path: str | None = None  # csv: the file; downloadable sets: a local copy
    target: str | None = None  # csv: the label column
    scaling: str = "standard"  # fitted on the training split only
    test_size: float = 0.2
    val_size: float = 0.2  # fraction of what is left after the test split
    max_rows: int | None = None  # stratified subsample, for quick runs and tests
    sensitive: str | None = None  # a column kept aside per row (fairness), not a model input
    sensitive_as_feature: bool = False  # also feed dataset.sensitive to the model
    image_size: int = 32  # image_folder: images are resized to image_size x image_size
    minority_fraction: float = 0.09  # mnist_imbalanced: the rare classes' share of the training data
    classes: list[int] | None = None  # mnist_digits: the digits kept (null: all ten)
    per_class: int | None = None  # mnist_digits: labelled images per digit for training and validation
    test_path: str | None = None  # data that comes split: its test half (image_folder: a folder)
    # image_folder: true reads batches from disk (decoded once into a uint8 cache file);
    # false holds every image in memory as float32; auto streams when that array would take
    # over a quarter of the memory available.
    stream: str = "auto"
    cache_dir: str | None = None  # streamed images' decoded cache; None: ~/.cache/dlrun/images
    # csv: reading and cleaning (dlrun.data.csv_table checks these values where it uses them)
    sep: str | None = None  # the delimiter, e.g. ';' or tab; None sniffs , ; tab | from the first 4 KB
    encoding: str = "utf-8"  # never guessed: a file not in it is refused, naming dataset.encoding=latin-1
    na_values: list[str] = field(default_factory=list)  # cell texts meaning missing besides NA and empty: [?]
    missing: str = "impute"  # impute (fitted on the training split) | drop (the rows) | refuse
    # A text column with more distinct values than this share of its filled cells names
    # rows (IDs, names, free text): each value is seen about once, so its one-hot columns
    # cannot generalize, and it is dropped with a warning. 1 keeps every column.
    identifier_fraction: float = 0.9
    identifier_min_distinct: int = 50  # ...and at least this many values: a small table's categories stay
    # One-hot columns per text column, the infrequent bucket included: the width, and so
    # memory, stays bounded whatever the cardinality. None: one column per category.
    max_categories: int | None = 50
    min_frequency: int = 5  # categories seen in fewer training rows share the infrequent bucket
    credit: CreditConfig = field(default_factory=CreditConfig)  # credit_synthetic only
    compas: CompasConfig = field(default_factory=CompasConfig)  # compas only


@dataclass
class ModelConfig:
    name: str = MISSING  # logreg | mlp | cnn
    width: int = 64
    depth: int = 2
    activation: str = "relu"
    initializer: str = "glorot_uniform"
    batch_norm: bool = False
    filters: int = 16  # cnn: filters of the first block, doubled per block
    blocks: int = 2  # cnn: conv blocks
    weights: str | None = None  # a .weights.h5 file loaded into the built model, or a whole .keras model
    # model=transfer (dlrun.models.transfer, dlrun.transfer); weights there: imagenet | none | a
    # weights file for the backbone; null: the backbone's own (imagenet, or the .keras file's)
    backbone: str | None = None  # a keras.applications name, a dlrun model.keras, or "source"
    source: list[str] = field(default_factory=list)  # backbone=source: the dlrun overrides that train it
    mode: str = "feature_extraction"  # feature_extraction | fine_tune | scratch
    unfreeze: int = 2  # fine_tune: weighted layers at the top of the backbone trained in phase 2
    fine_tune_lr: float | None = None  # fine_tune: phase 2's learning rate; null: optimizer.lr / 10
    fine_tune_epochs: int | None = None  # fine_tune: the last epochs of trainer.epochs; null: half


@dataclass
class RegConfig:
    name: str = MISSING
    l1: float = 0.0
    l2: float = 0.0
    dropout: float = 0.0
    early_stopping: bool = False
    patience: int = 10  # epochs without improvement of the monitored value
    min_delta: float = 0.0
    monitor: str = "val_loss"
    restore_best_weights: bool = True


@dataclass
class OptimizerConfig:
    name: str = MISSING
    lr: float = MISSING
    batch_size: int = 32
    momentum: float = 0.0  # sgd-family only
    nesterov: bool = False
    rho: float = 0.9  # rmsprop
    beta_1: float = 0.9  # adam-family
    beta_2: float = 0.999
    epsilon: float = 1e-7
    weight_decay: float = 0.0  # adamw decoupled weight decay
    clipnorm: float | None = None
    schedule: str = "constant"
    decay_rate: float = 0.5  # exponential/step/inverse_time: factor per decay_epochs
    decay_epochs: float = 10.0
    min_lr_fraction: float = 0.0  # cosine: the floor, as a fraction of lr
    # multiplies lr: a sweep over lr_scale is a grid relative to each optimizer's usual rate
    lr_scale: float = 1.0


@dataclass
class EvalConfig:
    name: str = MISSING  # holdout | kfold | iterated_kfold
    folds: int = 5
    repeats: int = 1
    # holdout only: train on train + validation and score once on test (a tuned configuration's
    # final fit); the validation scores are then measured on training rows
    refit: bool = False


@dataclass
class TrainerConfig:
    epochs: int = 100
    device: str = "auto"  # auto | cpu | gpu
    mixed_precision: bool = False  # float16 compute, only where a GPU is present
    loop: str = "auto"  # auto (compiled epoch loop for in-memory data) | fast | fit
    progress: str = "auto"  # auto: rich on a terminal, plain lines otherwise
    save_model: bool = False
    deterministic: bool = True  # op determinism: same seed, same numbers on CPU
    threads: int = 0  # TF intra-op threads; 0 lets TF choose (1 per job under joblib)
    tensorboard: bool = False
    reduce_lr_on_plateau: bool = False
    resume: bool = False  # continue from the last epoch checkpoint in the run folder
    checkpoint_every: int = 10  # epochs between resumable checkpoints (each costs a save); 0: off
    # ...and at least this many seconds between two saves, so that short epochs do not pay a
    # save (a few milliseconds, more on a busy disk) every few epochs; 0: every checkpoint_every
    checkpoint_seconds: float = 0.0
    # Under hydra/launcher=joblib, the jobs that differ only in seed train side by side in
    # one stacked network (dlrun.seed_group); configurations that cannot stack run alone.
    parallel_seeds: bool = False
    # In a sweep, each run's curves.png and confusion_matrix.png are drawn when the sweep ends,
    # all at once in parallel, instead of inside the job (a single run draws them at once).
    defer_plots: bool = True


@dataclass
class SamplingConfig:
    """Class-imbalance treatment of the training split (dlrun.sampling)."""

    name: str = "none"  # none | class_weight | oversample | undersample | smote


@dataclass
class AugmentConfig:
    """Random transformations of training images (dlrun.augment); 0 leaves one out."""

    name: str = "none"  # none | basic | strong
    rotation: float = 0.0  # fraction of a full turn, either way
    translation: float = 0.0  # fraction of height and width, either way
    zoom: float = 0.0  # fraction in or out
    contrast: float = 0.0  # contrast factor range around 1
    flip: bool = False  # horizontal flips: only where a mirror image keeps its class (not digits)


@dataclass
class FairnessConfig:
    """Fairness audit and mitigation over dataset.sensitive (dlrun.fairness)."""

    name: str = "none"  # none | audit | reweighing | threshold | unaware
    constraint: str = "demographic_parity"  # threshold: demographic_parity | equalized_odds


@dataclass
class TaskConfig:
    """What the task type decides unless set here (DESIGN §2)."""

    headline: str | None = None  # the metric reports lead with and sweeps rank by; None: by task
    threshold: float = 0.5  # binary: the score at or above which a row is called positive


@dataclass
class DiagnosisConfig:
    bayes_error: float | None = None  # the error you believe unavoidable, if known
    # auto: fit a fast classical model on the same training split (gradient boosting for
    # tables, logistic regression for images) and measure avoidable bias against it; none: off
    reference: str = "auto"
    gap_threshold: float = 0.02  # train-validation gap (headline metric) called overfitting
    underfit_threshold: float = 0.05  # distance to the best reachable score called underfitting


TUNERS = ("none", "gp", "forest", "gbrt", "random", "grid")
ACQ_FUNCS = ("gp_hedge", "EI", "LCB", "PI")


@dataclass
class TunerConfig:
    """Hyperparameter search by the skopt sweeper (``tuner=gp``; hydra_plugins.dlrun_skopt_sweeper)."""

    name: str = "none"  # none | gp | forest | gbrt | random | grid
    n_calls: int = 20  # trials in all, the resumed ones included
    n_initial_points: int = 10  # random points before the model proposes (skopt's default)
    n_jobs: int = 1  # points asked per batch and launched together (use the joblib launcher)
    acq_func: str = "gp_hedge"  # gp_hedge | EI | LCB | PI
    # sampling: the acquisition scored at 10,000 random points (a fraction of a second);
    # lbfgs: gp_minimize's default, refined by gradients from there (seconds per trial on a CPU)
    acq_optimizer: str = "sampling"
    seed: int = 0  # the search's own seed; the jobs keep the root seed (same split, same init)
    grid_points: int = 5  # grid: values taken from each interval (geometric under tag(log, ...))
    refit: bool = True  # retrain the best trial on train + validation and score it once on test
    # the refit's epochs: null keeps the trials' trainer.epochs; more lets a search run at low
    # cost (short trials) and the one final model train to the end
    refit_epochs: int | None = None


@dataclass
class StudyConfig:
    """What a sweep compares and which claim its report checks."""

    name: str | None = None
    kind: str = "generic"  # generic | capacity | regularization | optimizers
    claim: str | None = None
    baseline: str | None = None  # the group value the others are measured against
    target_fraction: float = 0.95  # time-to-target: this fraction of the best validation score
    # optimizers claim: fraction (target_fraction of the best epoch of any run) | weakest (the
    # weakest optimizer's mean best validation score at its usual rate: each reaches it, the slowest late)
    target_rule: str = "fraction"
    # optimizers claim: the lr multiples the sensitivity claim reads (None: every multiple swept);
    # a sweep one step wider on each side also reads the grid shifted one step either way
    lr_scales: list[float] | None = None
    # capacity claim: a network whose paired 95% interval against the best validation score lies
    # above -tolerance x the best score is adequate; the smallest adequate network is kept
    tolerance: float = 0.01


LOGGERS = ("none", "csv", "tensorboard", "mlflow")


@dataclass
class LoggerConfig:
    """Experiment tracking beside the run folder (dlrun.logger)."""

    name: str = "none"  # none | csv | tensorboard | mlflow
    tracking_uri: str | None = None  # mlflow: null is sqlite:///outputs/mlflow.db; or a server's URL
    experiment: str = "dlrun"  # mlflow: the experiment the runs go to
    path: str = "outputs/runs.csv"  # csv: the file one row per run is appended to


@dataclass
class Config:
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    reg: RegConfig = field(default_factory=RegConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    fairness: FairnessConfig = field(default_factory=FairnessConfig)
    diagnosis: DiagnosisConfig = field(default_factory=DiagnosisConfig)
    study: StudyConfig = field(default_factory=StudyConfig)
    logger: LoggerConfig = field(default_factory=LoggerConfig)
    tuner: TunerConfig = field(default_factory=TunerConfig)
    seed: int = 0
    experiment: Any | None = None


def register_configs() -> None:
    """Store the root schema as ``base_config`` (idempotent)."""
    ConfigStore.instance().store(name="base_config", node=Config)


register_configs()


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ConfigError(message)


def _choice(key: str, value: Any, allowed: tuple[str, ...]) -> None:
    _check(value in allowed, f"{key}={value!r} is not one of: {', '.join(allowed)}")


def _positive(key: str, value: float) -> None:
    _check(
        value is not None and math.isfinite(value) and value > 0,
        f"{key} must be positive, got {value}",
    )


def _fraction(key: str, value: float, *, closed: bool = False) -> None:
    hi_ok = value <= 1 if closed else value < 1
    _check(0 <= value and hi_ok, f"{key} must be in [0, 1{']' if closed else ')'}, got {value}")


def known_keys(schema: type = Config, prefix: str = "") -> list[str]:
    """Every dotted key of the schema (``trainer.epochs``, ...), groups included."""
    keys = []
    for f in fields(schema):
        key = f"{prefix}{f.name}"
        keys.append(key)
        if f.default_factory is not MISSING_FIELD and is_dataclass(f.default_factory):
            keys += known_keys(f.default_factory, prefix=f"{key}.")
    return keys


def closest_key(key: str) -> str | None:
    """The schema key a mistyped ``key`` most likely meant, or None.

    A close spelling among the keys of the same group (``trainer.epoch`` →
    ``trainer.epochs``), else the same name in another group (``lr`` → ``optimizer.lr``).
    """
    known = known_keys()
    group, _, name = key.rpartition(".")
    siblings = [k.rpartition(".")[2] for k in known if k.rpartition(".")[0] == group]
    match = difflib.get_close_matches(name, siblings, n=1, cutoff=0.8)
    if match:
        return f"{group}.{match[0]}" if group else match[0]
    elsewhere = [k for k in known if k.rpartition(".")[2] == name and k != key]
    return elsewhere[0] if elsewhere else None


def unknown_keys(cfg: Any) -> list[str]:
    """Keys of the composed config that no schema declares (added with ``+key=value``)."""
    from omegaconf import DictConfig

    known = set(known_keys())
    found = []

    def walk(node: DictConfig, prefix: str) -> None:
        for key in node.keys():
            full = f"{prefix}{key}"
            if full == "hydra":  # Hydra's own settings, when composed with them
                continue
            if full not in known:
                found.append(full)
                continue
            child = node._get_node(key)
            if isinstance(child, DictConfig) and not child._is_none():
                walk(child, f"{full}.")

    walk(cfg, "")
    return found


def _check_known_keys(cfg: Any) -> None:
    unknown = unknown_keys(cfg)
    if unknown:
        key = unknown[0]
        guess = closest_key(key)
        hint = f"did you mean {guess}?" if guess else "see dlrun --cfg job for every key"
        raise ConfigError(f"unknown key {key} ({hint}); dlrun reads only the keys its config schema declares")


def validate(cfg: Any) -> None:
    """Check the values that types cannot, before anything heavy is imported.

    Args:
        cfg: the composed root config (``DictConfig`` over :class:`Config`).

    Raises:
        ConfigError: with a one-line message naming the key and what to do.
    """
    # The registries' modules import this one for its schemas; none of them imports TensorFlow.
    from dlrun.data import DATASETS
    from dlrun.models import MODELS
    from dlrun.optim import OPTIMIZERS
    from dlrun.report.claims import CHECKS

    _check_known_keys(cfg)
    d, m, r, o, e, t = cfg.dataset, cfg.model, cfg.reg, cfg.optimizer, cfg.eval, cfg.trainer
    if d.task is not None:
        _choice("dataset.task", d.task, TASKS)
    DATASETS.check(d.name)
    _choice("dataset.scaling", d.scaling, SCALINGS)
    _check(0 < d.test_size < 1, f"dataset.test_size must be in (0, 1), got {d.test_size}")
    _check(0 < d.val_size < 1, f"dataset.val_size must be in (0, 1), got {d.val_size}")
    _check(d.image_size >= 4, f"dataset.image_size must be at least 4, got {d.image_size}")
    if d.name == "csv":
        _check(d.path is not None, "dataset=csv needs dataset.path=FILE (your table)")
        _check(d.target is not None, "dataset=csv needs dataset.target=COLUMN (the column to predict)")
    _choice("dataset.stream", str(d.stream).lower(), ("auto", "true", "false"))
    if d.max_rows is not None:
        _check(d.max_rows >= 20, f"dataset.max_rows must be at least 20, got {d.max_rows}")

    MODELS.check(m.name)
    _choice("model.activation", m.activation, ACTIVATIONS)
    _check(m.width >= 1, f"model.width must be at least 1, got {m.width}")
    _check(m.depth >= 0, f"model.depth must be 0 or more, got {m.depth}")
    _check(m.filters >= 1 and m.blocks >= 1, "model.filters and model.blocks must be at least 1")
    if m.weights is not None and m.name != "transfer":  # transfer: the backbone's weights, checked below
        _check(str(m.weights).endswith((".weights.h5", ".keras")),
               f"model.weights={m.weights!r} must be a .weights.h5 file or a .keras model")
        _check(os.path.isfile(os.path.expanduser(str(m.weights))),
               f"model.weights: no file at {m.weights}; give the path to saved weights")

    if m.name == "transfer":
        _validate_transfer(m, cfg)

    for key in ("l1", "l2"):
        _check(r[key] >= 0, f"reg.{key} must be 0 or more, got {r[key]}")
    _fraction("reg.dropout", r.dropout)
    _check(r.patience >= 1, f"reg.patience must be at least 1, got {r.patience}")

    OPTIMIZERS.check(o.name)
    _positive("optimizer.lr", o.lr)
    _check(o.batch_size >= 1, f"optimizer.batch_size must be at least 1, got {o.batch_size}")
    _fraction("optimizer.momentum", o.momentum)
    if o.clipnorm is not None:
        _positive("optimizer.clipnorm", o.clipnorm)
    _choice("optimizer.schedule", o.schedule, SCHEDULES)
    _positive("optimizer.decay_epochs", o.decay_epochs)
    _positive("optimizer.decay_rate", o.decay_rate)
    _positive("optimizer.lr_scale", o.lr_scale)

    _choice("eval", e.name, EVALS)
    _check(e.folds >= 2, f"eval.folds must be at least 2, got {e.folds}")
    _check(e.repeats >= 1, f"eval.repeats must be at least 1, got {e.repeats}")
    _check(not e.refit or e.name == "holdout", f"eval.refit=true needs eval=holdout, got eval={e.name}")

    _check(t.epochs >= 1, f"trainer.epochs must be at least 1, got {t.epochs}")
    _choice("trainer.device", t.device, DEVICES)
    _choice("trainer.progress", t.progress, PROGRESS)
    _choice("trainer.loop", t.loop, LOOPS)
    _check(t.checkpoint_seconds >= 0, f"trainer.checkpoint_seconds must be 0 or more, got {t.checkpoint_seconds}")
    _check(t.checkpoint_every >= 0,
           f"trainer.checkpoint_every must be 0 (off) or more, got {t.checkpoint_every}")
    _check(t.threads >= 0, f"trainer.threads must be 0 (auto) or more, got {t.threads}")
    _check(0 <= cfg.seed < 2**32, f"seed must be in [0, 2**32 - 1] (numpy's seed range), got {cfg.seed}")

    f = cfg.fairness
    _choice("fairness", f.name, ("none", "audit", "reweighing", "threshold", "unaware"))
    _choice("fairness.constraint", f.constraint, ("demographic_parity", "equalized_odds"))
    _check(f.name == "none" or d.sensitive is not None,
           f"fairness={f.name} needs a sensitive attribute: set dataset.sensitive=COLUMN "
           "(or use dataset=credit_synthetic, which has one)")

    if cfg.task.headline is not None:
        _choice("task.headline", cfg.task.headline, tuple(dict.fromkeys(sum(HEADLINES.values(), ()))))
    _check(0 < cfg.task.threshold < 1, f"task.threshold must be in (0, 1), got {cfg.task.threshold}")

    _choice("logger", cfg.logger.name, LOGGERS)
    if cfg.logger.name == "mlflow":
        import importlib.util

        _check(importlib.util.find_spec("mlflow") is not None,
               'logger=mlflow needs MLflow: pip install "dlrun[mlflow]" (or mlflow)')
    CHECKS.check(cfg.study.kind)
    validate_tuner(cfg.tuner)
    _check(0 < cfg.study.target_fraction <= 1,
           f"study.target_fraction must be in (0, 1], got {cfg.study.target_fraction}")
    _choice("study.target_rule", cfg.study.target_rule, ("fraction", "weakest"))
    _check(all(math.isfinite(x) and x > 0 for x in cfg.study.lr_scales or []),
           f"study.lr_scales must be positive multiples of the usual rate, got {cfg.study.lr_scales}")
    _check(0 <= cfg.study.tolerance < 1, f"study.tolerance must be in [0, 1), got {cfg.study.tolerance}")


TRANSFER_MODES = ("feature_extraction", "fine_tune", "scratch")


def _validate_transfer(m: Any, cfg: Any) -> None:
    """``model=transfer``'s keys (the backbone name itself is checked when the model is built)."""
    _check(m.backbone is not None, "model=transfer needs model.backbone: a keras.applications name "
           "(mobilenet_v2, efficientnet_b0, resnet50, inception_resnet_v2), a dlrun model.keras, or source")
    _choice("model.mode", m.mode, TRANSFER_MODES)
    _check(m.backbone != "source" or len(m.source) > 0,
           "model.backbone=source needs model.source: the dlrun overrides that train the source network")
    weights = str(m.weights) if m.weights is not None else None
    if weights not in (None, "imagenet", "none"):
        _check(os.path.isfile(os.path.expanduser(weights)),
               f"model.weights: no file at {weights}; give imagenet, none or a weights file for the backbone")
    _check(m.unfreeze >= 1, f"model.unfreeze must be at least 1, got {m.unfreeze}")
    if m.fine_tune_lr is not None:
        _positive("model.fine_tune_lr", m.fine_tune_lr)
    if m.mode == "fine_tune":
        epochs = cfg.trainer.epochs
        _check(epochs >= 2, f"model.mode=fine_tune trains two phases: trainer.epochs must be at least 2, got {epochs}")
        if m.fine_tune_epochs is not None:
            _check(1 <= m.fine_tune_epochs < epochs,
                   f"model.fine_tune_epochs must be in [1, trainer.epochs - 1] = [1, {epochs - 1}] (the head "
                   f"trains first), got {m.fine_tune_epochs}")


def validate_tuner(tuner: Any) -> None:
    """Check ``tuner.*`` (also called by the sweeper, which reads them before any job).

    Raises:
        ConfigError: with a one-line message naming the key.
    """
    _choice("tuner", tuner.name, TUNERS)
    _check(tuner.n_calls >= 1, f"tuner.n_calls must be at least 1, got {tuner.n_calls}")
    _check(tuner.n_initial_points >= 0,
           f"tuner.n_initial_points must be 0 or more, got {tuner.n_initial_points}")
    _check(tuner.n_jobs >= 1, f"tuner.n_jobs (points per batch) must be at least 1, got {tuner.n_jobs}")
    _choice("tuner.acq_func", tuner.acq_func, ACQ_FUNCS)
    _choice("tuner.acq_optimizer", tuner.acq_optimizer, ("sampling", "lbfgs"))
    _check(tuner.acq_optimizer == "sampling" or tuner.name == "gp",
           f"tuner.acq_optimizer=lbfgs needs tuner=gp (trees have no gradients), got tuner={tuner.name}")
    _check(tuner.seed >= 0, f"tuner.seed must be 0 or more, got {tuner.seed}")
    _check(tuner.grid_points >= 2, f"tuner.grid_points must be at least 2, got {tuner.grid_points}")
    _check(tuner.refit_epochs is None or tuner.refit_epochs >= 1,
           f"tuner.refit_epochs must be at least 1 (or null: the trials' epochs), got {tuner.refit_epochs}")
