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
