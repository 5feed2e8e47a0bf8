"""The official polish weights ``w_k = 1 - lambda * Q_k(s, p_k)`` (lambda 1) on the training split.

Run inside a chain folder made by ``setup.sh`` after its critic stage: ``python weights.py MODEL``.
The critics score the pretrained model's predictions and stay in train mode (dropout on), as in
the official polish, which never calls ``eval()`` on them. Prints one JSON line.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, ".")  # the official code's modules, in the chain folder
from dataset.rtrl import RetailRocketRLDataset  # noqa: E402
from layers.critic import CriticNeg  # noqa: E402
from train.run import get_model  # noqa: E402

BATCH = 8192


def batched(fn, *tensors: torch.Tensor) -> torch.Tensor:
    n = len(tensors[0])
    return torch.cat([fn(*(t[i : i + BATCH] for t in tensors)) for i in range(0, n, BATCH)])


def main(model_name: str) -> None:
    torch.manual_seed(0)
    data = RetailRocketRLDataset("./dataset/rt/train.csv")
    categorical = torch.as_tensor(np.array(data.categorical_data))
    numerical = torch.as_tensor(np.array(data.numerical_data))
    dims = np.array(json.loads(Path("../export/export.json").read_text())["field_dims"])
    model = get_model(model_name, dims, 1, 2, 8, 128)
    path = f"chkpt/SL/rt_{model_name}/rt_{model_name}_0.0.pt"
    model.load_state_dict(torch.load(path, map_location="cpu"))
    model.eval()
    out = {}
    with torch.no_grad():
        probs = batched(lambda c, x: torch.stack(model(c, x), 1), categorical, numerical)
        for k in (0, 1):
            critic = CriticNeg(dims, 1, 128, (512, 256), (128, 64), 0.2)
            state = torch.load(
                f"chkpt/RL/res_TD3BC_{model_name}/critic{k + 1}.pth", map_location="cpu"
            )
            critic.load_state_dict(state)
            critic.train()
            q = batched(critic, categorical, numerical, probs[:, k : k + 1]).squeeze(-1)
            w = 1.0 - q
            out[f"task{k}"] = {
                "q_mean": float(q.mean()),
                "w_mean": float(w.mean()),
                "w_std": float(w.std()),
                "w_min": float(w.min()),
                "w_max": float(w.max()),
                "share_q_zero": float((q == 0).float().mean()),
            }
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1])
