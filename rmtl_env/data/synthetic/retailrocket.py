"""Synthetic twin of RetailRocket: the Kaggle files, byte-format for byte-format, from a known model.

Written files: ``events.csv``, ``item_properties_part1.csv``, ``item_properties_part2.csv``,
``category_tree.csv`` (the Kaggle headers, column order and value conventions: ms timestamps,
unsorted rows, an empty ``transactionid`` except on transactions, hashed property values such as
``n552.000`` or ``1116713 960601 n277.200``, an empty ``parentid`` on root categories, a few exact
duplicate rows) and ``synthetic_truth.csv`` (``visitorid,itemid,timestamp,p_ctr,p_ctcvr``: the true
probabilities of every view, which the loader joins when it finds the file).

Generative model (all draws from one ``numpy`` generator seeded by ``seed``):

- A category tree of 1,669 nodes with the real depth profile; items get a category by popularity.
- Each item has the seven official properties and filler properties, logged at weekly Sunday
  03:00 UTC snapshots from 2015-05-10; ``available`` and price-like fillers change over the weeks,
  the others rarely. A property is unknown before the item's first snapshot.
- Click logit of a view = intercept + effects of the item's category and property values in force
  at the view's time (``available=0`` lowers it) + an item effect no property reveals + a visitor
  effect (RetailRocket has no user features) + the session intent.
- Session intent starts at N(0, 0.6^2) and after each view becomes
  ``0.8 z + 0.05 + 0.6 clicked + N(0, 0.35^2)``: deeper positions and earlier clicks in the
  session raise later probabilities, so session context carries signal.
- pay given click has its own logistic model on the same features (strongly lowered when the
  item is unavailable) plus half the intent; pay implies click; P(pay) = P(click) P(pay | click).
- Visitors have one or more sessions separated by hours to days; views within a session are
  seconds to 20 minutes apart; an item is viewed at most once per visitor, so each view's label
  comes from its own click. A click writes ``addtocart`` (90 %, else a direct transaction), a pay
  a ``transaction`` minutes later within the session.

Label rates are near the real ones (about 3 % click, 1 % pay on views) and the oracle AUC of
the true probabilities is about 0.8.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from rmtl_env.data.retailrocket import (
    CATEGORY_TREE_FILE,
    EVENTS_FILE,
    OFFICIAL_PROPERTIES,
    PROPERTY_FILES,
    TRUTH_FILE,
)
from rmtl_env.data.synthetic.common import (
    check_scale,
    intercept_for_rate,
    session_lengths,
    sigmoid,
    simulate_intent,
    write_csv,
    zipf_choice,
)

FIRST_EVENT_MS = 1430622004384  # 2015-05-03 03:00:04 UTC, the real first event
LAST_EVENT_MS = 1442545187788  # 2015-09-18 02:59:47 UTC, the real last event
FIRST_SNAPSHOT_MS = 1431226800000  # Sunday 2015-05-10 03:00 UTC
WEEK_MS = 7 * 24 * 3600 * 1000
N_SNAPSHOTS = 19  # Sundays 2015-05-10 .. 2015-09-13
DEPTH_PROFILE = (25, 174, 702, 665, 90, 13)  # real category tree: nodes per depth
FILLER_PROPERTIES = (
    "888", "790", "6", "283", "678", "202", "159", "917", "112", "764", "839", "1036",
    "227", "689", "28", "698", "810", "1092", "451", "348", "921", "1028", "400", "663",
)  # fmt: skip


@dataclass(frozen=True)
class _Scale:
    visitors: int
    catalog_items: int
    event_items: int
    property_rows_per_item: float


SCALE_SIZES = {
    "tiny": _Scale(2_000, 3_000, 2_000, 48.6),
    "small": _Scale(53_000, 40_000, 25_000, 48.6),
    "full": _Scale(1_407_580, 417_053, 235_061, 48.6),
}

# key property -> (vocabulary size at full scale, click effect sd, pay effect sd, weekly change rate)
KEY_PROPERTIES = {
    "785": (40, 0.30, 0.20, 0.01),
    "591": (25, 0.30, 0.15, 0.01),
    "814": (60, 0.30, 0.20, 0.01),
    "364": (3_000, 0.40, 0.35, 0.02),
    "776": (8_000, 0.40, 0.35, 0.02),
}
FILLER_CHANGE_RATE = {"888": 0.35, "790": 0.5}
AVAILABLE_CHANGE_RATE = 0.3
TARGET_CLICK_RATE = 0.027
TARGET_PAY_GIVEN_CLICK = 0.3


TWIN_KNOBS = {"conflict": (0.0, 0.99), "noise": (0.0, 1.0)}
"""The generator's knobs and their ranges; 0 (the default) is the twin of every earlier result.

- ``conflict``: the correlation ``-conflict`` between the click effect and the pay effect of
  each feature value (category, key property values, the hidden item effect). At 0 they are
  independent; towards 1, what raises the click lowers the purchase given a click, so the two
  tasks' gradients on shared layers point apart: what per-task balancers exploit.
- ``noise``: in one segment, the views of a third of the categories, each logged (click, pay)
  is with probability ``noise`` replaced by a draw at the base rates (the true probabilities in
  ``synthetic_truth.csv`` are the mixture). The segment is visible through the category, so a
  per-sample weighting (RMTL's critics read the state) could learn how hard each view is."""


def check_knobs(knobs: dict[str, float]) -> dict[str, float]:
    """The knobs that are set (non-zero), checked against ``TWIN_KNOBS``."""
    for name, value in knobs.items():
        if name not in TWIN_KNOBS:
            raise ValueError(f"unknown twin knob {name!r}; expected one of {list(TWIN_KNOBS)}")
        low, high = TWIN_KNOBS[name]
        if not low <= float(value) <= high:
            raise ValueError(f"twin knob {name} must be in [{low}, {high}], got {value!r}")
    return {name: float(value) for name, value in knobs.items() if float(value) != 0.0}


def write_retailrocket_twin(
    out_dir: str | Path, scale: str = "small", seed: int = 0, conflict: float = 0.0,
    noise: float = 0.0,
) -> Path:  # fmt: skip
    """Write the twin's raw files into ``out_dir`` and return it (``conflict``, ``noise``: the
    knobs of ``TWIN_KNOBS``; at 0 the files are those of earlier versions, byte for byte)."""
    check_knobs({"conflict": conflict, "noise": noise})
    size = SCALE_SIZES[check_scale(scale)]
    rng = np.random.default_rng([seed, 2015])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tree_ids, tree_parent = _category_tree(rng)
    write_csv(
        pa.table(
            {
                "categoryid": pa.array(tree_ids),
                "parentid": pa.array(tree_parent, mask=tree_parent < 0),
            }
        ),
        out / CATEGORY_TREE_FILE,
    )
    catalog = _item_property_log(rng, size, tree_ids)
    if conflict:
        _correlate_pay_with_click(catalog, -conflict)
    views = _views(rng, size, catalog)
    if noise:
        _noisy_segment(rng, views, noise)
    _write_events(rng, views, out / EVENTS_FILE)
    _write_properties(rng, catalog, out)
    truth = pa.table(
        {
            "visitorid": views["visitor"],
            "itemid": views["item"],
            "timestamp": views["time"],
            "p_ctr": pc.round(pa.array(views["p_click"]), 6),
            "p_ctcvr": pc.round(pa.array(views["p_pay"]), 6),
        }
    )
    write_csv(truth, out / TRUTH_FILE)
    return out


def _category_tree(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    n = sum(DEPTH_PROFILE)
    ids = rng.choice(1699, size=n, replace=False)
    parent = np.full(n, -1, dtype=np.int64)
    start = 0
    for depth, count in enumerate(DEPTH_PROFILE):
        if depth:
            previous = ids[start - DEPTH_PROFILE[depth - 1] : start]
            parent[start : start + count] = rng.choice(previous, size=count)
        start += count
    order = rng.permutation(n)
    return ids[order], parent[order]


def _hashed_vocabulary(rng: np.random.Generator, size: int, numeric_share: float) -> np.ndarray:
    """Distinct hashed values in the Kaggle style: ``n552.000`` or ``1116713 960601 n277.200``."""
    values: set[str] = set()
    while len(values) < size:
        if rng.random() < numeric_share:
            values.add(f"n{rng.integers(-500, 50_000) * rng.choice([1.0, 0.5, 0.125, 1.2]):.3f}")
        else:
            tokens = [str(t) for t in rng.integers(100_000, 1_400_000, size=rng.integers(1, 4))]
            if rng.random() < 0.4:
                tokens.append(f"n{rng.integers(1, 2000) * 0.6:.3f}")
            values.add(" ".join(tokens))
    return np.array(sorted(values), dtype=object)[rng.permutation(size)]


def _log_property(rng: np.random.Generator, logs: dict, first_week: np.ndarray, name: str,
                  vocab: np.ndarray, initial: np.ndarray, rate: float, present) -> None:  # fmt: skip
    """Append property ``name``'s rows to ``logs``: an initial value in the item's first week,
    then changes at ``rate`` per week left, one value per item and snapshot."""
    idx = np.flatnonzero(present)
    changes = rng.binomial(N_SNAPSHOTS - 1 - first_week[idx], rate)
    change_item = np.repeat(idx, changes)
    low = first_week[change_item] + 1
    change_week = low + (rng.random(len(change_item)) * (N_SNAPSHOTS - low)).astype(np.int64)
    if name == "available":
        change_value = rng.integers(0, 2, len(change_item))
    else:
        change_value = zipf_choice(rng, len(vocab), len(change_item), 1.1)
    item = np.concatenate([idx, change_item])
    week = np.concatenate([first_week[idx], change_week])
    value = np.concatenate([initial[idx], change_value])
    key = item * N_SNAPSHOTS + week
    _, keep = np.unique(key, return_index=True)  # one value per item and snapshot
    logs["item"].append(item[keep])
    logs["week"].append(week[keep])
    logs["property"].append(np.full(len(keep), name, dtype=object))
    logs["value"].append(value[keep])


def _filler_presence(size: _Scale, logs: dict, first_week: np.ndarray) -> float:
    """The share of items that have each filler property, so that the rows add up to the real
    48.6 per item: a present filler has one row plus, on average, rate * (snapshots left after
    the item's first) change rows."""
    n_items = len(first_week)
    budget = size.property_rows_per_item * n_items - sum(len(a) for a in logs["item"])
    weeks_left = float(np.mean(N_SNAPSHOTS - 1 - first_week))
    rows_if_present = sum(
        n_items * (1 + FILLER_CHANGE_RATE.get(name, 0.1) * weeks_left) for name in FILLER_PROPERTIES
    )
    return float(np.clip(budget / rows_if_present, 0.05, 1.0))


def _item_property_log(rng: np.random.Generator, size: _Scale, tree_ids: np.ndarray) -> dict:
    """Per-item categories, property change logs and the latent effects of every value."""
    n_items = size.catalog_items
    item_ids = np.sort(rng.choice(466_867, size=n_items, replace=False)) + 3
    item_ids = item_ids[rng.permutation(n_items)]  # popularity rank -> id, unordered
    scale = n_items / SCALE_SIZES["full"].catalog_items
    first_week = np.where(rng.random(n_items) < 0.75, 0, rng.integers(1, N_SNAPSHOTS, n_items))
    category = tree_ids[zipf_choice(rng, len(tree_ids), n_items, 1.05)]
    logs = {"item": [], "week": [], "property": [], "value": []}
    vocabularies: dict[str, np.ndarray] = {}

    def log_property(name: str, vocab: np.ndarray, initial: np.ndarray, rate: float, present):
        vocabularies[name] = vocab
        _log_property(rng, logs, first_week, name, vocab, initial, rate, present)

    everyone = np.ones(n_items, dtype=bool)
    for name, (vocab_size, _, _, rate) in KEY_PROPERTIES.items():
        v = max(8, int(vocab_size * max(scale, 0.05))) if vocab_size > 100 else vocab_size
        vocab = _hashed_vocabulary(rng, v, numeric_share=0.7)
        present = rng.random(n_items) < 0.93
        log_property(name, vocab, zipf_choice(rng, v, n_items, 1.1), rate, present)
    log_property(
        "available", np.array(["0", "1"], dtype=object),
        (rng.random(n_items) < 0.55).astype(np.int64), AVAILABLE_CHANGE_RATE, everyone,
    )  # fmt: skip
    cat_vocab = np.unique(category).astype(str).astype(object)
    cat_index = np.searchsorted(np.unique(category), category)
    log_property("categoryid", cat_vocab, cat_index, 0.005, everyone)
    presence = _filler_presence(size, logs, first_week)
    for name in FILLER_PROPERTIES:
        rate = FILLER_CHANGE_RATE.get(name, 0.1)
        v = max(20, int(20_000 * max(scale, 0.02)))
        vocab = _hashed_vocabulary(rng, v, numeric_share=0.5)
        present = rng.random(n_items) < presence
        log_property(name, vocab, zipf_choice(rng, v, n_items, 1.0), rate, present)
    effects = {
        "categoryid_click": rng.normal(0, 0.45, len(cat_vocab)),
        "categoryid_pay": rng.normal(0, 0.3, len(cat_vocab)),
    }
    for name, (_, click_sd, pay_sd, _) in KEY_PROPERTIES.items():
        effects[f"{name}_click"] = rng.normal(0, click_sd, len(vocabularies[name]))
        effects[f"{name}_pay"] = rng.normal(0, pay_sd, len(vocabularies[name]))
    return {
        "item_ids": item_ids,
        "item_click": rng.normal(0, 0.45, n_items),  # revealed by no property
        "item_pay": rng.normal(0, 0.3, n_items),
        "log": {k: np.concatenate(v) for k, v in logs.items()},
        "vocabularies": vocabularies,
        "effects": effects,
    }


def _session_times(rng: np.random.Generator, size: _Scale) -> tuple:
    """``(lengths, visitor, time)`` of the sessions that end inside the log's window: a
    visitor's first session anywhere in the window, later ones hours to days after the previous
    one ended; ``visitor`` per session, ``time`` per row (ms)."""
    n_visitors = size.visitors
    visitor_ids = rng.choice(1_407_580, size=n_visitors, replace=False)
    sessions_per_visitor = rng.geometric(1 / 1.12, size=n_visitors)
    session_visitor = np.repeat(np.arange(n_visitors), sessions_per_visitor)
    lengths = session_lengths(rng, len(session_visitor), mean_extra=0.45, tail=0.02)
    view_gap = np.minimum(rng.lognormal(np.log(50_000), 1.0, int(lengths.sum())), 20 * 60_000)
    row_session = np.repeat(np.arange(len(lengths)), lengths)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    elapsed = np.cumsum(view_gap)
    within = elapsed - np.repeat(elapsed[starts], lengths)  # 0 at each session's first view
    duration = within[starts + lengths - 1] + 20 * 60_000
    pause = 2 * 3600_000 + rng.exponential(4 * 24 * 3600_000, len(lengths))
    first = np.r_[True, session_visitor[1:] != session_visitor[:-1]]
    offset = np.where(first, 0.0, np.r_[0.0, duration[:-1]] + pause)
    group_start = np.maximum.accumulate(np.where(first, np.arange(len(lengths)), 0))
    cumulative = np.cumsum(offset)
    offset = cumulative - cumulative[group_start]
    window = LAST_EVENT_MS - FIRST_EVENT_MS - 3600_000
    begin = FIRST_EVENT_MS + rng.random(n_visitors) * window * 0.97
    session_start = begin[session_visitor] + offset
    keep_session = session_start + duration < LAST_EVENT_MS
    time = (np.repeat(session_start, lengths) + within).astype(np.int64)
    keep_row = keep_session[row_session]
    visitor = visitor_ids[session_visitor[keep_session]]
    return lengths[keep_session], visitor, time[keep_row]


def _static_logits(rng: np.random.Generator, catalog: dict, features: dict, item, visitor,
                   lengths) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """The click and pay logits of every view before the session's intent: item, visitor,
    the property values in force and availability."""
    effects = catalog["effects"]
    click_static = catalog["item_click"][item] + np.repeat(
        rng.normal(0, 0.5, len(visitor)), lengths
    )
    pay_static = catalog["item_pay"][item].copy()
    for name in (*KEY_PROPERTIES, "categoryid"):
        code = features[name]
        known = code >= 0
        click_static[known] += effects[f"{name}_click"][code[known]]
        pay_static[known] += effects[f"{name}_pay"][code[known]]
    available = features["available"]  # vocabulary ["0", "1"]: the code is the value
    click_static += np.select([available == 1, available == 0], [0.25, -0.45], 0.0)
    pay_static += np.select([available == 1, available == 0], [0.2, -0.8], 0.0)
    return click_static, pay_static


def _views(rng: np.random.Generator, size: _Scale, catalog: dict) -> dict:
    """Sessions, views, true probabilities and sampled clicks and pays."""
    lengths, visitor, time = _session_times(rng, size)
    row_visitor = np.repeat(visitor, lengths)
    item = _distinct_items_per_visitor(rng, row_visitor, size.event_items)
    features = _features_in_force(catalog, item, time)
    click_static, pay_static = _static_logits(rng, catalog, features, item, visitor, lengths)
    # The intent's upward drift adds back about 0.1 on the logit scale.
    click_static += intercept_for_rate(click_static, TARGET_CLICK_RATE) - 0.1
    intent, p_click, click = simulate_intent(
        rng, lengths, click_static,
        start_sd=0.6, persistence=0.8, step_sd=0.35, drift=0.05, click_jump=0.6,
    )  # fmt: skip
    pay_static += intercept_for_rate(pay_static, TARGET_PAY_GIVEN_CLICK) - 0.1
    p_pay_given_click = sigmoid(pay_static + 0.5 * intent)
    pay = click & (rng.random(len(click)) < p_pay_given_click)
    return {
        "visitor": row_visitor,
        "item": catalog["item_ids"][item],
        "time": time,
        "session": np.repeat(np.arange(len(lengths)), lengths),
        "p_click": p_click,
        "p_pay": p_click * p_pay_given_click,
        "click": click,
        "pay": pay,
        "category": features["categoryid"],
    }


def _correlate_pay_with_click(catalog: dict, rho: float) -> None:
    """Each pay effect becomes ``sd_pay (rho z_click + sqrt(1 - rho^2) z_pay)`` of the standard
    scores of its own draw and of the click effect of the same value (no new draws)."""
    effects = catalog["effects"]
    pairs = [(effects, f"{name}_click", f"{name}_pay") for name in (*KEY_PROPERTIES, "categoryid")]
    pairs.append((catalog, "item_click", "item_pay"))
    for holder, click_key, pay_key in pairs:
        click, pay = holder[click_key], holder[pay_key]
        z_click, z_pay = click / click.std(), pay / pay.std()
        holder[pay_key] = pay.std() * (rho * z_click + np.sqrt(1 - rho**2) * z_pay)


def _noisy_segment(rng: np.random.Generator, views: dict, noise: float) -> None:
    """Replace, with probability ``noise``, the (click, pay) of each view in the noisy segment
    (items whose category code is a multiple of 3) by a draw at the base rates."""
    segment = views["category"] % 3 == 0
    click_rate = float(views["click"].mean())
    pay_rate = float(views["pay"].sum() / max(views["click"].sum(), 1))
    replaced = segment & (rng.random(len(segment)) < noise)
    click = rng.random(len(segment)) < click_rate
    pay = click & (rng.random(len(segment)) < pay_rate)
    views["click"] = np.where(replaced, click, views["click"])
    views["pay"] = np.where(replaced, pay, views["pay"])
    mix = np.where(segment, noise, 0.0)
    views["p_click"] = (1 - mix) * views["p_click"] + mix * click_rate
    views["p_pay"] = (1 - mix) * views["p_pay"] + mix * click_rate * pay_rate


def _distinct_items_per_visitor(
    rng: np.random.Generator, visitor: np.ndarray, n_items: int
) -> np.ndarray:
    """Popularity-weighted item ranks with no item repeated within a visitor."""
    item = zipf_choice(rng, n_items, len(visitor), 0.9)
    for attempt in range(50):
        key = visitor.astype(np.int64) * n_items + item
        _, first = np.unique(key, return_index=True)
        repeated = np.ones(len(item), dtype=bool)
        repeated[first] = False
        if not repeated.any():
            return item
        if attempt < 40:
            item[repeated] = zipf_choice(rng, n_items, int(repeated.sum()), 0.9)
        else:
            item[repeated] = rng.integers(0, n_items, int(repeated.sum()))
    raise RuntimeError("could not draw distinct items per visitor")


def _features_in_force(catalog: dict, item: np.ndarray, time: np.ndarray) -> dict:
    """Value code of each key property in force at each view (-1 before the first snapshot)."""
    log = catalog["log"]
    log_time = FIRST_SNAPSHOT_MS + log["week"] * WEEK_MS
    out = {}
    for name in (*KEY_PROPERTIES, "available", "categoryid"):
        mask = log["property"] == name
        where = value_in_force(item, time, log["item"][mask], log_time[mask])
        values = log["value"][mask]
        out[name] = np.where(where >= 0, values[np.maximum(where, 0)], -1)
    return out


def _write_events(rng: np.random.Generator, views: dict, path: Path) -> None:
    click, pay = views["click"], views["pay"]
    n = len(click)
    cart = click & ~(pay & (rng.random(n) < 0.1))
    cart_time = views["time"] + rng.integers(5_000, 240_000, n)
    pay_time = np.where(cart, cart_time, views["time"]) + rng.integers(20_000, 600_000, n)
    order_id = np.cumsum(np.r_[True, views["session"][1:] != views["session"][:-1]]) - 1
    kinds = [
        (np.ones(n, dtype=bool), "view", views["time"]),
        (cart, "addtocart", cart_time),
        (pay, "transaction", pay_time),
    ]
    parts = {"timestamp": [], "visitorid": [], "event": [], "itemid": [], "transactionid": []}
    for mask, kind, when in kinds:
        parts["timestamp"].append(when[mask])
        parts["visitorid"].append(views["visitor"][mask])
        parts["event"].append(np.full(int(mask.sum()), kind, dtype=object))
        parts["itemid"].append(views["item"][mask])
        tid = order_id[mask] if kind == "transaction" else np.full(int(mask.sum()), -1)
        parts["transactionid"].append(tid)
    columns = {k: np.concatenate(v) for k, v in parts.items()}
    duplicates = rng.choice(n, size=max(1, n // 5000), replace=False)  # the real log has some
    order = rng.permutation(np.concatenate([np.arange(len(columns["timestamp"])), duplicates]))
    tid = columns["transactionid"][order]
    write_csv(
        pa.table(
            {
                "timestamp": columns["timestamp"][order],
                "visitorid": columns["visitorid"][order],
                "event": pa.array(columns["event"][order], type=pa.string()),
                "itemid": columns["itemid"][order],
                "transactionid": pa.array(tid, mask=tid < 0),
            }
        ),
        path,
    )


def _write_properties(rng: np.random.Generator, catalog: dict, out: Path) -> None:
    log = catalog["log"]
    names = list(catalog["vocabularies"])
    offsets = np.cumsum([0] + [len(catalog["vocabularies"][n]) for n in names])
    all_values = pa.array(np.concatenate([catalog["vocabularies"][n] for n in names]), pa.string())
    prop_index = {name: i for i, name in enumerate(names)}
    prop_code = np.vectorize(prop_index.get, otypes=[np.int64])(log["property"])
    n = len(prop_code)
    duplicates = rng.choice(n, size=max(1, n // 20_000), replace=False)
    order = rng.permutation(np.concatenate([np.arange(n), duplicates]))
    value_index = pa.array(offsets[prop_code[order]] + log["value"][order])
    table = pa.table(
        {
            "timestamp": FIRST_SNAPSHOT_MS + log["week"][order] * WEEK_MS,
            "itemid": catalog["item_ids"][log["item"][order]],
            "property": pc.take(pa.array(names, pa.string()), pa.array(prop_code[order])),
            "value": pc.take(all_values, value_index),
        }
    )
    cut = int(len(order) * 10_999_999 / 20_275_902)  # the real part1 / part2 proportion
    write_csv(table.slice(0, cut), out / PROPERTY_FILES[0])
    write_csv(table.slice(cut), out / PROPERTY_FILES[1])


def value_in_force(
    item: np.ndarray, time: np.ndarray, log_item: np.ndarray, log_time: np.ndarray
) -> np.ndarray:
    """Index into the log of the latest row with the same item and ``log_time <= time``; -1 where
    none exists. A vectorised as-of join on a packed (item, time) key."""
    if len(log_item) == 0:
        return np.full(len(item), -1, dtype=np.int64)
    items, codes = np.unique(np.concatenate([item, log_item]), return_inverse=True)
    item_code, log_code = codes[: len(item)], codes[len(item) :]
    t0 = min(time.min(initial=0), log_time.min())
    span = int(max(time.max(initial=0), log_time.max()) - t0) + 1
    time_bits = max(span.bit_length(), 1)
    if time_bits + max(len(items).bit_length(), 1) > 62:
        raise ValueError("timestamps span too wide to join item properties")
    log_key = (log_code.astype(np.int64) << time_bits) | (log_time - t0)
    order = np.argsort(log_key, kind="stable")
    sorted_key = log_key[order]
    query = (item_code.astype(np.int64) << time_bits) | (time - t0)
    pos = np.searchsorted(sorted_key, query, side="right") - 1
    hit = pos >= 0
    found = np.full(len(item), -1, dtype=np.int64)
    found[hit] = order[pos[hit]]
    same_item = np.zeros(len(item), dtype=bool)
    same_item[hit] = log_code[found[hit]] == item_code[hit]
    return np.where(same_item, found, -1)


__all__ = ["OFFICIAL_PROPERTIES", "SCALE_SIZES", "TWIN_KNOBS", "write_retailrocket_twin"]
