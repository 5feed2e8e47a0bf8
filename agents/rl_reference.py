"""Standard online RL algorithms on ``SessionRecEnv``: stock stable-baselines3 agents trained for
one budget of environment steps and scored with ``rmtl_env.evaluate_policy`` as they learn.

The reference rows of ``python train/benchmark.py --block rl`` (``docs/results/rl_algorithms.md``):

- ``ddpg``, ``td3``, ``sac``, ``ppo``: from scratch on the Dict observations, through the package's
  ``CategoricalEmbeddingExtractor`` (ids embedded, not fed to an MLP as magnitudes);
- ``td3-flat``: TD3 on ``SessionRecEnvFlat-v0`` with SB3's default MLP policy, what a user who
  plugs in with no glue gets;
- ``td3-ple``: TD3 whose actor starts from a pretrained PLE (``agents.sb3.BackboneTD3Policy``),
  with no critic warm-up (D-PLE's schedule is ``agents.dple``).

Every algorithm keeps SB3's own defaults but for the settings in :class:`OnlineConfig`, which are
shared by all. The learning curve is the normalised score on the validation split every
``eval_every`` env steps; the final row is scored on the test split.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3 import DDPG, PPO, SAC, TD3
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.noise import NormalActionNoise
from tqdm.auto import tqdm

from agents.domains import at_least, check_domains, within
from agents.online_state import restore_training_state, save_training_state
from agents.sb3 import BackboneTD3Policy, CategoricalEmbeddingExtractor
from rmtl_env.data import SessionDataset
from rmtl_env.evaluation import PolicyScore, evaluate_policy

ONLINE_METHODS = ("ddpg", "td3", "sac", "ppo", "td3-flat", "td3-ple")
ALGORITHMS = {"ddpg": DDPG, "td3": TD3, "sac": SAC, "ppo": PPO}


@dataclass(frozen=True)
class OnlineConfig:
    """The settings every online algorithm shares (the rest are SB3's defaults).

    Attributes:
        env_steps: the budget of environment steps, the same for every algorithm.
        eval_every: env steps between two points of the learning curve.
        eval_split: the split the learning curve is scored on.
        gamma: discount (RMTL's).
        n_envs: parallel copies of the env (SB3's ``DummyVecEnv``): one policy call per
            ``n_envs`` env steps.
        learning_starts: random-action env steps before the off-policy agents update.
        gradient_steps: off-policy agents take ``gradient_steps`` updates per vector step, i.e.
            per ``n_envs`` env steps (the update ratio is ``gradient_steps / n_envs``).
        batch_size: minibatch of every update.
        action_noise: std of DDPG's and TD3's Gaussian exploration noise, in SB3's [-1, 1] units.
        ppo_n_steps: PPO's rollout length per env (a rollout is ``ppo_n_steps * n_envs`` env
            steps).
        embed_dim: embedding size of the ``CategoricalEmbeddingExtractor``.
        net_arch: hidden sizes of the actor and critic MLPs (the flat variant keeps SB3's).
    """

    env_steps: int = field(default=51_200, metadata=at_least())
    eval_every: int = field(default=2_560, metadata=at_least())
    eval_split: str = "val"
    gamma: float = field(default=0.95, metadata=within(0, 1, high_open=True))
    n_envs: int = field(default=8, metadata=at_least())
    learning_starts: int = field(default=1_024, metadata=at_least(0))
    gradient_steps: int = field(default=2, metadata=at_least())
    batch_size: int = field(default=256, metadata=at_least())
    action_noise: float = field(default=0.1, metadata=within(0))
    ppo_n_steps: int = field(default=256, metadata=at_least())
    embed_dim: int = field(default=16, metadata=at_least())
    net_arch: tuple[int, ...] = field(default=(256, 128), metadata=at_least())

    def __post_init__(self) -> None:
        object.__setattr__(self, "net_arch", tuple(int(d) for d in self.net_arch))
        check_domains(self)
        if self.eval_every % self.n_envs:
            raise ValueError(f"OnlineConfig.eval_every ({self.eval_every}) must be a multiple of "
                             f"n_envs ({self.n_envs}): the curve is read between vector steps")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class OnlineRun:
    """One trained agent: its curve (``steps``, ``score``, ``mean_return``, ``seconds`` per
    point), the test split's score, its wall time (of every part, if it was resumed) and env
    steps per second."""

    model: BaseAlgorithm
    curve: list[dict[str, float]]
    test: PolicyScore
    seconds: float
    env_steps_per_second: float
    resumed_at: list[int] = field(default_factory=list)  # env steps where the run was resumed


def check_online_method(method: str) -> None:
    if method not in ONLINE_METHODS:
        raise ValueError(f"unknown online method {method!r}; valid: {', '.join(ONLINE_METHODS)}")


def make_online(
    method: str,
    dataset: SessionDataset,
    config: OnlineConfig,
    seed: int,
    backbone_checkpoint: str | Path | None = None,
    device: str = "cpu",
) -> BaseAlgorithm:
    """The SB3 agent of ``method`` on the training split of ``dataset`` (``td3-ple`` needs the
    pretrained PLE's ``backbone_checkpoint``)."""
    check_online_method(method)
    if (method == "td3-ple") != (backbone_checkpoint is not None):
        raise ValueError("backbone_checkpoint is needed by td3-ple and only by it")
    flat = method == "td3-flat"
    env = make_vec_env("SessionRecEnvFlat-v0" if flat else "SessionRecEnv-v0", config.n_envs,
                       seed=seed, env_kwargs={"dataset": dataset, "split": "train",
                                              "render_mode": None})  # fmt: skip
    k = int(env.action_space.shape[0])
    kwargs: dict[str, Any] = {"gamma": config.gamma, "seed": seed, "device": device, "verbose": 0}
    if method == "ppo":
        kwargs.update(n_steps=config.ppo_n_steps, batch_size=config.batch_size)
    else:
        kwargs.update(learning_starts=config.learning_starts, batch_size=config.batch_size,
                      train_freq=1, gradient_steps=config.gradient_steps,
                      buffer_size=config.env_steps)  # fmt: skip
        if method != "sac":
            kwargs["action_noise"] = NormalActionNoise(np.zeros(k), np.full(k, config.action_noise))
    extractor = {"features_extractor_class": CategoricalEmbeddingExtractor,
                 "features_extractor_kwargs": {"embed_dim": config.embed_dim}}  # fmt: skip
    net_arch = list(config.net_arch)
    if flat:
        model = TD3("MlpPolicy", env, **kwargs)
    elif method == "td3-ple":
        policy_kwargs = {"backbone_checkpoint": str(backbone_checkpoint), "net_arch": net_arch,
                         "features_extractor_kwargs": extractor["features_extractor_kwargs"]}  # fmt: skip
        model = TD3(BackboneTD3Policy, env, policy_kwargs=policy_kwargs, **kwargs)
    else:
        policy_kwargs = {**extractor, "net_arch": net_arch}
        model = ALGORITHMS[method]("MultiInputPolicy", env, policy_kwargs=policy_kwargs, **kwargs)
    model.set_logger(Logger(folder=None, output_formats=[]))  # no stray SB3-<date> folders
    return model


class ScoreCurve(BaseCallback):
    """Scores the agent on ``split`` every ``every`` env steps (and before the first step).

    With ``state_path``, the run's training state is saved there after each point, at the start
    of the next rollout (``agents.online_state``), with the curve so far and its seconds.
    """

    def __init__(self, dataset: SessionDataset, every: int, split: str, total: int,
                 progress: bool = True, state_path: str | Path | None = None) -> None:  # fmt: skip
        super().__init__()
        self.dataset, self.every, self.split = dataset, every, split
        self.points: list[dict[str, float]] = []
        self.resumed_at: list[int] = []
        self.seconds_before = 0.0  # of the runs this one resumes
        self.started = time.perf_counter()
        self.state_path, self.save_due = state_path, False
        self.bar = tqdm(total=total, desc="env steps", disable=not progress)

    def elapsed(self) -> float:
        return self.seconds_before + time.perf_counter() - self.started

    def resume(self, saved: dict[str, Any]) -> None:
        """Continue the curve of the run whose state was saved (``saved``: its ``extra``)."""
        self.points = [dict(point) for point in saved["points"]]
        self.seconds_before = float(saved["seconds"])
        self.resumed_at = [*saved["resumed_at"], int(self.points[-1]["steps"])]
        self.bar.update(int(self.points[-1]["steps"]))

    def record(self) -> None:
        score = evaluate_policy(self.model, self.dataset, self.split)
        self.points.append({
            "steps": int(self.num_timesteps), "score": score.score, "mean_return": score.mean_return,
            "seconds": self.elapsed(),
        })  # fmt: skip
        self.bar.set_postfix(score=f"{score.score:.1f}" if score.score is not None else "-")
        self.save_due = self.state_path is not None

    def _on_training_start(self) -> None:
        if not self.points:  # a resumed run has its first point
            self.record()

    def _on_rollout_start(self) -> None:
        if self.save_due:  # between two rollouts: the last step is stored and trained on
            extra = {
                "points": self.points,
                "seconds": self.elapsed(),
                "resumed_at": self.resumed_at,
            }
            save_training_state(self.model, self.state_path, extra)
            self.save_due = False

    def _on_step(self) -> bool:
        self.bar.update(self.training_env.num_envs)
        if self.num_timesteps % self.every == 0:
            self.record()
        return True

    def _on_training_end(self) -> None:
        if self.points[-1]["steps"] != self.num_timesteps:
            self.record()
        self.bar.close()


def train_online(
    method: str,
    dataset: SessionDataset,
    config: OnlineConfig,
    seed: int,
    backbone_checkpoint: str | Path | None = None,
    device: str = "cpu",
    progress: bool = True,
    state_path: str | Path | None = None,
) -> OnlineRun:
    """Train ``method`` for ``config.env_steps`` env steps, with its learning curve, and score
    it on the test split.

    ``state_path`` (off-policy methods): the training state is saved there at every point of
    the curve, and a run that finds one there continues from it, to the same result as a run
    never interrupted.
    """
    model = make_online(method, dataset, config, seed, backbone_checkpoint, device)
    if state_path is not None and method == "ppo":
        raise ValueError("state_path: PPO's run cannot be resumed mid-training (its rollout "
                         "buffer is not saved); leave state_path out for ppo")  # fmt: skip
    curve = ScoreCurve(dataset, config.eval_every, config.eval_split, config.env_steps, progress,
                       state_path)  # fmt: skip
    if state_path is not None and Path(state_path).is_file():
        curve.resume(restore_training_state(model, state_path))
    model.learn(config.env_steps - model.num_timesteps, callback=curve,
                reset_num_timesteps=not curve.resumed_at)  # fmt: skip
    seconds = curve.elapsed()
    return OnlineRun(
        model=model, curve=curve.points, test=evaluate_policy(model, dataset, "test"),
        seconds=seconds, env_steps_per_second=config.env_steps / seconds,
        resumed_at=curve.resumed_at,
    )  # fmt: skip
