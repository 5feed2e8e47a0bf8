"""Session-wise multi-task recommendation environment.

``import rmtl_env`` registers ``SessionRecEnv-v0`` with Gymnasium.
"""

from gymnasium.envs.registration import register

from rmtl_env.env import SessionRecEnv
from rmtl_env.rewards import task_rewards
from rmtl_env.transitions import Transitions, build_transitions

register(
    id="SessionRecEnv-v0",
    entry_point="rmtl_env.env:SessionRecEnv",
    vector_entry_point="rmtl_env.vector:SessionRecVectorEnv",
)

__all__ = ["SessionRecEnv", "Transitions", "build_transitions", "task_rewards"]
__version__ = "0.1.0"
