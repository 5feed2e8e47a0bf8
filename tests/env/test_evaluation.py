"""``rmtl_env.evaluate_policy``: the vectorised pass equals the env stepped session by session and
the supervised evaluation; the normalised score's fixed points; bad policies."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import rmtl_env
from rmtl_env.data import load_dataset
from rmtl_env.evaluation import constant_policy, uniform_policy


@pytest.fixture(scope="module")
def tiny():
    return load_dataset("retailrocket-synthetic", scale="tiny", seed=0)


def linear_policy(obs):
    """A deterministic policy of the observation, so that rows score differently."""
    x = np.asarray(obs["numerical"], dtype=np.float64).sum(1) + obs["categorical"][:, 0] % 7
    p = 1.0 / (1.0 + np.exp(-(x - 3.0)))
    return np.stack([p, 0.5 * p], axis=1)


def test_equals_stepping_the_env_through_every_session(tiny) -> None:
    env = gym.make("SessionRecEnv-v0", dataset=tiny, split="test", session_order="sequential",
                   reward_weights=[1.0, 2.0])  # fmt: skip
    returns = []
    for _ in range(tiny.split("test").num_sessions):
        obs, _ = env.reset()
        total, terminated = 0.0, False
        while not terminated:
            batch = {k: v[None] for k, v in obs.items()}
            obs, reward, terminated, _, _ = env.step(linear_policy(batch)[0])
            total += reward
        returns.append(total)
    score = rmtl_env.evaluate_policy(linear_policy, tiny, reward_weights=[1.0, 2.0])
    assert score.mean_return == pytest.approx(np.mean(returns), rel=1e-12)
    assert score.episodes == len(returns) and score.steps == len(tiny.split("test"))


def test_equals_the_supervised_evaluation_for_a_model(tiny) -> None:
    from agents.models import build_model
    from agents.pipeline import Splits, evaluate

    model = build_model("ple", tiny.field_dims, len(tiny.numerical_fields), 2, embed_dim=4,
                        bottom_dims=(8,), tower_dims=(4,), num_experts=4)  # fmt: skip
    expected = evaluate({"ple": model}, Splits.of(tiny).test, oracle=False)["ple"]
    assert rmtl_env.evaluate_policy(model, tiny).metrics == expected


def test_base_rate_scores_0_oracle_100_uniform_below_0(tiny) -> None:
    rates = tiny.split("train").labels.mean(0, dtype=np.float64)
    assert rmtl_env.evaluate_policy(constant_policy(rates), tiny).score == pytest.approx(
        0, abs=1e-9
    )
    truth = tiny.split("test").true_probs
    rows = iter(range(len(truth)))

    def oracle(obs):
        n = len(obs["categorical"])
        return truth[[next(rows) for _ in range(n)]]

    best = rmtl_env.evaluate_policy(oracle, tiny)
    assert best.score == pytest.approx(100.0) and best.reference == "oracle"
    assert rmtl_env.evaluate_policy(uniform_policy(2), tiny).score < 0


def test_flat_observations_and_data_without_truth(tiny, monkeypatch) -> None:
    import dataclasses

    flat = lambda obs: np.clip(obs[:, -1:] * 0 + [[0.1, 0.02]], 0, 1)  # noqa: E731
    with_truth = rmtl_env.evaluate_policy(flat, tiny, observation_mode="flat")
    split = tiny.split
    monkeypatch.setattr(
        tiny, "split", lambda *a, **k: dataclasses.replace(split(*a, **k), true_probs=None)
    )
    without = rmtl_env.evaluate_policy(flat, tiny, observation_mode="flat")
    assert without.score is None and without.reference is None
    assert without.mean_return == with_truth.mean_return
    given = rmtl_env.evaluate_policy(
        flat, tiny, observation_mode="flat", reference_return=with_truth.reference_return
    )
    assert given.reference == "given" and given.score == pytest.approx(with_truth.score)


def test_an_sb3_model_is_scored_with_its_own_observations(tiny) -> None:
    from stable_baselines3 import TD3

    for env_id, policy in (("SessionRecEnv-v0", "MultiInputPolicy"),
                           ("SessionRecEnvFlat-v0", "MlpPolicy")):  # fmt: skip
        env = gym.make(env_id, dataset=tiny)
        model = TD3(policy, env, seed=0, policy_kwargs={"net_arch": [8]})
        score = rmtl_env.evaluate_policy(model, tiny)
        assert np.isfinite(score.mean_return)
        obs = rmtl_env.transitions.observations(tiny.split("test"),
                                               "dict" if "Multi" in policy else "flat")  # fmt: skip
        actions = model.predict(obs, deterministic=True)[0]
        assert ((actions >= 0) & (actions <= 1)).all()


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        (lambda obs: np.full((len(obs["categorical"]), 3), 0.5), r"shape \(\d+, 3\).*expected"),
        (lambda obs: np.full((len(obs["categorical"]),), 0.5), "shape"),
        (lambda obs: np.full((len(obs["categorical"]), 2), 1.5), r"in \[0, 1\]"),
        (lambda obs: np.full((len(obs["categorical"]), 2), np.nan), "finite"),
        (42, "callable"),
    ],
)
def test_bad_policies_get_a_clear_error(tiny, policy, message) -> None:
    with pytest.raises((ValueError, TypeError), match=message):
        rmtl_env.evaluate_policy(policy, tiny)


def test_scores_from_predictions_equal_evaluate_policy(tiny) -> None:
    from rmtl_env.evaluation import normalised_scores
    from rmtl_env.transitions import policy_actions

    probs = policy_actions(tiny.split("test"), linear_policy)
    from_predictions = normalised_scores(tiny, {"linear": probs})["linear"]
    direct = rmtl_env.evaluate_policy(linear_policy, tiny)
    assert from_predictions["mean_return"] == pytest.approx(direct.mean_return, rel=1e-12)
    assert from_predictions["score"] == pytest.approx(direct.score, rel=1e-9)
