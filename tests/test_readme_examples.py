"""The README's and the docs pages' examples run as written (with fewer steps)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def doc_section(marker: str) -> str:
    """The text from ``marker`` on, in the README or the docs page that holds it."""
    for page in [README, *sorted((ROOT / "docs").glob("*.md"))]:
        text = page.read_text()
        if marker in text:
            return text[text.index(marker) :]
    raise AssertionError(f"no README or docs page holds {marker!r}")


def test_plug_in_example_runs() -> None:
    section = doc_section("# Plug in your own RL algorithm")
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace("total_timesteps=20_000", "total_timesteps=150")
    code = code.replace(
        'dataset="retailrocket-synthetic"', 'dataset="retailrocket-synthetic", scale="tiny"'
    )
    assert "total_timesteps=150" in code and 'scale="tiny"' in code
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["td3"].num_timesteps == 150
    assert namespace["sac"].num_timesteps == 150


def test_dple_example_runs(tmp_path) -> None:
    """The D-PLE Python example, on the tiny twin with a small pretrained backbone."""
    import torch

    from agents.checkpoint import save_model
    from agents.models import build_model
    from rmtl_env.data import load_dataset

    section = doc_section("### D-PLE, the paper's RL baseline")
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    data = load_dataset("retailrocket-synthetic", scale="tiny")
    torch.manual_seed(0)
    small = {"embed_dim": 8, "bottom_dims": (16, 8), "tower_dims": (8,)}
    backbone = build_model("ple", data.field_dims, len(data.numerical_fields), 2, **small)
    checkpoint = save_model(backbone, tmp_path / "backbone.pt")
    code = code.replace('"backbone.pt"', repr(str(checkpoint)))
    code = code.replace("actor_steps=2000", "actor_steps=100, critic_max_epochs=3")
    code = code.replace(
        'dataset="retailrocket-synthetic"', 'dataset="retailrocket-synthetic", scale="tiny"'
    )
    assert "actor_steps=100" in code and 'scale="tiny"' in code and str(checkpoint) in code
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    # 3 one-step critic epochs, then 13 rollouts of train_freq 8 env steps (SB3 finishes the last
    # one, 104 >= 100) with one update each (numbers 4..16); the actor steps on every even one.
    assert namespace["result"].actor_updates == 7
    assert namespace["dple"].num_tasks == 2


def test_pipeline_example_on_an_own_log_csv(tmp_path, monkeypatch) -> None:
    """The README's pipeline example, on a random own log with the example's columns (the
    backbone and critics shrunk so that the test stays quick)."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    n = 3000
    users = rng.integers(0, 150, n)
    price = rng.gamma(2.0, 10.0, n).round(2)
    shop = rng.integers(0, 12, n)
    click = rng.random(n) < 0.2 + 0.3 * (shop % 3 == 0)
    log = pd.DataFrame({
        "uid": users, "ts": 1_600_000_000_000 + np.sort(rng.integers(0, 86_400_000 * 30, n)),
        "item_id": rng.integers(0, 400, n), "item_cat": rng.integers(0, 20, n), "shop": shop,
        "price": price, "click": click.astype(int),
        "buy": (click & (rng.random(n) < 0.3)).astype(int),
    })  # fmt: skip
    log.to_csv(tmp_path / "my_log.csv", index=False)
    monkeypatch.chdir(tmp_path)
    section = doc_section("### RMTL from Python, on your own log")
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace(
        'pretrain("esmm", splits, seed=0)',
        'pretrain("esmm", splits, ModelConfig(embed_dim=8, bottom_dims=(16,)), seed=0)',
    )
    code = code.replace("lam=0.7)", "lam=0.7, critic=CriticConfig(embed_dim=8, bottom_dims=(16,)))")
    assert "ModelConfig(" in code and "CriticConfig(" in code
    from agents.critic import CriticConfig
    from agents.models import ModelConfig

    namespace: dict = {"ModelConfig": ModelConfig, "CriticConfig": CriticConfig}
    exec(compile(code, str(README), "exec"), namespace)
    results = namespace["results"]
    assert set(results) == {"esmm", "rmtl-esmm"}  # an own log has no true probabilities
    assert 0.0 <= results["rmtl-esmm"]["buy"]["auc"] <= 1.0
    assert namespace["critics"].result.epochs >= 1
    assert (namespace["polished"].initial_weights >= 1.0).all()  # Q <= 0: w = 1 - 0.7 Q >= 1


def test_client_modes_example_runs() -> None:
    import numpy as np

    section = doc_section("For other RL clients, two modes")
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = "import gymnasium as gym\nimport rmtl_env\n" + code.replace(
        'dataset="retailrocket-synthetic"', 'dataset="retailrocket-synthetic", scale="tiny"'
    )
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    flat, multi = namespace["flat"], namespace["multi"]
    obs, _ = flat.reset(seed=0)
    assert obs.dtype == np.float32 and flat.observation_space.contains(obs)
    multi.reset(seed=0)
    _, reward, *_ = multi.step(multi.action_space.sample())
    assert reward.shape == multi.unwrapped.reward_space.shape


def test_evaluate_policy_example_runs(run_readme, capsys) -> None:
    from rmtl_env.data import load_dataset

    namespace = run_readme("### Scoring a policy: one call, one protocol",
                           {'"retailrocket-synthetic", split="test"':
                            '"retailrocket-synthetic", split="test", scale="tiny"'})  # fmt: skip
    score = namespace["score"]
    printed = capsys.readouterr().out.split()
    assert printed[0] == f"{score.score:.1f}" and score.score < 0  # a constant far from the rates
    assert score.steps == len(load_dataset("retailrocket-synthetic", scale="tiny").split("test"))
