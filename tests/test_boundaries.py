"""Issue 16's boundary cases: checkpoints that cannot run code or be used with other data, raw
files that cannot lie silently, and run comparisons that cannot mix runs."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from agents.checkpoint import CheckpointError, check_fits, load_critic, load_model, save_model
from agents.models import build_model
from rmtl_env.data import ColumnRoles, DataFormatError, load_dataset
from rmtl_env.data.retailrocket import RetailRocketConfig, RetailRocketFiles
from rmtl_env.data.synthetic import write_twin


class _Exploit:
    """A pickle that runs a shell command when unpickled (what a crafted .pt could hold)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("loader", [load_model, load_critic])
def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path, loader) -> None:
    marker, path = tmp_path / "pwned", tmp_path / "backbone.pt"
    torch.save({"format": "rmtl-backbone/1", "payload": _Exploit(marker)}, path)
    with pytest.raises(CheckpointError, match=f"{path}.*not a readable"):
        loader(path)
    assert not marker.exists()
    path.write_bytes(
        pickle.dumps(_Exploit(marker), protocol=2)
    )  # a bare pickle, not torch's zip format
    with pytest.raises(CheckpointError, match=str(path)):
        loader(path)
    assert not marker.exists()


@pytest.mark.parametrize("content", [b"", b"not a checkpoint\n", None])
def test_empty_text_and_truncated_checkpoints_name_the_file(tmp_path, content) -> None:
    path = tmp_path / "model.pt"
    if content is None:  # a real checkpoint cut short
        save_model(build_model("esmm", [5, 4], 1, 2, embed_dim=4, bottom_dims=(8,)), path)
        content = path.read_bytes()[:200]
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=f"{path} is not a readable backbone checkpoint"):
        load_model(path)


def test_a_checkpoint_from_other_data_is_refused_before_the_run_starts(tmp_path) -> None:
    from agents.pipeline import DataConfig
    from rmtl_bench import jobs

    rr = load_dataset("retailrocket-synthetic", scale="tiny")
    small = {"embed_dim": 4, "bottom_dims": (8,), "tower_dims": ()}
    other = build_model("esmm", rr.field_dims, len(rr.numerical_fields), 2, **small)
    path = save_model(other, tmp_path / "rr.pt")
    kr = load_dataset("kuairand-synthetic", scale="tiny")
    with pytest.raises(CheckpointError, match="trained on other data than kuairand-synthetic"):
        check_fits(load_model(path), kr, path)
    shifted = build_model("esmm", [d + 1 for d in rr.field_dims], 1, 2, **small)
    with pytest.raises(CheckpointError, match="vocabulary sizes"):
        check_fits(shifted, rr, "shifted.pt")  # e.g. a twin of another --data-seed
    job = jobs.Job(DataConfig("kuairand-synthetic", "tiny"), device="cpu")
    with pytest.raises(CheckpointError, match="rr.pt was trained on other data"):
        jobs.run_rmtl(tmp_path / "run", job, "esmm", backbone_checkpoint=path)
    assert not (tmp_path / "run" / "config.json").exists()  # nothing written for a refused run


@pytest.fixture(scope="module")
def rr_raw(tmp_path_factory) -> Path:
    return write_twin("retailrocket-synthetic", tmp_path_factory.mktemp("rr"), "tiny", 0)


def test_retailrocket_timestamps_in_seconds_are_refused(tmp_path, shared_raw, prepare) -> None:
    events = pd.read_csv(shared_raw / "retailrocket" / "events_sample_5000visitors.csv.gz")
    events["timestamp"] //= 1000
    events.to_csv(tmp_path / "events.csv", index=False)
    with pytest.raises(DataFormatError, match="'timestamp' looks like epoch seconds"):
        prepare(RetailRocketFiles(events=tmp_path / "events.csv"))


def test_a_truncated_gzip_names_the_file(tmp_path, shared_raw, prepare) -> None:
    raw = (shared_raw / "retailrocket" / "events_sample_5000visitors.csv.gz").read_bytes()
    path = tmp_path / "events.csv.gz"
    path.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(DataFormatError, match=r"events file .*events\.csv\.gz: cannot be read"):
        prepare(RetailRocketFiles(events=path))


def test_properties_missing_from_the_files_leave_views_without_them(tmp_path, rr_raw, prepare):
    folder = tmp_path / "rr"
    shutil.copytree(rr_raw, folder)
    for part in folder.glob("item_properties_part*.csv"):
        log = pd.read_csv(part)
        log[log["property"].isin(["categoryid", "available"])].to_csv(part, index=False)
    table = prepare(RetailRocketFiles.in_folder(folder))
    views, counts = len(table.frame), table.meta["row_counts"]
    missing = [p for p in RetailRocketConfig().properties if p not in ("categoryid", "available")]
    assert missing and all(counts[f"views_without_{p}"] == views for p in missing)
    assert counts["views_without_categoryid"] < views


def _own_log(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    click = rng.integers(0, 2, n)
    return pd.DataFrame({
        "uid": rng.integers(0, 20, n), "ts": 1_600_000_000 + np.sort(rng.integers(0, 10**6, n)),
        "cat": rng.choice(["a", "b"], n), "price": rng.normal(size=n), "click": click,
        "buy": click * rng.integers(0, 2, n),
    })  # fmt: skip


ROLES = {"user": "uid", "timestamp": "ts", "labels": ["click", "buy"], "categorical": ["cat"],
         "numerical": ["price"]}  # fmt: skip


def test_own_log_seconds_without_their_unit_are_refused(tmp_path) -> None:
    _own_log().to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataFormatError, match="'ts' looks like epoch seconds.*timestamp_unit='s'"):
        load_dataset(tmp_path / "log.csv", roles=ColumnRoles(**ROLES))
    data = load_dataset(tmp_path / "log.csv", roles=ColumnRoles(**ROLES, timestamp_unit="s"))
    assert len(data.frame) == 300
    with pytest.raises(DataFormatError, match="looks like epoch milliseconds"):
        ms = _own_log().assign(ts=lambda f: f["ts"] * 1000)
        ms.to_csv(tmp_path / "ms.csv", index=False)
        load_dataset(tmp_path / "ms.csv", roles=ColumnRoles(**ROLES, timestamp_unit="s"))


def test_an_infinite_numerical_value_names_its_column_and_row(tmp_path) -> None:
    log = _own_log()
    log.loc[41, "price"] = np.inf
    log.to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataFormatError, match="column 'price' has value inf at data row 42"):
        load_dataset(tmp_path / "log.csv", roles=ColumnRoles(**ROLES, timestamp_unit="s"))


def _fake_run(folder: Path, seed: int, lam: float, dataset: str, tasks=("click", "buy")) -> Path:
    folder.mkdir(parents=True)
    config = {"job": "rmtl", "dataset": dataset, "seed": seed, "backbone": "esmm",
              "rmtl": {"lam": lam, "seed": seed}, "environment": {"torch_threads": 2}}  # fmt: skip
    metrics = {m: {t: {"auc": 0.7 + 0.01 * seed + (m != "esmm") * 0.001, "logloss": 0.2,
                       "s_logloss": 0.1} for t in tasks} for m in ("esmm", "rmtl-esmm")}  # fmt: skip
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "metrics.json").write_text(json.dumps({"test": metrics}))
    return folder


def test_compare_runs_keeps_configurations_and_datasets_apart(tmp_path) -> None:
    import compare_runs

    runs = [_fake_run(tmp_path / f"a{s}", s, 0.7, "twin") for s in (0, 1)]
    runs += [_fake_run(tmp_path / f"b{s}", s, 0.3, "twin") for s in (0, 1)]
    runs += [_fake_run(tmp_path / f"own{s}", s, 0.7, "my_log.csv", ("clk", "pay")) for s in (0, 1)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert compare_runs.main([str(r) for r in runs]) == 0
    text = out.getvalue()
    # lambda 0.7 and 0.3: two groups, their headings told apart by the setting that differs
    assert "### twin: esmm (seeds [0, 1]) | rmtl.lam=0.7\n" in text
    assert "### twin: esmm (seeds [0, 1]) | rmtl.lam=0.3\n" in text
    assert "### my_log.csv: esmm (seeds [0, 1])" in text and "| pay |" in text
    twin = _fake_run(tmp_path / "again0", 0, 0.7, "twin")
    with pytest.raises(SystemExit, match="same configuration and seed 0"):
        compare_runs.main([str(runs[0]), str(twin)])
    with pytest.raises(SystemExit, match="are the same run folder"):
        compare_runs.main([str(runs[0]), str(runs[0]) + "/"])
    copy = tmp_path / "copy"  # run a0's results under another seed
    shutil.copytree(runs[0], copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "seed": 5}))
    with pytest.raises(SystemExit, match="identical test metrics under different seeds"):
        compare_runs.main([str(runs[0]), str(copy)])
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert compare_runs.main([str(runs[0])]) == 0
    assert "A paired t-test needs at least 2 seeds; this group has 1 (seed 0)" in out.getvalue()


@pytest.fixture
def cached_twin(tmp_path, monkeypatch) -> Path:
    """A private cache holding the tiny KuaiRand twin; returns its processed folder."""
    monkeypatch.setenv("RMTL_DATA_DIR", str(tmp_path / "cache"))
    data = load_dataset("kuairand-synthetic", scale="tiny")
    folders = [p.parent for p in (tmp_path / "cache").rglob("meta.json")]
    assert len(folders) == 1 and data.name == "kuairand-synthetic"
    return folders[0]


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (
            lambda f: (f / "impressions.parquet").write_bytes(b"PAR1 cut"),
            "parquet file does not read",
        ),
        (lambda f: (f / "meta.json").write_text("{not json"), r"meta\.json is not valid JSON"),
        (lambda f: (f / "vocabulary.parquet").unlink(), r"vocabulary\.parquet is missing"),
    ],
)
def test_a_damaged_cache_is_named_with_its_remedy_and_refresh_rebuilds_it(
    cached_twin, damage, message
) -> None:
    damage(cached_twin)
    with pytest.raises(DataFormatError, match=f"{message}.*refresh"):
        load_dataset("kuairand-synthetic", scale="tiny")
    rebuilt = load_dataset("kuairand-synthetic", scale="tiny", refresh=True)
    assert len(rebuilt.split("train")) > 0
    again = load_dataset("kuairand-synthetic", scale="tiny")  # the rebuilt cache is used
    pd.testing.assert_frame_equal(again.frame, rebuilt.frame)


def test_training_scripts_take_refresh(tmp_path) -> None:
    import rmtl_ddpg

    args = rmtl_ddpg.parse_args(["--refresh"])
    assert args.data.refresh is True


@pytest.fixture(scope="module")
def env():
    import gymnasium as gym

    import rmtl_env  # noqa: F401 -- registers SessionRecEnv-v0

    environment = gym.make("SessionRecEnv-v0", dataset="kuairand-synthetic", scale="tiny")
    environment.reset(seed=0)
    return environment


@pytest.mark.parametrize("action", [["a", "b"], {"ctr": 0.5}, "abc"])
def test_an_action_that_is_not_numbers_says_action(env, action) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match="action must be 2 numbers"):
        env.step(action)


def test_reset_options_are_checked(env) -> None:
    with pytest.raises(TypeError, match="session_id must be an integer id, got None"):
        env.reset(options={"session_id": None})
    with pytest.raises(ValueError, match=r"unknown key\(s\) \['sesion_id'\]"):
        env.reset(options={"sesion_id": 3})


def test_prob_clip_must_be_a_number() -> None:
    from rmtl_env.env import SessionRecEnv

    with pytest.raises(TypeError, match="prob_clip must be a number"):
        SessionRecEnv("kuairand-synthetic", scale="tiny", prob_clip="0.1")


def test_a_run_folder_that_is_a_file_and_a_resume_keeps_the_first_machine(tmp_path) -> None:
    from rmtl_bench.run_folder import DifferentConfig, RunFolder, read_json

    (tmp_path / "file").write_text("x")
    with pytest.raises(DifferentConfig, match="is a file"):
        RunFolder(tmp_path / "file", {"a": 1}).open()
    RunFolder(tmp_path / "run", {"a": 1}).open()
    first = read_json(tmp_path / "run" / "config.json")["environment"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        RunFolder(tmp_path / "run", {"a": 1}).open()
    finally:
        torch.set_num_threads(threads)
    config = read_json(tmp_path / "run" / "config.json")
    assert config["environment"] == first and config["resumed"][0]["torch_threads"] == 1


def test_written_files_follow_the_umask(tmp_path) -> None:
    from rmtl_env.data.io import atomic_directory, atomic_write_bytes

    previous = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "result.json", b"{}")
        with atomic_directory(tmp_path / "cache") as staging:
            (staging / "x").write_text("y")
    finally:
        os.umask(previous)
    assert (tmp_path / "result.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o755


def test_a_raw_file_present_plain_and_gzipped_is_ambiguous(tmp_path, rr_raw) -> None:
    import gzip

    folder = tmp_path / "rr"
    shutil.copytree(rr_raw, folder)
    (folder / "events.csv.gz").write_bytes(gzip.compress((folder / "events.csv").read_bytes()))
    with pytest.raises(DataFormatError, match=r"both events\.csv and events\.csv\.gz"):
        RetailRocketFiles.in_folder(folder)


def test_the_embedding_extractor_refuses_normalised_ids() -> None:
    from gymnasium import spaces

    from agents.sb3 import CategoricalEmbeddingExtractor

    space = spaces.Dict({
        "categorical": spaces.Box(0, 9, shape=(2,), dtype=np.int64),
        "numerical": spaces.Box(-np.inf, np.inf, shape=(1,), dtype=np.float32),
    })  # fmt: skip
    extractor = CategoricalEmbeddingExtractor(space, embed_dim=4)
    good = {"categorical": torch.tensor([[1.0, 2.0]]), "numerical": torch.zeros(1, 1)}
    assert extractor(good).shape[0] == 1
    with pytest.raises(ValueError, match="non-integer ids.*norm_obs_keys"):
        extractor({"categorical": torch.tensor([[0.37, -1.2]]), "numerical": torch.zeros(1, 1)})


def test_own_log_inputs_that_used_to_fail_deep_or_silently(tmp_path) -> None:
    log = _own_log()
    log["ts"] = log["ts"].astype(object)
    log.loc[9, "ts"] = "yesterday"
    log.to_csv(tmp_path / "log.csv", index=False)
    with pytest.raises(DataFormatError, match="value 'yesterday' at data row 10"):
        load_dataset(tmp_path / "log.csv", roles=ColumnRoles(**ROLES, timestamp_unit="s"))
    _own_log().to_csv(tmp_path / "ok.csv", index=False)
    roles = tmp_path / "roles.json"
    roles.write_text("{not json")
    with pytest.raises(DataFormatError, match=f"roles file {roles} does not read as JSON"):
        load_dataset(tmp_path / "ok.csv", roles=roles)
    roles.write_text(json.dumps({**ROLES, "timestamp_unti": "s"}))
    with pytest.raises(DataFormatError, match=r"unknown key\(s\) \['timestamp_unti'\]"):
        load_dataset(tmp_path / "ok.csv", roles=roles)
    good = ColumnRoles(**ROLES, timestamp_unit="s")
    with pytest.raises(ValueError, match="dataset_name must be"):
        load_dataset(tmp_path / "ok.csv", roles=good, dataset_name="../../x")
    with pytest.raises(TypeError, match="min_count must be an integer"):
        load_dataset(tmp_path / "ok.csv", roles=good, min_count="3")
    assert ColumnRoles(**ROLES, nested_labels=True, nesting="ignore").nesting == "ignore"


def test_the_training_scripts_read_an_own_log_with_roles(tmp_path) -> None:
    import rmtl_ddpg

    roles = tmp_path / "roles.json"
    roles.write_text(json.dumps({**ROLES, "timestamp_unit": "s"}))
    args = rmtl_ddpg.parse_args(["--dataset", str(tmp_path / "log.csv"), "--roles", str(roles)])
    assert args.data.roles == str(roles)


def test_an_interrupted_write_leaves_no_half_written_folder(tmp_path) -> None:
    from rmtl_env.data.io import atomic_directory

    with pytest.raises(KeyboardInterrupt), atomic_directory(tmp_path / "processed") as staging:
        (staging / "impressions.parquet").write_bytes(b"half")
        raise KeyboardInterrupt  # e.g. Ctrl-C during prepare
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its staging copy


def test_a_task_with_one_class_is_named_and_metrics_stay_strict_json(tmp_path) -> None:
    from agents.trainer import train_model
    from rmtl_bench.run_folder import read_json, write_json
    from rmtl_env.metrics import auc

    with pytest.warns(RuntimeWarning, match="AUC is undefined"):
        assert np.isnan(auc(np.zeros(5), np.linspace(0, 1, 5)))
    data = load_dataset("kuairand-synthetic", scale="tiny")
    train, val = data.split("train"), data.split("val")
    labels = val.labels.copy()
    labels[:, 1] = 0  # every long_view label 0 in validation
    val = dataclasses.replace(val, labels=labels)
    model = build_model("esmm", data.field_dims, len(data.numerical_fields), 2, embed_dim=4,
                        bottom_dims=(8,))  # fmt: skip
    with pytest.raises(ValueError, match=r"only one class for task\(s\) \['long_view'\]"):
        train_model(model, train, val)
    write_json(tmp_path / "m.json", {"auc": float("nan"), "x": np.float32("inf"), "ok": 0.5})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert read_json(tmp_path / "m.json") == {"auc": None, "x": None, "ok": 0.5}


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_cache_is_named_before_anything_is_built(tmp_path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    cache.chmod(0o555)
    monkeypatch.setenv("RMTL_DATA_DIR", str(cache))
    try:
        with pytest.raises(PermissionError, match=f"cache {cache}.* not writable"):
            load_dataset("kuairand-synthetic", scale="tiny")
    finally:
        cache.chmod(0o755)


def test_a_read_only_cache_check_names_the_folder(tmp_path, monkeypatch) -> None:
    """The same check, as root can see it: the folder refuses writes."""
    from rmtl_env.data import catalog

    monkeypatch.setattr(catalog.os, "access", lambda *_: False)
    with pytest.raises(PermissionError, match=f"{tmp_path}.* not writable.*RMTL_DATA_DIR"):
        catalog._check_writable(tmp_path)


def test_prepare_prints_the_folder_on_a_cache_hit(cached_twin, capsys) -> None:
    from rmtl_env.data.__main__ import main

    assert main(["prepare", "kuairand-synthetic", "--scale", "tiny"]) == 0
    assert f"processed dataset: {cached_twin}" in capsys.readouterr().out


@pytest.mark.parametrize("action", [[[0.5, 0.5]], [[0.5], [0.5]], [0.5, 0.5, 0.5]])
def test_an_action_of_another_shape_is_refused_never_squeezed(env, action) -> None:
    env.reset(seed=0)
    with pytest.raises(ValueError, match=r"action must have shape \(2,\)") as error:
        env.step(np.array(action))
    assert ("a batch of one" in str(error.value)) == (np.size(action) == 2)


def test_a_bare_string_is_never_split_into_letters() -> None:
    from rmtl_env import SessionRecEnv
    from rmtl_env.data import ColumnRoles
    from rmtl_env.data.kuairand import KuaiRandConfig

    tiny = load_dataset("retailrocket-synthetic", scale="tiny")
    with pytest.raises(ValueError, match=r"tasks must be a list of names, got the string 'ctr'; "
                                         r"write \['ctr'\]"):  # fmt: skip
        SessionRecEnv(tiny, tasks="ctr")
    with pytest.raises(ValueError, match="ColumnRoles.labels must be a list of names, got the "
                                         "string 'click'"):  # fmt: skip
        ColumnRoles(timestamp="ts", labels="click", user="uid")
    with pytest.raises(ValueError, match="tasks must be a list of names, got the string"):
        KuaiRandConfig(tasks="is_click")
    with pytest.raises(ValueError, match=r"must be a list of names \(strings\), got \[1\]"):
        tiny.split("train", tasks=[1])
    assert SessionRecEnv(tiny, tasks=["ctcvr"]).tasks == ["ctcvr"]


def _shop_log(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "uid": rng.integers(0, 20, rows), "click": rng.integers(0, 2, rows),
        "ts": 1_600_000_000_000 + np.sort(rng.integers(0, 10**9, rows)),
        "shop": rng.integers(0, 5, rows), "price": rng.random(rows),
    })  # fmt: skip


OWN_ROLES = {"user": "uid", "timestamp": "ts", "labels": ["click"], "categorical": ["shop"],
             "numerical": ["price"]}  # fmt: skip


def test_iso_timestamps_with_utc_offsets_are_normalised_to_utc(tmp_path) -> None:
    log = _shop_log()
    utc = pd.to_datetime(log["ts"], unit="ms", utc=True)
    zones = ["Asia/Shanghai", "America/New_York"]
    iso = log.assign(ts=[t.tz_convert(zones[i % 2]).isoformat() for i, t in enumerate(utc)])
    log.to_csv(tmp_path / "ms.csv", index=False)
    iso.to_csv(tmp_path / "iso.csv", index=False)
    ms = load_dataset(tmp_path / "ms.csv", roles=ColumnRoles(**OWN_ROLES))
    parsed = load_dataset(tmp_path / "iso.csv", roles=ColumnRoles(**OWN_ROLES))
    np.testing.assert_array_equal(parsed.frame["timestamp"], ms.frame["timestamp"])


def test_awkward_own_logs_name_the_problem(tmp_path) -> None:
    log = _shop_log()
    log.to_csv(tmp_path / "données é.csv", index=False)  # a file name outside ASCII
    data = load_dataset(tmp_path / "données é.csv", roles=ColumnRoles(**OWN_ROLES))
    assert data.name.startswith("donn_es_") and len(data.frame) == len(log)
    lines = log.to_csv(index=False).splitlines()
    lines.insert(51, lines[0])  # two files concatenated with their headers
    (tmp_path / "joined.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFormatError, match="line 52 repeats the header"):
        load_dataset(tmp_path / "joined.csv", roles=ColumnRoles(**OWN_ROLES))
    log.assign(empty=np.nan, one=3.0).to_csv(tmp_path / "flat.csv", index=False)
    roles = {**OWN_ROLES, "numerical": ["price", "empty", "one"]}
    with pytest.warns(UserWarning) as caught:
        load_dataset(tmp_path / "flat.csv", roles=ColumnRoles(**roles))
    messages = [str(w.message) for w in caught]
    assert any("feature column 'empty' is entirely empty" in m for m in messages)
    assert any("feature column 'one' holds one value (3.0) in every row" in m for m in messages)
