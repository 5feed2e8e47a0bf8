"""Export a processed dataset in the processed format the official RMTL code reads.

The official code (``Applied-Machine-Learning-Lab/RMTL``) never published its preprocessing; it
reads, relative to its repository root::

    dataset/rt/train.csv, val.csv, test.csv   timestamp, visitorid, itemid, click, pay, state, next_state
    dataset/rt/item_feadf.csv                 itemid + the 7 RetailRocket property columns
    pretrain/catemap.pkl                      its category mapper (value -> embedding id per column)

and a ``dataset/rtrl.py`` (``RetailRocketRLDataset``) that is missing from its repository.
:func:`export_official` writes all of them so that the official code sees exactly our rows,
features, labels, sessions and splits:

- **one item id per impression.** ``itemid`` is the impression's row number (1-based) in the
  processed dataset, and ``item_feadf.csv`` has one row per impression with our categorical ids.
  Our features are per impression (a RetailRocket item's properties are taken as of the view), so a
  per-item table keyed by the raw item id could not carry them.
- **an identity category mapper.** ``catemap.pkl`` maps each id ``v`` of a field to ``v`` itself,
  listed in id order, so the official ``Catemapper.load_mapper`` derives our vocabulary sizes and
  ``map``/``map_rt`` leave every id unchanged. (Building the mapper with the official
  ``make_mapper`` instead would re-rank ids by frequency and merge the rare values of fields
  ``776`` and ``364`` at its 0.2 threshold: different features.)
- **sessions as visitors.** ``visitorid`` is our ``session_id``: the official code groups episodes
  and the s-Logloss by ``visitorid``. Rows are in session and time order, and the ``next_state``
  of a session's last row lists all its items in order (``[[itemid], ...]``), which is the only
  ``state``/``next_state`` cell the official environment reads. Other rows carry the current item
  (``state``) and the next one (``next_state``).
- **numerical features.** The official pipeline feeds one numerical input (a zero column). Our
  numerical fields are written as extra columns of the split files; the exported ``rtrl.py``
  reads them, and the official ``env.py`` must be patched to read them too (see
  ``export.json``'s ``patches``), or every stage sees zeros there.
- **split roles.** Files are named after our splits. The official ``SLmain.py`` early-stops on
  ``test.csv`` and reports ``val.csv`` (its lines 49-50): swap those two lines (or pass
  ``official_roles=True`` to write our validation split to ``test.csv`` and our test split to
  ``val.csv``) so that it selects on our validation split and reports our test split.

Only datasets with the official code's shape export: exactly 7 categorical fields (written under
the official column names, in order) and 2 tasks (``click``, ``pay``).
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from rmtl_env.data.dataset import SPLITS, SessionDataset, label_column
from rmtl_env.data.errors import DataFormatError
from rmtl_env.data.io import atomic_directory

OFFICIAL_FIELDS = ("785", "591", "814", "available", "categoryid", "364", "776")
OFFICIAL_LABELS = ("click", "pay")
SPLIT_COLUMNS = ("timestamp", "visitorid", "itemid", "click", "pay", "state", "next_state")
EXPORT_FILE = "export.json"

# The official env.py appends a zero numerical column to every state; with these lines (replacing
# its ``states = np.c_[cate_fea,np.zeros((cate_fea.shape[0],1))]``) it reads ours instead.
ENV_PATCH = (
    "numerical = d[NUMERICAL_COLUMNS].values if NUMERICAL_COLUMNS else "
    "np.zeros((cate_fea.shape[0], 1))\n"
    "states = np.c_[cate_fea, numerical]"
)

LOADER_TEMPLATE = '''"""RetailRocketRLDataset for the official RMTL code, written by rmtl_env's export-official.

The official repository imports ``dataset.rtrl.RetailRocketRLDataset`` but never shipped it.
Each item of this dataset is ``(session_id, categorical ids [7], numerical [N], labels [2])``:
the split file's rows joined to ``item_feadf.csv`` on ``itemid`` (one item id per impression).
"""

import numpy as np
import pandas as pd
import torch

FEATURES_PATH = "./dataset/rt/item_feadf.csv"
NUMERICAL_COLUMNS = {numerical!r}  # our numerical fields; empty: one zero column, as the official


class RetailRocketRLDataset(torch.utils.data.Dataset):
    def __init__(self, dataset_path):
        self.cate_cols = {fields!r}
        self.filter_cols = ["776", "364"]
        rows = pd.read_csv(dataset_path, usecols=["visitorid", "itemid", "click", "pay"]
                           + NUMERICAL_COLUMNS)
        features = pd.read_csv(FEATURES_PATH, usecols=["itemid"] + self.cate_cols)
        joined = rows.merge(features, on="itemid", how="left", validate="many_to_one")
        if joined[self.cate_cols].isna().any().any():
            raise ValueError(dataset_path + ": item ids missing from " + FEATURES_PATH)
        self.categorical_data = joined[self.cate_cols].to_numpy(np.int64)
        self.field_dims = self.categorical_data.max(axis=0) + 1
        if NUMERICAL_COLUMNS:
            self.numerical_data = joined[NUMERICAL_COLUMNS].to_numpy(np.float32)
        else:
            self.numerical_data = np.zeros((len(joined), 1), dtype=np.float32)
        self.numerical_num = self.numerical_data.shape[1]
        self.labels = joined[["click", "pay"]].to_numpy(np.float32)
        self.session_id = joined["visitorid"].to_numpy(np.int64)

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, index):
        return (self.session_id[index], self.categorical_data[index],
                self.numerical_data[index], self.labels[index])
'''


@dataclass(frozen=True)
class OfficialExport:
    """Where an export went and what it holds."""

    root: Path
    rows: dict[str, int]
    numerical_columns: tuple[str, ...]

    @property
    def data_dir(self) -> Path:
        return self.root / "dataset" / "rt"


def _check_shape(dataset: SessionDataset) -> None:
    fields, tasks = dataset.categorical_fields, dataset.tasks
    if len(fields) != len(OFFICIAL_FIELDS):
        raise DataFormatError(
            f"export-official: dataset {dataset.name!r} has {len(fields)} categorical fields "
            f"{fields}; the official RMTL code reads exactly {len(OFFICIAL_FIELDS)} "
            f"(RetailRocket's {list(OFFICIAL_FIELDS)})"
        )
    if len(tasks) != len(OFFICIAL_LABELS):
        raise DataFormatError(
            f"export-official: dataset {dataset.name!r} has tasks {tasks}; the official RMTL "
            f"code reads exactly 2 labels, {list(OFFICIAL_LABELS)}"
        )


def _state_columns(session: np.ndarray, item: np.ndarray) -> tuple[list[str], list[str]]:
    """``state`` and ``next_state`` text of every row (session-sorted); see the module docstring."""
    n = len(item)
    last = np.ones(n, dtype=bool)
    last[:-1] = session[1:] != session[:-1]
    state = [f"[[{i}]]" for i in item.tolist()]
    following = np.empty(n, dtype=np.int64)
    following[:-1] = item[1:]
    following[-1] = item[-1] if n else 0
    next_state = [f"[[{i}]]" for i in following.tolist()]
    starts = np.flatnonzero(np.concatenate([[True], last[:-1]])) if n else np.array([], int)
    ends = np.flatnonzero(last)
    for start, end in zip(starts, ends, strict=True):
        next_state[end] = "[" + ", ".join(f"[{i}]" for i in item[start : end + 1].tolist()) + "]"
    return state, next_state


def identity_catemap(field_dims: list[int]) -> dict[str, dict[int, int]]:
    """The category mapper under which the official code keeps our ids: ``v -> v`` per field."""
    return {
        name: {v: v for v in range(int(dim))}
        for name, dim in zip(OFFICIAL_FIELDS, field_dims, strict=True)
    }


def _official_tables(dataset: SessionDataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The impressions table (one row per impression, ``itemid`` its 1-based row number,
    ``visitorid`` its session) and ``item_feadf.csv``'s table (the ids of each impression)."""
    frame = dataset.frame
    item = np.arange(1, len(frame) + 1, dtype=np.int64)
    session = frame["session_id"].to_numpy(np.int64)
    state, next_state = _state_columns(session, item)
    table = pd.DataFrame(
        {
            "timestamp": frame["timestamp"].to_numpy(np.int64),
            "visitorid": session,
            "itemid": item,
            "click": frame[label_column(dataset.tasks[0])].to_numpy(np.int64),
            "pay": frame[label_column(dataset.tasks[1])].to_numpy(np.int64),
            "state": state,
            "next_state": next_state,
            **{name: frame[name].to_numpy(np.float32) for name in dataset.numerical_fields},
        }
    )
    features = pd.DataFrame({"itemid": item})
    for ours, theirs in zip(dataset.categorical_fields, OFFICIAL_FIELDS, strict=True):
        features[theirs] = frame[ours].to_numpy(np.int64)
    return table, features


def _export_record(
    dataset: SessionDataset, file_of: dict, official_roles: bool, rows: dict
) -> dict:
    """``export.json``: what each file holds and the patches the official code needs."""
    numerical = list(dataset.numerical_fields)
    return {
        "dataset": dataset.name,
        "cache_key": dataset.meta.get("cache_key"),
        "tasks": {"click": dataset.tasks[0], "pay": dataset.tasks[1]},
        "fields": dict(zip(OFFICIAL_FIELDS, dataset.categorical_fields, strict=True)),
        "field_dims": dataset.field_dims,
        "numerical_columns": list(numerical),
        "files": {split: f"dataset/rt/{name}" for split, name in file_of.items()},
        "official_roles": official_roles,
        "rows": rows,
        "itemid": "row number (1-based) of the impression in the processed dataset",
        "visitorid": "our session_id",
        "patches": {
            "env.py getMDP": f"NUMERICAL_COLUMNS = {list(numerical)!r}; usecols += "
            f"NUMERICAL_COLUMNS; replace the zero numerical column with:\n{ENV_PATCH}",
            "SLmain.py lines 49-50": "swap test.csv and val.csv unless official_roles",
        },
    }


def export_official(
    dataset: SessionDataset, out: str | Path, official_roles: bool = False
) -> OfficialExport:
    """Write ``dataset`` as the official RMTL code's processed files under ``out`` (atomically).

    ``official_roles`` writes our validation split to ``test.csv`` and our test split to
    ``val.csv``, the roles the unpatched ``SLmain.py`` gives those files.
    """
    _check_shape(dataset)
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"export-official: {out} exists and is not empty; choose a new --out")
    table, features = _official_tables(dataset)
    numerical = tuple(dataset.numerical_fields)
    file_of = {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
    if official_roles:
        file_of.update(val="test.csv", test="val.csv")
    splits = dataset.frame["split"].astype(str).to_numpy()
    rows = {}
    with atomic_directory(out) as staging:
        staging.chmod(0o755)  # mkdtemp makes it private; the export is an ordinary folder
        data_dir = staging / "dataset" / "rt"
        data_dir.mkdir(parents=True)
        for split in SPLITS:
            part = table[splits == split]
            rows[split] = len(part)
            part.to_csv(data_dir / file_of[split], index=False)
        features.to_csv(data_dir / "item_feadf.csv", index=False)
        (staging / "pretrain").mkdir()
        catemap = identity_catemap(dataset.field_dims)
        # Plain dicts of ints, the structure the official Catemapper.load_mapper unpickles.
        (staging / "pretrain" / "catemap.pkl").write_bytes(pickle.dumps(catemap, protocol=4))
        (staging / "pretrain" / "catemap.json").write_text(json.dumps(catemap))
        (staging / "dataset" / "rtrl.py").write_text(
            LOADER_TEMPLATE.format(numerical=list(numerical), fields=list(OFFICIAL_FIELDS))
        )
        record = _export_record(dataset, file_of, official_roles, rows)
        (staging / EXPORT_FILE).write_text(json.dumps(record, indent=2))
    return OfficialExport(out, rows, numerical)


def read_official_split(root: str | Path, split: str) -> pd.DataFrame:
    """One exported split joined to its item features (for checks): the split file's columns plus
    the 7 official feature columns, rows in file order."""
    root = Path(root)
    record = json.loads((root / EXPORT_FILE).read_text())
    rows = pd.read_csv(root / record["files"][split])
    features = pd.read_csv(root / "dataset" / "rt" / "item_feadf.csv")
    return rows.merge(features, on="itemid", how="left", validate="many_to_one")
