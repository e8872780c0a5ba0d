"""Load a training stage's records and split off held-out data, validating everything first."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from saferlhf.runners.common.config import DataSource
from saferlhf.runners.common.dist import get_rank, get_world_size
from saferlhf.runners.common.errors import InvalidInputError


def load_sources(sources: Sequence[DataSource], kind: str, seed: int, field: str) -> list:
    """All records of `sources`, concatenated; raises InvalidInputError (file/row/field)."""
    from saferlhf.runners.common.data import load_records

    records: list = []
    for source in sources:
        records.extend(load_records(source, kind, seed=seed))
    if not records:
        raise InvalidInputError(f"no {kind} rows in {field}; give at least one row", field=field)
    return records


def train_eval_records(cfg: Any, kind: str) -> tuple[list, list]:
    """(train, held-out) records: `eval_data` when given, else an `eval_split_ratio` shuffle with
    the stage seed, else no held-out set."""
    train = load_sources(cfg.data, kind, cfg.seed, "data")
    if cfg.eval_data:
        return train, load_sources(cfg.eval_data, kind, cfg.seed, "eval_data")
    if cfg.eval_split_ratio:
        order = list(range(len(train)))
        random.Random(cfg.seed).shuffle(order)
        n_eval = max(1, int(round(len(train) * cfg.eval_split_ratio)))
        if n_eval >= len(train):
            raise InvalidInputError(
                f"eval_split_ratio={cfg.eval_split_ratio} leaves no training rows out of "
                f"{len(train)}", field="eval_split_ratio",
            )
        held = set(order[:n_eval])
        return ([r for i, r in enumerate(train) if i not in held],
                [r for i, r in enumerate(train) if i in held])
    return train, []


def eval_batches(samples: Sequence[Any], batch_size: int, collate
                 ) -> Iterator[tuple[dict[str, torch.Tensor], torch.Tensor]]:
    """This rank's share of `samples` in batches, with a (B,) validity mask.

    Every rank runs the same number of batches (ZeRO-3 forwards are collective): the global list
    is padded by wrapping around, and the padding rows are marked invalid so they count nowhere.
    """
    world, rank = get_world_size(), get_rank()
    n = len(samples)
    per_rank = -(-n // world)
    positions = list(range(rank, per_rank * world, world))
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        batch = collate([samples[p % n] for p in chunk])
        yield batch, torch.tensor([p < n for p in chunk])
