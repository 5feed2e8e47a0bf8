"""Save and restore an off-policy stable-baselines3 run between two rollouts, so that a training
interrupted (a session's end, a killed process) continues from its last save and ends with the
same weights, bit for bit, as a run never interrupted.

SB3's own ``save`` keeps the weights and, separately, the replay buffer, but not the random
generators, the env's position in its episodes or TD3's update counter, so a resumed SB3 run
diverges. The state file here holds all of it as tensors and plain values (read back with
``torch.load(weights_only=True)``: a state file never runs code):

- the policy's and optimisers' state dicts and the algorithm's extra tensors (SAC's entropy
  coefficient), its counters (env steps, updates, episodes) and last observation;
- the replay buffer's filled rows;
- the torch, NumPy and Python global generators (dropout, SB3's minibatch sampling and
  Gaussian action noise draw from them) and the action space's (its random warm-up actions);
- every env's ``SessionRecEnv.get_state`` (its session and its own generator) and the rewards
  of its current episode that SB3's ``Monitor`` wrapper holds.

Save only between two rollouts (a callback's ``on_rollout_start``), where the last step's
transition is stored and its updates are done.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm
from stable_baselines3.common.save_util import recursive_getattr
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.checkpoint import read_checkpoint, save_torch

STATE_FORMAT = "rmtl-online-state/1"
BUFFER_ARRAYS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def _tensors(value: Any) -> Any:
    """NumPy arrays (also inside dicts) as tensors, which ``weights_only`` loading accepts."""
    if isinstance(value, dict):
        return {key: _tensors(v) for key, v in value.items()}
    if isinstance(value, np.ndarray):
        return torch.from_numpy(value.copy())
    return value


def _arrays(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _arrays(v) for key, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.numpy()
    return value


def _check_supported(model: Any) -> None:
    if not isinstance(model, OffPolicyAlgorithm):
        raise TypeError(f"saving a run mid-training supports SB3's off-policy algorithms (DDPG, "
                        f"TD3, SAC), not {type(model).__name__}")  # fmt: skip
    if not isinstance(model.get_env(), DummyVecEnv):
        raise TypeError("saving a run mid-training needs the envs in this process (DummyVecEnv)")
    if getattr(model.replay_buffer, "optimize_memory_usage", False):
        raise TypeError("saving a run mid-training does not support optimize_memory_usage=True")


def _buffer_state(buffer: ReplayBuffer) -> dict[str, Any]:
    filled = buffer.buffer_size if buffer.full else buffer.pos
    state: dict[str, Any] = {"pos": int(buffer.pos), "full": bool(buffer.full)}
    for name in BUFFER_ARRAYS:
        value = getattr(buffer, name)
        rows = (
            {key: a[:filled] for key, a in value.items()}
            if isinstance(value, dict)
            else value[:filled]
        )
        state[name] = _tensors(rows)
    return state


def _restore_buffer(buffer: ReplayBuffer, state: dict[str, Any], path: Path) -> None:
    buffer.pos, buffer.full = int(state["pos"]), bool(state["full"])
    for name in BUFFER_ARRAYS:
        target, saved = getattr(buffer, name), state[name]
        pairs = target.items() if isinstance(target, dict) else [(None, target)]
        for key, array in pairs:
            values = _arrays(saved[key] if key is not None else saved)
            if values.shape[1:] != array.shape[1:] or len(values) > len(array):
                raise ValueError(f"{path}: the saved replay buffer's {name} has shape "
                                 f"{values.shape}, this run's holds {array.shape}")  # fmt: skip
            array[: len(values)] = values


def _monitor_rewards(envs: DummyVecEnv) -> list[list[float]]:
    """The rewards of each env's current episode, which SB3's Monitor sums when it ends."""
    return envs.get_attr("rewards") if envs.env_is_wrapped(Monitor)[0] else []


def save_training_state(model: OffPolicyAlgorithm, path: str | Path, extra: dict) -> Path:
    """Write ``model``'s whole training state and ``extra`` (plain values) to ``path``,
    atomically."""
    _check_supported(model)
    variables = model._get_torch_save_params()[1]  # tensors SB3's save keeps beside state dicts
    envs = model.get_env()
    numpy_state = np.random.get_state()  # noqa: NPY002 (SB3 draws from the legacy global one)
    payload = {
        "format": STATE_FORMAT,
        "algorithm": type(model).__name__,
        "num_envs": envs.num_envs,
        "parameters": model.get_parameters(),
        "variables": {name: recursive_getattr(model, name).detach().clone() for name in variables},
        "counters": {
            "num_timesteps": int(model.num_timesteps),
            "n_updates": int(model._n_updates),
            "episode_num": int(model._episode_num),
        },
        "last_obs": _tensors(model._last_obs),
        "last_episode_starts": _tensors(model._last_episode_starts),
        "buffer": _buffer_state(model.replay_buffer),
        "rng": {
            "torch": torch.get_rng_state(),
            "numpy": [
                numpy_state[0],
                torch.from_numpy(numpy_state[1].astype(np.int64)),
                *numpy_state[2:],
            ],
            "python": random.getstate(),
            "action_space": model.action_space.np_random.bit_generator.state,
        },
        "envs": envs.env_method("get_state"),
        "episode_rewards": _monitor_rewards(envs),
        "extra": extra,
    }
    return save_torch(payload, path)


def restore_training_state(model: OffPolicyAlgorithm, path: str | Path) -> dict:
    """Put ``model`` (built as the saved run was: same algorithm, settings, seed and envs) back
    where ``save_training_state`` left it; returns the saved ``extra``."""
    _check_supported(model)
    path = Path(path)
    state = read_checkpoint(path, STATE_FORMAT, "training-state")
    envs = model.get_env()
    if state["algorithm"] != type(model).__name__ or state["num_envs"] != envs.num_envs:
        raise ValueError(f"{path} holds a {state['algorithm']} run on {state['num_envs']} envs, "
                         f"not this {type(model).__name__} on {envs.num_envs}")  # fmt: skip
    # The wrappers (Gymnasium's order check, SB3's Monitor) refuse a step before a reset; the
    # envs' own state is overwritten below, and every generator after it.
    envs.reset()
    model.set_parameters(state["parameters"], exact_match=True)
    for name, value in state["variables"].items():
        recursive_getattr(model, name).data.copy_(value)
    counters = state["counters"]
    model.num_timesteps = counters["num_timesteps"]
    model._n_updates = counters["n_updates"]
    model._episode_num = counters["episode_num"]
    model._last_obs = _arrays(state["last_obs"])
    model._last_episode_starts = _arrays(state["last_episode_starts"])
    _restore_buffer(model.replay_buffer, state["buffer"], path)
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    np.random.set_state(  # noqa: NPY002
        (rng["numpy"][0], rng["numpy"][1].numpy().astype(np.uint32), *rng["numpy"][2:])
    )
    random.setstate((rng["python"][0], tuple(rng["python"][1]), rng["python"][2]))
    model.action_space.np_random.bit_generator.state = rng["action_space"]
    for index, env_state in enumerate(state["envs"]):
        envs.env_method("set_state", env_state, indices=[index])
    if envs.env_is_wrapped(Monitor)[0]:
        for index, rewards in enumerate(state["episode_rewards"]):
            envs.set_attr("rewards", list(rewards), indices=[index])
    return state["extra"]
