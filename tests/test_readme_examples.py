"""The README's "Plug in your own RL algorithm" example runs as written (with fewer steps)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def test_plug_in_example_runs() -> None:
    text = README.read_text()
    section = text[text.index("## Plug in your own RL algorithm") :]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    code = code.replace("total_timesteps=20_000", "total_timesteps=300")
    code = code.replace(
        'dataset="retailrocket-synthetic"', 'dataset="retailrocket-synthetic", scale="tiny"'
    )
    assert "total_timesteps=300" in code and 'scale="tiny"' in code
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    assert namespace["td3"].num_timesteps == 300
    assert namespace["sac"].num_timesteps == 300


def test_dple_example_runs(tmp_path) -> None:
    """The D-PLE Python example, on the tiny twin with a small pretrained backbone."""
    import torch

    from agents.checkpoint import save_model
    from agents.models import build_model
    from rmtl_env.data import load_dataset

    text = README.read_text()
    section = text[text.index("### D-PLE, the paper's RL baseline") :]
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
