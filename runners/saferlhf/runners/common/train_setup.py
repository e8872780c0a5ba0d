"""Start-up shared by the training stages: process group (gloo/NCCL), DeepSpeed comm, quiet HF."""

from __future__ import annotations

import logging

import torch
from saferlhf.runners.common.config import StageIO
from saferlhf.runners.common.dist import DistInfo, init_distributed
from saferlhf.runners.common.jit_locks import clear_stale_locks

log = logging.getLogger(__name__)


def init_stage_distributed(cfg: StageIO, local_rank: int | None) -> DistInfo:
    """Process group from the environment; DeepSpeed needs one even for a single process (with
    RANK/WORLD_SIZE/MASTER_* filled in, else it falls into MPI discovery — environment.md)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    deepspeed_backend = cfg.backend.kind == "deepspeed"
    info = init_distributed(local_rank, force_group=deepspeed_backend)
    if deepspeed_backend:
        import deepspeed

        clear_stale_locks()  # DeepSpeed's ops load under torch's JIT lock (jit_locks.py)

        deepspeed.init_distributed(dist_backend="nccl" if torch.cuda.is_available() else "gloo")
    log.info("rank %d/%d on %s, backend %s", info.rank, info.world_size, info.device,
             cfg.backend.kind)
    return info
