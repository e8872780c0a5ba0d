"""Helpers for the SFT / reward / cost CLI tests: a tiny saved policy and a stage launcher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.tools import ROOT

TINY = {"path": "builtin:tiny-gpt2", "n_layer": 2, "n_embd": 32, "n_head": 2, "vocab_size": 320,
        "max_position_embeddings": 128}


def stage_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               PYTHONPATH=str(ROOT))
    for var in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT",
                "SAFERLHF_EVENTS_ADDR"):
        env.pop(var, None)
    env.update(extra or {})
    return env


def run_stage(kind: str, config: dict[str, Any], workdir: Path, *, nproc: int = 1,
              env: dict[str, str] | None = None, timeout: int = 300,
              ) -> subprocess.CompletedProcess:
    """Write stage.json into `workdir` and run `python -m saferlhf.runners.<kind>` (or torchrun)."""
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / f"{kind}-stage.json"
    path.write_text(json.dumps({"kind": kind, **config}))
    if nproc == 1:
        cmd = [sys.executable, "-m", f"saferlhf.runners.{kind}", "--config", str(path)]
    else:
        from saferlhf.runners.common.dist import free_port

        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc),
               "--master_port", str(free_port()), "-m", f"saferlhf.runners.{kind}",
               "--config", str(path)]
    return subprocess.run(cmd, cwd=ROOT, env=stage_env(env), capture_output=True, text=True,
                          timeout=timeout)


def metric_keys(output_dir: Path) -> set[str]:
    from saferlhf.runners.common.events import read_events

    keys: set[str] = set()
    for event in read_events(output_dir / "events.jsonl"):
        if event["type"] == "metrics":
            keys |= set(event["values"])
    return keys


def events_of(output_dir: Path, type_: str) -> list[dict]:
    from saferlhf.runners.common.events import read_events

    return [e for e in read_events(output_dir / "events.jsonl") if e["type"] == type_]


def make_policy(out: Path) -> Path:
    """A tiny GPT-2 policy (untrained) whose tokenizer knows the synthetic benchmark's words."""
    import torch
    from saferlhf.runners.common.config import ModelSpec
    from saferlhf.runners.common.models import build_policy, save_model
    from saferlhf.runners.common.template import format_prompt, format_training_text
    from saferlhf.runners.synthetic import dataset

    torch.manual_seed(0)
    texts = [format_training_text(format_prompt(r.prompt, "</s>"), r.response, "</s>")
             for r in dataset("sft", size=300, seed=0)]
    model, tok = build_policy(ModelSpec(**TINY), texts)
    save_model(model, tok, out)
    return out


def load_weights(folder: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(folder / "model.safetensors"))
