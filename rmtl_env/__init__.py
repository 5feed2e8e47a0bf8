"""Session-wise multi-task recommendation environment.

``import rmtl_env`` registers ``SessionRecEnv-v0`` (Dict observations) and
``SessionRecEnvFlat-v0`` (the same env with flat Box observations, for clients that take only a
Box: ``gym.make("rmtl_env:SessionRecEnvFlat-v0")`` imports the package itself).
"""

from gymnasium.envs.registration import register

from rmtl_env.env import SessionRecEnv
from rmtl_env.evaluation import PolicyScore, evaluate_policy
from rmtl_env.rewards import task_rewards
from rmtl_env.transitions import Transitions, build_transitions

register(
    id="SessionRecEnv-v0",
    entry_point="rmtl_env.env:SessionRecEnv",
    vector_entry_point="rmtl_env.vector:SessionRecVectorEnv",
)
register(
    id="SessionRecEnvFlat-v0",
    entry_point="rmtl_env.env:SessionRecEnv",
    vector_entry_point="rmtl_env.vector:SessionRecVectorEnv",
    kwargs={"observation_mode": "flat"},
)

__all__ = [
    "PolicyScore",
    "SessionRecEnv",
    "Transitions",
    "build_transitions",
    "evaluate_policy",
    "task_rewards",
]
__version__ = "0.1.0"
