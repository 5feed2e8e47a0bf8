"""The three jobs behind the scripts and the benchmark's cells, each writing one run folder over
the ``agents.pipeline`` stages: supervised baselines, RMTL, and D-PLE.

A job's configuration is validated before its folder is opened; each stage resumes from the
folder when its outputs load; plots come before ``metrics.json``, which is written last.

Baselines and RMTL also run data-parallel under ``torchrun --nproc_per_node=N`` (each stage's
training shards every batch over the ranks; rank 0 writes the folder, see ``run_folder``);
D-PLE runs in one process (stable-baselines3 has no data-parallel DDPG).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from agents import distributed, pipeline
from agents.checkpoint import (
    CheckpointError,
    check_fits,
    load_critic,
    load_model,
    model_name,
    save_critic,
    save_model,
)
from agents.dple import DPLEConfig
from agents.models import ModelConfig, MultiTaskModel
from agents.pipeline import DataConfig, Splits
from agents.rmtl import PRESETS, RMTLConfig, loss_weights_on, polish_critics
from agents.runtime import config_record, flush_denormals, resolve_device
from agents.trainer import TrainConfig, predict
from agents.weighting import check_training
from rmtl_bench import plots
from rmtl_bench.run_folder import RunFolder
from rmtl_env.evaluation import normalised_scores


@dataclass(frozen=True)
class Job:
    """What every job shares: the data, the model seed, the device, the tqdm bars, whether
    the run folder gets its PNG figures (``plots``; the benchmark can leave them out) and
    whether an existing run folder is started over (``fresh``)."""

    data: DataConfig = DataConfig()
    seed: int = 0
    device: str = "auto"
    progress: bool = False
    plots: bool = True
    fresh: bool = False

    def open(self, folder: Path, name: str, **configs: object) -> tuple[RunFolder, Splits, str]:
        """The data, the torch device and the opened run folder: ``config.json`` is written only
        once the data loads and every checkpoint passed in (``backbone_checkpoint``,
        ``critics_from``) is readable and fits the data. Under ``torchrun`` this starts the
        process group; rank 0 prepares (and caches) the data before the other ranks load it."""
        flush_denormals()  # saturated outputs would otherwise slow CPU math up to ~190x
        device = distributed.local_device(resolve_device(self.device))
        distributed.init_from_env(device)
        device = str(device)
        with distributed.main_first():
            splits = pipeline.load_splits(self.data)
        for key, load in (("backbone_checkpoint", load_model), ("critics_from", load_critic)):
            if configs.get(key) is not None:
                network = load(configs[key])
                check_fits(network, splits.dataset, configs[key])
                if key == "backbone_checkpoint":
                    configs = checkpoint_architecture(network, configs)
        data = config_record(self.data)
        config = {"job": name, **data, "seed": self.seed, **_plain(configs)}
        fingerprint = splits.dataset.meta.get("cache_key")  # the processed data's identity
        run = RunFolder(folder, config, data=fingerprint, fresh=self.fresh).open()
        print(f"{splits.describe()}, device {device}")
        return run, splits, device


def checkpoint_architecture(network, configs: dict) -> dict:
    """``configs`` with the backbone architecture the checkpoint holds: that is what runs, so it
    is what the run folder records. A backbone name, or dimensions changed from their defaults,
    that differ from the checkpoint's are refused naming both."""
    checkpoint, name = configs["backbone_checkpoint"], model_name(network)
    if configs.get("backbone", name) != name:
        raise CheckpointError(
            f"{checkpoint} holds a {name} backbone, but the command asks for "
            f"{configs['backbone']!r}; pass --backbone {name} (or another checkpoint)"
        )
    asked, held = configs.get("model"), network.config
    if asked is None or asked == held:
        return configs
    default = ModelConfig()
    clash = [f"{f.name} {getattr(asked, f.name)} (checkpoint: {getattr(held, f.name)})"
             for f in dataclasses.fields(ModelConfig)
             if getattr(asked, f.name) != getattr(held, f.name)
             and getattr(asked, f.name) != getattr(default, f.name)]  # fmt: skip
    if clash:
        raise CheckpointError(f"{checkpoint}: the command asks for {', '.join(clash)}; drop "
                              "those flags (the checkpoint's architecture is used)")  # fmt: skip
    return {**configs, "model": held}


def _plain(configs: dict[str, object]) -> dict[str, object]:
    return {k: config_record(v) if dataclasses.is_dataclass(v) else v for k, v in configs.items()}


def _scores(splits: Splits, predictions: dict) -> dict | None:
    """Each model's mean episode return and normalised score on test (``evaluate_policy``'s),
    from its test predictions; None for a streamed dataset (its splits are not in memory)."""
    if splits.streamed:
        return None
    return normalised_scores(splits.dataset, predictions)


def _weight_summary(weights: np.ndarray, tasks: list[str]) -> dict[str, dict[str, float]]:
    return {
        t: {stat: float(getattr(weights[:, k], stat)()) for stat in ("mean", "std", "min", "max")}
        for k, t in enumerate(tasks)
    }


def run_baselines(
    folder: Path,
    job: Job,
    models: list[str],
    model: ModelConfig = ModelConfig(),
    train: TrainConfig = TrainConfig(),
) -> dict:
    """Pretrain and evaluate each backbone in ``models``; checkpoints ``<name>.pt``."""
    # A weighting that a model or torchrun cannot take: refused before the first one trains.
    check_training([train.weighting], models, distributed.launched_world_size())
    run, splits, device = job.open(folder, "baselines", models=models, model=model, train=train)
    results, histories, summary, predictions = {}, {}, {}, {}
    for name in models:
        path = run.checkpoint(f"{name}.pt")

        def fit(name=name, path=path) -> dict:
            out = pipeline.pretrain(name, splits, model, train, job.seed, device, job.progress)
            r = out.result
            save_model(out.model, path, tasks=splits.tasks, dataset=job.data.dataset,
                       seed=job.seed, best_epoch=r.best_epoch)  # fmt: skip
            return {"best_epoch": r.best_epoch, "best_val_auc": r.best_val_auc,
                    "epochs_run": len(r.history), "stopped_early": r.stopped_early,
                    "train_seconds": sum(h["seconds"] for h in r.history), "history": r.history}  # fmt: skip

        record, backbone = run.stage(f"pretrain-{name}", lambda p=path: load_model(p, device), fit)
        histories[name] = record.pop("history")
        summary[name] = {k: v for k, v in record.items() if k != "seconds"}
        results.update(pipeline.evaluate(
            {name: backbone.eval()}, splits.test, oracle=False, predictions=predictions,
            precision=train.precision,
        ))  # fmt: skip
    results.update(pipeline.evaluate({}, splits.test))  # the oracle row, where there is one
    rows = [{"model": name, **h} for name, hist in histories.items() for h in hist]
    run.write_file("history.csv", pd.DataFrame(rows).to_csv(index=False).encode())
    if job.plots and run.writer:
        plots.plot_learning_curves(histories, run.path / "learning_curves.png")
    run.write_metrics(results, training=summary, policy_scores=_scores(splits, predictions))
    return results


def run_rmtl(
    folder: Path,
    job: Job,
    backbone: str = "ple",
    model: ModelConfig = ModelConfig(),
    train: TrainConfig = TrainConfig(),
    rmtl: RMTLConfig = PRESETS["paper"],
    backbone_checkpoint: Path | None = None,
    critics_from: Path | None = None,
) -> dict:
    """RMTL's stages into one run folder: pretrain (or load ``backbone_checkpoint``), critics
    (or load ``critics_from``), polish, evaluate the backbone, RMTL-backbone and the oracle."""
    check_training([train.weighting, rmtl.polish_weighting], [backbone],
                   distributed.launched_world_size())  # fmt: skip
    run, splits, device = job.open(
        folder, "rmtl", backbone=backbone, backbone_checkpoint=backbone_checkpoint,
        critics_from=critics_from, model=model, train=train, rmtl=rmtl,
    )  # fmt: skip
    stages = RMTLStages(run, splits, job, device, backbone)
    pretrain, actor = stages.pretrain(model, train, backbone_checkpoint)
    critics, critic = stages.critics(actor, rmtl, train, critics_from)
    polish, polished, weights = stages.polish(actor, critic, rmtl, train)
    started = time.perf_counter()
    predictions = {}
    results = pipeline.evaluate({backbone: actor, f"rmtl-{backbone}": polished}, splits.test,
                                predictions=predictions, precision=train.precision)  # fmt: skip
    run.stage_seconds["evaluate"] = time.perf_counter() - started
    print("Stage wall time: " + ", ".join(f"{k} {v:.1f} s" for k, v in run.stage_seconds.items()))
    if critics.get("history"):
        frame = pd.DataFrame(critics["history"])
        run.write_file("critic_history.csv", frame.to_csv(index=False).encode())
    if job.plots and run.writer:
        _rmtl_plots(run.path, splits.tasks, backbone, pretrain, critics, polish, weights, results)
    run.write_metrics(
        results, stage_seconds=run.stage_seconds,
        loss_weights_train=_weight_summary(weights, splits.tasks),
        critic_epochs=critics.get("epochs"), critic_converged=critics.get("converged"),
        policy_scores=_scores(splits, predictions),
    )  # fmt: skip
    return results


class RMTLStages:
    """RMTL's resumable stages in one run folder; each returns its record and its outputs."""

    def __init__(self, run: RunFolder, splits: Splits, job: Job, device: str, name: str) -> None:
        self.run, self.splits, self.job, self.device, self.name = run, splits, job, device, name
        self.meta = {"tasks": splits.tasks, "dataset": job.data.dataset}
        self._probs: np.ndarray | None = None

    def loader(self, name: str, load=load_model):
        return lambda: load(self.run.checkpoint(name), self.device)

    def actor_actions(self, actor: MultiTaskModel, precision: str) -> np.ndarray:
        """The frozen backbone's predictions on train at ``precision``, computed at most once."""
        if self._probs is None:
            self._probs = predict(actor, self.splits.train, precision=precision)
        return self._probs

    def pretrain(self, model, train, checkpoint):
        def fit() -> dict:
            if checkpoint is not None:
                out, history = load_model(checkpoint, self.device), []
            else:
                job = self.job
                trained = pipeline.pretrain(self.name, self.splits, model, train, job.seed,
                                            self.device, job.progress)  # fmt: skip
                out, history = trained.model, trained.result.history
            save_model(out, self.run.checkpoint("backbone.pt"), **self.meta)
            return {"history": history}

        return self.run.stage("pretrain", self.loader("backbone.pt"), fit)

    def critics(self, actor, rmtl, train, critics_from):
        def learn() -> dict:
            if critics_from is not None:
                critic, record = (
                    load_critic(critics_from, self.device),
                    {"source": str(critics_from)},
                )
            else:
                out = pipeline.learn_critics(actor, self.splits.train, rmtl, self.job.seed,
                                             self.job.progress, self.actor_actions(actor, train.precision),
                                             numerics=train)  # fmt: skip
                critic, r = out.critic, out.result
                print(
                    f"[replay] {len(self.splits.train):,} transitions in {out.replay_seconds:.2f} s"
                )
                record = {"history": r.history, "epochs": r.epochs, "converged": r.converged,
                          "replay_seconds": out.replay_seconds}  # fmt: skip
            save_critic(critic, self.run.checkpoint("critics.pt"), backbone=self.name)
            return record

        return self.run.stage("critics", self.loader("critics.pt", load_critic), learn)

    def polish(self, actor, critic, rmtl, train):
        probs, ran = self.actor_actions(actor, train.precision), []

        def retrain() -> dict:
            out = pipeline.polish(actor, critic, self.splits, rmtl, train, self.job.seed,
                                  self.job.progress, probs)  # fmt: skip
            ran.append(out)
            save_model(out.model, self.run.checkpoint("rmtl_backbone.pt"), **self.meta,
                       critics=str(self.run.checkpoint("critics.pt")))  # fmt: skip
            return {"history": out.result.history}

        record, polished = self.run.stage("polish", self.loader("rmtl_backbone.pt"), retrain)
        if ran:
            weights = ran[0].initial_weights
        else:  # resumed: the weights at the pretrained model's predictions, for the summary
            critic = polish_critics(critic, actor)
            weights = loss_weights_on(critic, rmtl, self.splits.train, probs)
        return record, polished, weights


def _rmtl_plots(path, tasks, backbone, pretrain, critics, polish, weights, results) -> None:
    if critics.get("history"):
        plots.plot_critic_training(critics["history"], tasks, path / "critic_training.png")
    plots.plot_loss_weights(weights, tasks, path / "loss_weights.png")
    histories = {f"pretrain {backbone}": pretrain.get("history", []),
                 f"polish {backbone}": polish.get("history", [])}  # fmt: skip
    plots.plot_learning_curves(
        {k: v for k, v in histories.items() if v}, path / "learning_curves.png"
    )
    plots.plot_metric_comparison(results, tasks, path / "metrics.png")


def run_dple(
    folder: Path,
    job: Job,
    dple: DPLEConfig = DPLEConfig(),
    backbone: str = "ple",
    model: ModelConfig = ModelConfig(),
    train: TrainConfig = TrainConfig(),
    backbone_checkpoint: Path | None = None,
    from_scratch: bool = False,
) -> dict:
    """D-PLE into one run folder: the pretrained backbone (trained here unless
    ``backbone_checkpoint`` or ``from_scratch``), both D-PLE phases, evaluation. One process
    only."""
    if distributed.launched_world_size() > 1:
        raise SystemExit(
            "error: D-PLE runs in one process (stable-baselines3's DDPG is not data-parallel); "
            "run train/dple_sb3.py without torchrun"
        )
    if job.data.stream:  # refused before any stage runs, not after the pretraining
        raise SystemExit(
            "error: D-PLE steps SessionRecEnv, which holds its split in memory; run "
            "train/dple_sb3.py without --stream"
        )
    run, splits, device = job.open(
        folder, "dple", backbone=backbone, backbone_checkpoint=backbone_checkpoint,
        from_scratch=from_scratch, model=model, train=train, dple=dple,
    )  # fmt: skip
    histories, checkpoint = {}, backbone_checkpoint
    if checkpoint is None and not from_scratch:
        checkpoint = run.checkpoint("backbone.pt")

        def fit() -> dict:
            out = pipeline.pretrain(backbone, splits, model, train, job.seed, device, job.progress)
            save_model(out.model, checkpoint, tasks=splits.tasks)
            return {"history": out.result.history}

        record, _ = run.stage("pretrain", lambda: load_model(checkpoint, device), fit)
        histories[f"pretrain {backbone}"] = record["history"]
    start = None if checkpoint is None else load_model(checkpoint, device)
    outcome = _dple_stage(run, splits, job, dple, backbone, model, checkpoint, device)
    dple_model = load_model(run.checkpoint("dple_backbone.pt"), device)
    started, predictions = time.perf_counter(), {}
    models = ({} if start is None else {backbone: start}) | {f"d-{backbone}": dple_model}
    results = pipeline.evaluate(models, splits.test, predictions=predictions)
    moved = None
    if start is not None:
        moved = float(np.abs(predictions[f"d-{backbone}"] - predictions[backbone]).mean())
        print(f"mean |D-PLE - PLE| test prediction: {moved:.3g}")
    if job.plots:
        plots.plot_critic_phase(outcome["critic_history"], run.path / "critic_phase.png")
        if histories:
            plots.plot_learning_curves(histories, run.path / "learning_curves.png")
        plots.plot_metric_comparison(results, splits.tasks, run.path / "metrics.png")
    run.write_metrics(
        results, dple=outcome, actor_lr=dple.actor_lr, mean_abs_prediction_change_test=moved,
        env_steps_per_second=outcome["env_steps_per_second"],
        policy_scores=_scores(splits, predictions),
        evaluate_seconds=time.perf_counter() - started,
    )  # fmt: skip
    return results


def _dple_stage(run, splits, job, dple, backbone, model, checkpoint, device) -> dict:
    """Both D-PLE phases as one stage; outputs ``ddpg.zip`` and ``dple_backbone.pt``."""

    def phases() -> dict:
        out = pipeline.train_dple(
            splits, dple, checkpoint, backbone, model, job.seed, device, job.progress,
            tensorboard_log=run.path / "tensorboard",
        )  # fmt: skip
        r, zip_path = out.result, run.checkpoint("ddpg.zip")
        print(
            f"[critic phase] {r.critic_epochs} epochs (converged: {r.critic_converged}) in "
            f"{r.critic_seconds:.1f} s; [actor phase] {r.actor_updates} actor updates at lr "
            f"{dple.actor_lr:g} in {r.actor_seconds:.1f} s; critic mean Q at the actor's actions "
            f"{r.mean_q_before:.4f} -> {r.mean_q_after:.4f}"
        )
        zip_path.parent.mkdir(parents=True, exist_ok=True)
        out.sb3.save(zip_path.with_name(".ddpg.tmp.zip"))
        zip_path.with_name(".ddpg.tmp.zip").replace(zip_path)
        save_model(out.model, run.checkpoint("dple_backbone.pt"), tasks=splits.tasks)
        return r.to_dict()

    load = lambda: load_model(run.checkpoint("dple_backbone.pt"), device)  # noqa: E731
    record, _ = run.stage("dple", load, phases)
    return {k: v for k, v in record.items() if k != "seconds"}
