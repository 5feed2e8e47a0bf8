"""Flags generated from the config dataclasses: one declaration per hyper-parameter."""

from __future__ import annotations

import contextlib
import dataclasses
import io

import dple_sb3
import pytest

import mtl_baselines
import rmtl_ddpg
from agents.dple import DPLEConfig
from agents.rmtl import PRESETS, RMTLConfig


def help_text(module) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit:
        module.parse_args(["--help"])
    assert exit.value.code == 0
    return out.getvalue()


def test_every_config_field_is_a_documented_flag() -> None:
    text = help_text(rmtl_ddpg)
    for field in dataclasses.fields(RMTLConfig):
        if field.name not in ("seed", "critic"):
            assert "--" + field.name.replace("_", "-") in text
    for flag in ("--critic-embed-dim", "--critic-independent", "--preset", "--critics-from",
                 "--backbone", "--dataset", "--data-seed", "--seed", "--device", "--lr",
                 "--epochs", "--no-shuffle", "--embed-dim"):  # fmt: skip
        assert flag in text
    assert "discount of the session MDP" in text  # the field's docstring line is its help
    assert "(default: paper 0.95, official 0.9; a finite number in [0, 1))" in " ".join(
        text.split()
    )
    dple = help_text(dple_sb3)
    for field in dataclasses.fields(DPLEConfig):
        assert "--" + field.name.replace("_", "-") in dple


def test_flags_replace_exactly_the_given_fields_of_the_preset() -> None:
    args = rmtl_ddpg.parse_args(["--seed", "3"])
    assert args.rmtl == dataclasses.replace(PRESETS["paper"], seed=3)
    args = rmtl_ddpg.parse_args(["--preset", "official", "--gamma", "0.8", "--critic-embed-dim",
                                 "16", "--no-shuffle", "--epochs", "7"])  # fmt: skip
    official = PRESETS["official"]
    assert (args.rmtl.gamma, args.rmtl.critic_epochs) == (0.8, official.critic_epochs)
    assert args.rmtl.critic == dataclasses.replace(official.critic, embed_dim=16)
    assert args.train.shuffle is False and args.train.epochs == 7 and args.train.seed == 0


@pytest.mark.parametrize(
    ("module", "argv", "message"),
    [
        (rmtl_ddpg, ["--tau", "0"], "RMTLConfig.tau must be a finite number in (0, 1], got 0.0"),
        (rmtl_ddpg, ["--weight-variant", "x"], "invalid choice: 'x'"),
        (dple_sb3, ["--actor-lr", "1"], "actor_lr must be in (0, critic_lr"),
        (mtl_baselines, ["--batch-size", "0"], "TrainConfig.batch_size must be an integer >= 1"),
        (mtl_baselines, ["--model", "xgboost"], "unknown ['xgboost']"),
        (rmtl_ddpg, ["--scale", "huge"], "scale must be one of"),
        (rmtl_ddpg, ["--embed-dim", "0"], "ModelConfig.embed_dim must be an integer >= 1"),
        (rmtl_ddpg, ["--lr", "nan"], "TrainConfig.lr must be a finite number > 0, got nan"),
        (rmtl_ddpg, ["--lam", "inf"], "RMTLConfig.lam must be a finite number >= 0, got inf"),
        (rmtl_ddpg, ["--critic-dropout", "1"], "CriticConfig.dropout must be a finite number in"),
        (dple_sb3, ["--actor-steps", "-5"], "DPLEConfig.actor_steps must be an integer >= 0"),
        (mtl_baselines, ["--tower-dims", "8", "0"], "tower_dims must be sizes, each an integer"),
        (rmtl_ddpg, ["--twin-conflict", "1.5"], "DataConfig.twin_conflict must be a finite"),
        (mtl_baselines, ["--data-seed", "-1"], "DataConfig.data_seed must be an integer >= 0"),
    ],
)
def test_an_invalid_value_is_a_usage_error_before_any_folder_exists(
    module, argv, message, tmp_path
) -> None:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), pytest.raises(SystemExit) as exit:
        module.main([*argv, "--run-dir", str(tmp_path / "run")])
    assert exit.value.code == 2 and message in err.getvalue()
    assert not (tmp_path / "run").exists()


def test_every_numeric_flag_declares_its_domain_in_the_help() -> None:
    # The mechanism (agents.domains): each numeric field of the configs the flags come
    # from declares its domain, and --help shows it beside the default.
    import dataclasses

    from agents.critic import CriticConfig
    from agents.domains import domain_of
    from agents.dple import DPLEConfig
    from agents.models import ModelConfig
    from agents.pipeline import DataConfig
    from agents.rmtl import RMTLConfig
    from agents.trainer import TrainConfig

    undeclared = [
        f"{cls.__name__}.{f.name}"
        for cls in (TrainConfig, RMTLConfig, CriticConfig, ModelConfig, DPLEConfig, DataConfig)
        for f in dataclasses.fields(cls)
        if f.type in ("int", "float", "int | None", "float | None", "tuple[int, ...]")
        and f.name != "seed"
        and domain_of(f) is None
    ]
    assert not undeclared
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        rmtl_ddpg.main(["--help"])
    assert "(default: 0.7; a finite number >= 0)" in " ".join(out.getvalue().split())
