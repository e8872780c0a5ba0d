"""The rollout-engine seam without vLLM: the Rollout assembled from sampled token ids has
`generate`'s exact layout, seeds per row, the HF engine is `generate`, and the weight export."""

from __future__ import annotations

import pytest
import torch
from saferlhf.runners.common.config import RolloutEngineSpec
from saferlhf.runners.common.generation import generate
from saferlhf.runners.common.rollout_engine.assemble import (
    rollout_from_token_ids,
    row_seeds,
    unpadded_rows,
)
from saferlhf.runners.common.rollout_engine.factory import build_engine
from saferlhf.runners.common.rollout_engine.hf import HFEngine
from saferlhf.runners.common.rollout_engine.sync import sync_engine
from saferlhf.runners.common.tokenizer import train_bpe_tokenizer

PAD, EOS, UNK = 0, 2, 3


class FakeTokenizer:
    """Ids only: pad 0, eos 2, unk 3; decode writes the ids it is given."""

    pad_token_id, eos_token_id, unk_token_id = PAD, EOS, UNK

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(str(i) for i in ids if not (skip_special_tokens and i in (PAD, EOS, UNK)))


def test_sampled_ids_become_left_padded_prompts_and_right_padded_responses():
    prompt_ids = torch.tensor([[PAD, PAD, 5, 6], [7, 8, 9, 10]])
    prompt_mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    rollout = rollout_from_token_ids(FakeTokenizer(), prompt_ids, prompt_mask,
                                     [[11, EOS], [12, UNK, 14]], 1)
    assert rollout.prompt_width == 4
    assert rollout.sequences.tolist() == [[PAD, PAD, 5, 6, 11, EOS, PAD],
                                          [7, 8, 9, 10, 12, UNK, 14]]
    # prompt mask, then response tokens up to and including EOS; pad and unk count 0
    assert rollout.attention_mask.tolist() == [[0, 0, 1, 1, 1, 1, 0], [1, 1, 1, 1, 1, 0, 1]]
    assert rollout.response_texts == ["11", "12 14"]
    assert rollout.response_lengths.tolist() == [2, 2]


def test_several_samples_per_prompt_come_out_prompt_major():
    prompt_ids = torch.tensor([[PAD, 5], [6, 7]])
    prompt_mask = torch.tensor([[0, 1], [1, 1]])
    rollout = rollout_from_token_ids(FakeTokenizer(), prompt_ids, prompt_mask,
                                     [[20], [21, EOS], [22, 23], [EOS]], 2)
    assert rollout.sequences.tolist() == [[PAD, 5, 20, PAD], [PAD, 5, 21, EOS],
                                          [6, 7, 22, 23], [6, 7, EOS, PAD]]
    assert rollout.attention_mask[:, :2].tolist() == [[0, 1], [0, 1], [1, 1], [1, 1]]
    assert rollout.response_texts == ["20", "21", "22 23", ""]


def test_a_response_count_that_does_not_match_prompts_times_samples_is_refused():
    with pytest.raises(ValueError, match="2 prompts × 2 samples = 4 responses, got 3"):
        rollout_from_token_ids(FakeTokenizer(), torch.ones(2, 3, dtype=torch.long),
                               torch.ones(2, 3, dtype=torch.long), [[5], [6], [7]], 2)


def test_unpadded_rows_drop_the_left_padding():
    ids = torch.tensor([[PAD, PAD, 5, 6], [7, 8, 9, 10]])
    mask = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1]])
    assert unpadded_rows(ids, mask) == [[5, 6], [7, 8, 9, 10]]


def test_every_row_gets_its_own_seed_and_none_draws_from_the_global_rng():
    assert row_seeds(10, 3) == [10, 11, 12]
    torch.manual_seed(7)
    first = row_seeds(None, 4)
    torch.manual_seed(7)
    assert row_seeds(None, 4) == first  # reproducible from the (checkpointed) RNG state
    assert len(set(first)) == 4


def test_a_seed_drawn_from_the_global_rng_advances_it():
    torch.manual_seed(7)
    untouched = torch.rand(1)
    torch.manual_seed(7)
    row_seeds(None, 2)
    assert not torch.equal(torch.rand(1), untouched)


TEXTS = [
    "BEGINNING OF CONVERSATION: USER: how do i bake bread ? ASSISTANT:sure . first flour</s>",
    "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:sorry , i can not help with that .</s>",
] * 20
PROMPTS = ["BEGINNING OF CONVERSATION: USER: how do i bake bread ? ASSISTANT:",
           "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:"]


@pytest.fixture(scope="module")
def tiny():
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_bpe_tokenizer(TEXTS, vocab_size=300, model_max_length=64)
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
                     bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                     pad_token_id=tok.pad_token_id)
    return GPT2LMHeadModel(cfg).eval(), tok


def test_the_hf_engine_samples_exactly_what_generate_samples(tiny):
    model, tok = tiny
    engine = build_engine(RolloutEngineSpec(), model=model, tokenizer=tok, model_path="unused")
    assert isinstance(engine, HFEngine) and not engine.needs_weight_sync
    assert engine.context_size == 64
    ours = engine.generate(PROMPTS, max_new_tokens=12, num_return_sequences=3, seed=4)
    theirs = generate(model, tok, PROMPTS, max_new_tokens=12, num_return_sequences=3, seed=4)
    assert torch.equal(ours.sequences, theirs.sequences)
    assert torch.equal(ours.attention_mask, theirs.attention_mask)
    assert ours.response_texts == theirs.response_texts


def test_assembling_generates_own_responses_gives_back_its_rollout(tiny):
    """The vLLM path's layout is `generate`'s: re-assemble HF's sampled ids (each row's counted
    tokens, EOS included) and get the same sequences, mask and texts."""
    model, tok = tiny
    theirs = generate(model, tok, PROMPTS, max_new_tokens=16, num_return_sequences=2, seed=1)
    S = theirs.prompt_width
    responses = [row[S:][mask[S:].bool()].tolist()
                 for row, mask in zip(theirs.sequences, theirs.attention_mask, strict=True)]
    prompt_ids, prompt_mask = theirs.sequences[::2, :S], theirs.attention_mask[::2, :S]
    ours = rollout_from_token_ids(tok, prompt_ids, prompt_mask, responses, 2)
    assert ours.sequences.shape[1] <= theirs.sequences.shape[1]
    width = ours.sequences.shape[1]
    assert torch.equal(ours.sequences, theirs.sequences[:, :width])
    assert torch.equal(ours.attention_mask, theirs.attention_mask[:, :width])
    assert not theirs.attention_mask[:, width:].any()  # HF only padded past the longest
    assert ours.response_texts == theirs.response_texts


class RecordingEngine(HFEngine):
    """The HF engine, recording what a sync hands it (HF itself needs none)."""

    needs_weight_sync = True

    def sync_weights(self, named_tensors) -> None:
        self.received = dict(named_tensors)


def test_a_sync_hands_the_engine_the_models_own_tensors_under_checkpoint_names(tiny):
    model, tok = tiny
    engine = RecordingEngine(model, tok)
    wrapper = torch.nn.Module()
    wrapper.module = model  # what DDP and DeepSpeed engines look like: synced through it
    sync_engine(engine, wrapper, deadline_seconds=30, hard_exit=lambda code: None)
    assert set(engine.received) == set(model.state_dict())
    assert "lm_head.weight" in engine.received and "transformer.wte.weight" in engine.received
    param = model.transformer.h[0].attn.c_attn.weight
    tensor = engine.received["transformer.h.0.attn.c_attn.weight"]
    assert tensor.data_ptr() == param.data_ptr()  # no copy on the way to the engine
    assert not tensor.requires_grad


def test_engine_hf_needs_a_model():
    with pytest.raises(ValueError, match="pass model="):
        build_engine(RolloutEngineSpec(), model=None, tokenizer=None, model_path="x")
