"""saferlhf.runners.common.generation: left-padded sampling with a KV cache, masks and log-probs."""

from __future__ import annotations

import math

import pytest
import torch
from saferlhf.runners.common.generation import (
    gather_log_probs,
    generate,
    position_ids_from_mask,
    response_mask,
    token_log_probs,
)
from saferlhf.runners.common.tokenizer import train_bpe_tokenizer

TEXTS = [
    "BEGINNING OF CONVERSATION: USER: how do i bake bread ? ASSISTANT:sure . first flour</s>",
    "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:sorry , i can not help with that .</s>",
] * 20


@pytest.fixture(scope="module")
def tiny():
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_bpe_tokenizer(TEXTS, vocab_size=300, model_max_length=64)
    torch.manual_seed(0)
    cfg = GPT2Config(
        vocab_size=len(tok), n_positions=64, n_embd=32, n_layer=2, n_head=2,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    return GPT2LMHeadModel(cfg).eval(), tok


PROMPTS = [
    "BEGINNING OF CONVERSATION: USER: how do i bake bread ? ASSISTANT:",
    "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:",
]


def test_position_ids_skip_left_padding():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 0]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 3, 0]]


def test_response_mask_stops_after_first_eos_and_drops_pad_and_unk():
    # prompt width 1; response columns: eos=2, pad=0, unk=3
    seqs = torch.tensor([[9, 5, 3, 2, 0, 0], [9, 5, 6, 7, 8, 5], [9, 2, 5, 2, 5, 0]])
    m = response_mask(seqs, 1, eos_token_id=2, pad_token_id=0, unk_token_id=3)
    assert m.tolist() == [[1, 0, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]]


def test_response_mask_keeps_eos_when_pad_equals_eos():
    seqs = torch.tensor([[9, 5, 2, 2, 2]])
    m = response_mask(seqs, 1, eos_token_id=2, pad_token_id=2, unk_token_id=None)
    assert m.tolist() == [[1, 1, 0, 0]]


def test_gather_log_probs_matches_hand_computed_softmax():
    logits = torch.tensor([[[0.0, 0.0], [1.0, 0.0]]])  # (1, 2, 2)
    labels = torch.tensor([[1, 0]])
    expected = torch.tensor([[math.log(0.5), -math.log1p(math.exp(-1.0))]])
    assert torch.allclose(gather_log_probs(logits, labels), expected, atol=1e-6)


def test_generate_returns_left_padded_prompts_and_masked_responses(tiny):
    model, tok = tiny
    out = generate(model, tok, PROMPTS, max_new_tokens=6, num_return_sequences=2, seed=1)
    assert out.sequences.shape[0] == 4
    assert out.sequences.shape == out.attention_mask.shape
    assert out.sequences.shape[1] <= out.prompt_width + 6
    short_len = len(tok(PROMPTS[1])["input_ids"])
    # the short prompt is left-padded: its first columns are pad with mask 0
    pad_cols = out.prompt_width - short_len
    assert pad_cols > 0
    assert (out.sequences[2:, :pad_cols] == tok.pad_token_id).all()
    assert (out.attention_mask[2:, :pad_cols] == 0).all()
    assert (out.attention_mask[:, pad_cols:out.prompt_width][2:] == 1).all()
    assert len(out.response_texts) == 4
    counted = out.attention_mask[:, out.prompt_width:].sum(-1)
    assert out.response_lengths.tolist() == counted.tolist()


def test_generate_with_a_seed_is_reproducible_and_leaves_the_global_rng_alone(tiny):
    model, tok = tiny
    state = torch.get_rng_state()
    a = generate(model, tok, PROMPTS, max_new_tokens=5, seed=7)
    b = generate(model, tok, PROMPTS, max_new_tokens=5, seed=7)
    assert torch.equal(a.sequences, b.sequences)
    assert torch.equal(torch.get_rng_state(), state)


def test_left_padded_log_probs_equal_unpadded_log_probs(tiny):
    """Position ids from the mask make a left-padded row score like the same row alone."""
    model, tok = tiny
    out = generate(model, tok, PROMPTS, max_new_tokens=5, seed=3)
    with torch.no_grad():
        batch = token_log_probs(model, out.sequences, out.attention_mask)  # (B, L-1)
        row = 1  # the short, left-padded prompt
        keep = out.attention_mask[row].bool()
        alone_ids = out.sequences[row][keep].unsqueeze(0)
        alone = token_log_probs(model, alone_ids, torch.ones_like(alone_ids))
    # actions whose *source* token is real: t with mask[t] = 1 and mask[t+1] = 1
    both = (out.attention_mask[row, :-1] * out.attention_mask[row, 1:]).bool()
    n = int(both.sum())
    assert torch.allclose(batch[row][both], alone[0][:n], atol=1e-4)


def test_generate_matches_a_no_cache_greedy_loop(tiny):
    """Greedy decoding through generate (KV cache, left padding) equals a plain argmax loop."""
    model, tok = tiny
    out = generate(model, tok, PROMPTS[1:], max_new_tokens=4, do_sample=False)
    ids = tok(PROMPTS[1:], return_tensors="pt")["input_ids"]
    with torch.no_grad():
        for _ in range(4):
            nxt = model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)
            ids = torch.cat([ids, nxt], dim=1)
            if nxt.item() == tok.eos_token_id:
                break
    got = out.sequences[0][out.attention_mask[0].bool()]
    assert got.tolist() == ids[0].tolist()


def test_generation_never_runs_past_the_models_positions():
    """Prompt + response beyond a GPT-2's `n_positions` used to crash with an IndexError in the
    position embedding; max_new_tokens is now lowered to fit, and a prompt that leaves no room is
    a clear error."""
    import types

    from saferlhf.runners.common.generation import fit_new_tokens

    model = types.SimpleNamespace(config=types.SimpleNamespace(n_positions=32))
    assert fit_new_tokens(model, prompt_width=20, max_new_tokens=8) == 8
    assert fit_new_tokens(model, prompt_width=20, max_new_tokens=32) == 12
    with pytest.raises(ValueError, match="no room to generate"):
        fit_new_tokens(model, prompt_width=32, max_new_tokens=4)


def test_log_probs_from_a_first_action_skip_the_prompt_logits_and_keep_the_values(tiny):
    """first_action = S − 1 gives the response actions only (HF logits_to_keep), equal to the
    matching columns of the full computation."""
    model, tok = tiny
    out = generate(model, tok, PROMPTS, max_new_tokens=5, seed=2)
    S = out.prompt_width
    with torch.no_grad():
        full = token_log_probs(model, out.sequences, out.attention_mask)  # (B, L-1)
        response = token_log_probs(model, out.sequences, out.attention_mask, S - 1)
    assert response.shape == (out.sequences.shape[0], out.sequences.shape[1] - S)
    torch.testing.assert_close(response, full[:, S - 1:], rtol=1e-5, atol=1e-6)
