"""Course 3's claims, checked on a sweep of optimizers × learning rates × seeds.

1. Adaptive optimizers (RMSprop, Adam, AdamW, Nadam) reach the target in less time than
   the SGD family (plain SGD, momentum, Nesterov), each at its usual learning rate (the
   default in ``configs/optimizer/<name>.yaml``).
2. Plain SGD is the most sensitive to the learning rate: across the rates tried, its
   mean validation score spans the widest range.

Each verdict is computed from the numbers in the tables, never set by hand: a claim wins
("Supported") or loses ("Not supported") only by more than the seed-to-seed standard
deviation of the numbers compared; a closer call is "Inconclusive (within seed noise)".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from dlrun.paths import config_dir

OPT_KEY, LR_KEY = "optimizer", "optimizer.lr"
ADAPTIVE = ("rmsprop", "adam", "adamw", "nadam")

CLAIM_TIME = ("Adaptive optimizers (RMSprop, Adam) reach the target in less time than SGD and "
              "momentum, each at its usual learning rate.")
CLAIM_SENSITIVITY = "Plain SGD is the most sensitive to the learning rate."


@cache
def usual_lr(name: str) -> float | None:
    """The learning rate ``configs/optimizer/<name>.yaml`` ships (None if there is none)."""
    path = config_dir() / "optimizer" / f"{name}.yaml"
    if not path.is_file():
        return None
    with open(path, encoding="utf-8") as f:
        lr = (yaml.safe_load(f) or {}).get("lr")
    return float(lr) if lr is not None else None


def _fmt(value: float, fmt: str = ".2f") -> str:
    return "–" if value is None or not np.isfinite(value) else format(value, fmt)


def _time_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per optimizer at its usual lr: seeds, seeds that reached the target, mean epochs/seconds."""
    rows = []
    lrs = pd.to_numeric(runs[LR_KEY], errors="coerce")
    for name in dict.fromkeys(runs[OPT_KEY].dropna()):
        lr = usual_lr(name)
        if lr is None:
            continue
        mine = runs[(runs[OPT_KEY] == name) & np.isclose(lrs, lr)]
        if mine.empty:
            continue
        reached = mine[(mine["status"] == "ok") & mine["target_epochs"].notna()]
        rows.append({
            "optimizer": name, "lr": lr, "adaptive": name in ADAPTIVE, "n": len(mine),
            "reached": len(reached),
            "epochs": reached["target_epochs"].mean() if len(reached) == len(mine) else math.inf,
            "seconds": reached["target_seconds"].mean() if len(reached) == len(mine) else math.inf,
            "seconds_std": reached["target_seconds"].std() if len(reached) == len(mine) else math.nan,
        })
    return pd.DataFrame(rows)


def _check_time(runs: pd.DataFrame) -> list[str]:
    table = _time_table(runs)
    lines = [f"### 1. {CLAIM_TIME}", ""]
    if table.empty or not table["adaptive"].any() or table["adaptive"].all():
        return lines + ["Not checked: the sweep needs at least one adaptive and one SGD-family "
                        "optimizer at its usual learning rate."]
    lines += ["| optimizer | usual lr | seeds at target | epochs to target | seconds to target |",
              "|---|---|---|---|---|"]
    for _, r in table.iterrows():
        seconds = _fmt(r["seconds"], ".3f") + (f" ± {r['seconds_std']:.3f}" if np.isfinite(r["seconds_std"]) else "")
        lines.append(f"| {r['optimizer']}{' (adaptive)' if r['adaptive'] else ''} | {r['lr']:g} | "
                     f"{r['reached']}/{r['n']} | {_fmt(r['epochs'], '.1f')} | {seconds} |")
    adaptive, sgd = table[table["adaptive"]], table[~table["adaptive"]]
    slow = adaptive.loc[adaptive["seconds"].idxmax()]
    fast = sgd.loc[sgd["seconds"].idxmin()]
    margin = fast["seconds"] - slow["seconds"]  # > 0: the adaptive side is faster
    noise = np.nanmax([slow["seconds_std"], fast["seconds_std"], 0.0])
    verdict = _verdict(margin, noise)
    in_epochs = bool(adaptive["epochs"].max() < sgd["epochs"].min())
    lines += ["", f"**{verdict}** by these numbers: the slowest adaptive optimizer "
              f"({slow['optimizer']}, {_fmt(slow['seconds'], '.3f')} s) against the fastest of the SGD family "
              f"({fast['optimizer']}, {_fmt(fast['seconds'], '.3f')} s): a margin of {_fmt(margin, '.3f')} s"
              f"{' (– : a seed never reached the target)' if not math.isfinite(margin) else ''}, against a seed-to-seed std of up to "
              f"{noise:.3f} s. Counted in epochs instead of seconds, the adaptive optimizers are "
              f"{'' if in_epochs else 'not '}all faster ({_fmt(adaptive['epochs'].max(), '.1f')} vs "
              f"{_fmt(sgd['epochs'].min(), '.1f')} epochs)."]
    plain = table[table["optimizer"] == "sgd"]
    if len(plain) and fast["optimizer"] != "sgd":
        plain_verdict = _verdict(plain["seconds"].iloc[0] - slow["seconds"],
                                 np.nanmax([slow["seconds_std"], plain["seconds_std"].iloc[0], 0.0]))
        lines.append(f"Against plain SGD alone ({_fmt(plain['seconds'].iloc[0], '.3f')} s): "
                     f"{plain_verdict.lower()}.")
    return lines


def _verdict(margin: float, noise: float) -> str:
    """Supported when the claimed side wins by more than the seed-to-seed spread."""
    if math.isnan(margin):  # neither side reached the target
        return "Inconclusive"
    if np.isfinite(margin) and abs(margin) <= noise:
        return "Inconclusive (within seed noise)"
    return "Supported" if margin > 0 else "Not supported"


def _sensitivity_table(groups: pd.DataFrame) -> pd.DataFrame:
    """Optimizer × lr grid of mean validation scores, with the range across rates."""
    frame = groups.assign(lr=pd.to_numeric(groups[LR_KEY], errors="coerce"))
    grid = frame.pivot_table(index=OPT_KEY, columns="lr", values="val_mean", aggfunc="mean")
    grid["range"] = grid.max(axis=1) - grid.min(axis=1)
    return grid.sort_values("range", ascending=False)


def _check_sensitivity(runs: pd.DataFrame, groups: pd.DataFrame) -> list[str]:
    lines = [f"### 2. {CLAIM_SENSITIVITY}", ""]
    if groups.empty or groups[LR_KEY].nunique() < 2 or "sgd" not in set(groups[OPT_KEY]):
        return lines + ["Not checked: the sweep needs plain SGD and at least two learning rates."]
    grid = _sensitivity_table(groups)
    rates = [c for c in grid.columns if c != "range"]
    not_ok = runs[runs["status"] != "ok"].groupby(OPT_KEY).size()
    lines += ["Mean validation score over seeds at each learning rate; range = best − worst rate "
              "(runs that diverged or failed are left out and counted).", "",
              "| optimizer | " + " | ".join(f"lr {r:g}" for r in rates) + " | range | not ok |",
              "|---|" + "---|" * (len(rates) + 2)]
    for name, r in grid.iterrows():
        cells = " | ".join(_fmt(r[c], ".4f") for c in rates)
        lines.append(f"| {name} | {cells} | {_fmt(r['range'], '.4f')} | {int(not_ok.get(name, 0))} |")
    most = grid.index[0]
    other = grid.drop(index="sgd")
    runner_up = other["range"].idxmax() if other["range"].notna().any() else None
    margin = grid.loc["sgd", "range"] - (other["range"].max() if runner_up else 0.0)
    compared = groups[groups[OPT_KEY].isin(["sgd", runner_up])]["val_std"]
    noise = float(compared.max()) if compared.notna().any() else 0.0
    lines += ["", f"**{_verdict(margin, noise)}** by these numbers: the widest range is {most}'s "
              f"({grid['range'].iloc[0]:.4f}); SGD's range minus the widest of the others "
              f"({runner_up}) is {margin:+.4f}, against a seed-to-seed std of up to {noise:.4f}."]
    return lines


def check(*, runs: pd.DataFrame, groups: pd.DataFrame, keys: list[str], study: Mapping[str, Any],
          out_dir: Path) -> list[str]:
    """State course 3's claims and whether these runs support each, with the numbers."""
    lines = ["## Claims"]
    if study.get("claim"):
        lines += ["", f"> {study['claim']}"]
    if OPT_KEY not in keys or LR_KEY not in keys:
        return lines + ["", "Not checked: this study kind needs both `optimizer` and `optimizer.lr` "
                        "swept (for example `dlrun experiment=optimizers`)."]
    if "target_epochs" not in runs:
        from dlrun.report.aggregate import add_time_to_target

        runs = add_time_to_target(runs, fraction=float(study.get("target_fraction") or 0.95))[0]
    return lines + ["", *_check_time(runs), "", *_check_sensitivity(runs, groups)]
