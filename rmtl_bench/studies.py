"""The benchmark's data: Table 1's methods, the profiles (config overrides) and the studies.

A profile is a set of overrides of the config dataclasses; a study is a list of RMTL variants,
each a cell named ``cell`` that polishes backbone ``target`` with the critics of the
``rmtl-<source>`` cell (its own when ``source`` is None) under RMTLConfig overrides ``rmtl``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from agents.critic import CriticConfig
from agents.dple import DPLEConfig
from agents.models import ModelConfig
from agents.pipeline import DataConfig
from agents.rmtl import PRESETS, RMTLConfig
from agents.trainer import TrainConfig
from rmtl_bench import plots

SUPERVISED = ["single_task", "shared_bottom", "esmm", "mmoe", "ple"]
RMTL = {"rmtl-esmm": "esmm", "rmtl-mmoe": "mmoe", "rmtl-ple": "ple"}
METHODS = [*SUPERVISED, "d-ple", *RMTL]
# Each backbone's cell runs right before the cells that load its checkpoint, so a seed cut off
# part-way leaves at most one finished backbone with dependents still to run: its finished cells'
# summaries (JSON files, without checkpoints) resume it on another machine, where that one
# backbone is retrained.
RUN_ORDER = ["single_task", "shared_bottom", "esmm", "rmtl-esmm", "mmoe", "rmtl-mmoe", "ple",
             "rmtl-ple", "d-ple"]  # fmt: skip


@dataclass(frozen=True)
class Profile:
    """Overrides of the config dataclasses' defaults (the paper's) for every cell."""

    scale: str = "small"
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    model: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    rmtl: dict = field(default_factory=dict)
    critic: dict = field(default_factory=dict)
    dple: dict = field(default_factory=dict)

    def model_config(self) -> ModelConfig:
        return ModelConfig(**self.model)

    def train_config(self, seed: int) -> TrainConfig:
        return TrainConfig(**self.train, seed=seed)

    def rmtl_config(self, seed: int, **variant) -> RMTLConfig:
        critic = CriticConfig(**self.critic)
        return replace(PRESETS["paper"], **{**self.rmtl, **variant}, critic=critic, seed=seed)

    def dple_config(self) -> DPLEConfig:
        return DPLEConfig(**self.dple)


PROFILES = {
    # Paper dimensions, early stopping, critics to convergence; small twins.
    "full": Profile(),
    # The full profile at bf16 (about half the wall time): the balancers block.
    "bf16": Profile(train={"precision": "bf16"}),
    # Smoke test: tiny twins, small networks, a few epochs and steps.
    "quick": Profile(
        scale="tiny",
        seeds=(0,),
        model={"embed_dim": 8, "bottom_dims": (16, 8), "tower_dims": (8,)},
        train={"epochs": 2, "batch_size": 512},
        rmtl={"critic_batch_size": 512, "critic_epochs": 2},
        critic={"embed_dim": 8},
        dple={"actor_steps": 200, "actor_batch_size": 32, "critic_batch_size": 256},
    ),
}


KNOB_SEPARATOR = "+"


def dataset_config(spec: str, scale: str, data_dir: str | None = None) -> DataConfig:
    """The data of a benchmark dataset name: a catalog name, or a twin with one generator knob
    set, ``retailrocket-synthetic+conflict0.5`` (the knob sweeps' datasets)."""
    name, _, knob = spec.partition(KNOB_SEPARATOR)
    if not knob:
        return DataConfig(name, scale, data_dir=data_dir)
    key = knob.rstrip("0123456789.")
    return DataConfig(name, scale, data_dir=data_dir, **{f"twin_{key}": float(knob[len(key) :])})


def knob_dataset(dataset: str, knob: str, level: float) -> str:
    """The benchmark name of ``dataset`` with ``knob`` at ``level`` (``dataset`` itself at 0)."""
    return dataset if level == 0 else f"{dataset}{KNOB_SEPARATOR}{knob}{level:g}"


@dataclass(frozen=True)
class Variant:
    """One RMTL cell of a study; ``labels`` are its rows' study columns."""

    labels: dict
    target: str
    cell: str
    source: str | None = None
    rmtl: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Study:
    """A study's cells and presentation. ``backbone``: a backbone whose rows join the table as
    variant ``backbone``; ``delta``: rows get ``auc_delta`` against the target's backbone;
    ``pairs``: paired t-tests between variants; ``plot``: figure of the study's rows."""

    title: str
    variants: list[Variant]
    backbone: str | None = None
    delta: bool = False
    pairs: list[tuple[str, str]] = field(default_factory=list)
    plot: Callable | None = None


LAMBDAS = [0.0, 0.1, 0.3, 0.5, 0.7, 0.9, 1.0]
BACKBONES = ("esmm", "mmoe", "ple")
# The polish study: RMTL and its constant-weight control retrained from the backbone at a tenth
# of the pretraining learning rate, the backbone competing in early stopping (the guard).
POLISH_LR = 1e-4

STUDIES = {
    "ablation": Study(
        "RMTL-PLE against its ablations: `cw` constant weight 0.5, `wl` weight 1 - lambda y Q, "
        "`nlc` weight -Q; `rmtl` is the full method (1 - lambda Q), `backbone` the pretrained "
        "PLE before any polish",
        [Variant({"variant": "rmtl"}, "ple", "rmtl-ple")]
        + [
            Variant({"variant": v}, "ple", f"ablation-{v}", "ple", {"weight_variant": v})
            for v in ("cw", "wl", "nlc")
        ],  # fmt: skip
        backbone="ple",
    ),
    "transfer": Study(
        "Critics trained with one backbone (source) weighting the polish of another (target); "
        "the diagonal is RMTL itself",
        [
            Variant(
                {"source": s, "target": t}, t, f"rmtl-{t}" if s == t else f"transfer-{s}-to-{t}", s
            )
            for s in BACKBONES
            for t in BACKBONES
        ],  # fmt: skip
        delta=True,
        plot=plots.plot_transfer,
    ),
    "lambda": Study(
        "RMTL-PLE polished with the RMTL-PLE critics at each lambda (weight 1 - lambda Q; lambda "
        "0 is unweighted retraining)",
        [Variant({"lambda": lam}, "ple", f"lambda-{lam}", "ple", {"lam": lam}) for lam in LAMBDAS],
        plot=plots.plot_lambda,
    ),
    "polish": Study(
        f"RMTL-ESMM polished so that retraining cannot overshoot: learning rate {POLISH_LR:g} (a "
        "tenth of pretraining's) and the pretrained backbone competing in the polish's early "
        "stopping (the guard). `polish-rmtl` weights each loss 1 - lambda Q with the RMTL "
        "critics, `polish-cw` is its constant-weight control (0.5) under the same schedule, "
        "`rmtl` the faithful polish (Table 1), `backbone` the pretrained model",
        [Variant({"variant": "rmtl"}, "esmm", "rmtl-esmm")]
        + [
            Variant(
                {"variant": f"polish-{v}"},
                "esmm",
                f"polish-{v}",
                "esmm",
                {"polish_lr": POLISH_LR, "polish_guard": True, "weight_variant": v},
            )
            for v in ("rmtl", "cw")
        ],  # fmt: skip
        backbone="esmm",
        pairs=[
            ("polish-rmtl", "polish-cw"),
            ("polish-cw", "backbone"),
            ("polish-rmtl", "backbone"),
        ],
    ),
}
