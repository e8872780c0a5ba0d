"""saferlhf.runners.common.fast_decode: the static-cache sampling loop samples what Hugging Face
`generate` samples, and steps aside where it does not apply."""

from __future__ import annotations

import pytest
import torch
from saferlhf.runners.common import fast_decode
from saferlhf.runners.common.generation import generate
from saferlhf.runners.common.tokenizer import train_bpe_tokenizer

TEXTS = [
    "BEGINNING OF CONVERSATION: USER: how do i bake bread ? ASSISTANT:sure . first flour</s>",
    "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:sorry , i can not help with that .</s>",
] * 20
PROMPTS = [
    "BEGINNING OF CONVERSATION: USER: how do i bake bread today ? ASSISTANT:",
    "BEGINNING OF CONVERSATION: USER: hi ASSISTANT:",
    "BEGINNING OF CONVERSATION: USER: can you help ASSISTANT:",
]
SETTINGS = [
    {},
    {"temperature": 0.7, "top_p": 0.9, "repetition_penalty": 1.3},
    {"num_return_sequences": 2},
    {"do_sample": False},
]


def _model(family: str, tok, **extra):
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id,
           "pad_token_id": tok.pad_token_id, "vocab_size": len(tok)}
    torch.manual_seed(0)
    if family == "gpt2":
        config = GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=2,
                            activation_function="gelu_pytorch_tanh", **ids, **extra)
        return GPT2LMHeadModel(config).eval()
    config = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2,  # grouped-query
                         max_position_embeddings=64, tie_word_embeddings=True, **ids, **extra)
    return LlamaForCausalLM(config).eval()


def _likely_eos(model, tok, probability: float = 0.2) -> None:
    """Give EOS a constant logit (GPT-2): hidden coordinate 0 becomes the constant ln_f bias b
    (its ln_f weight 0), only the EOS output row reads it, so logit(EOS) = b everywhere; b is
    bisected so EOS gets about `probability` at the prompts' last positions."""
    enc = tok(PROMPTS, return_tensors="pt", padding=True, padding_side="left")
    head = model.get_output_embeddings().weight  # tied with the input embeddings
    ln_f = model.transformer.ln_f
    with torch.no_grad():
        head[:, 0] = 0.0
        head[tok.eos_token_id] = 0.0
        head[tok.eos_token_id, 0] = 1.0
        ln_f.weight[0] = 0.0
        low, high = -20.0, 40.0
        for _ in range(40):
            ln_f.bias[0] = (low + high) / 2
            p = model(**enc).logits[:, -1].softmax(-1)[:, tok.eos_token_id].mean()
            low, high = ((low + high) / 2, high) if p < probability else (low, (low + high) / 2)


@pytest.fixture(scope="module")
def tok():
    return train_bpe_tokenizer(TEXTS, vocab_size=300, model_max_length=64)


@pytest.mark.parametrize("family", ["gpt2", "llama"])
@pytest.mark.parametrize("settings", SETTINGS, ids=["default", "temp-topp-rep", "n2", "greedy"])
def test_the_loop_samples_the_same_tokens_as_hf_generate_under_the_same_seed(tok, family,
                                                                              settings):
    model = _model(family, tok)
    assert fast_decode.unsupported_reason(model) is None
    for seed in range(3):
        hf = generate(model, tok, PROMPTS, max_new_tokens=12, seed=seed, decode="hf", **settings)
        fast = generate(model, tok, PROMPTS, max_new_tokens=12, seed=seed, **settings)
        assert torch.equal(hf.sequences, fast.sequences), (seed, settings)
        assert torch.equal(hf.attention_mask, fast.attention_mask)


def test_rows_that_emit_eos_continue_with_pad_and_the_loop_stops_when_all_have(tok):
    """EOS made likely, so rows finish at different steps (the stopping code is shared by the
    families)."""
    model = _model("gpt2", tok)
    _likely_eos(model, tok)
    finished_early = 0
    for seed in range(4):
        hf = generate(model, tok, PROMPTS, max_new_tokens=30, seed=seed, decode="hf")
        fast = generate(model, tok, PROMPTS, max_new_tokens=30, seed=seed)
        assert torch.equal(hf.sequences, fast.sequences)
        finished_early += int(fast.sequences.shape[1] < fast.prompt_width + 30)
        response = fast.sequences[:, fast.prompt_width:]
        for row in response:
            eos = (row == tok.eos_token_id).nonzero()
            if len(eos):  # everything after the first EOS is padding
                assert (row[int(eos[0]) + 1:] == tok.pad_token_id).all()
    assert finished_early > 0  # the case under test happened


def test_min_new_tokens_from_the_models_generation_config_is_honoured(tok):
    model = _model("gpt2", tok)
    _likely_eos(model, tok, 0.5)
    model.generation_config.min_new_tokens = 9
    hf = generate(model, tok, PROMPTS, max_new_tokens=9, seed=1, decode="hf")
    fast = generate(model, tok, PROMPTS, max_new_tokens=9, seed=1)
    assert torch.equal(hf.sequences, fast.sequences)
    assert not (fast.sequences[:, fast.prompt_width:] == tok.eos_token_id).any()


def test_the_loop_steps_aside_where_it_does_not_apply(tok):
    model = _model("gpt2", tok)
    assert "synced_gpus" in fast_decode.unsupported_reason(model, synced_gpus=True)

    hooked = _model("gpt2", tok)
    hooked.transformer.h[0].register_forward_hook(lambda *a: None)
    assert "hooks" in fast_decode.unsupported_reason(hooked)

    adapted = _model("gpt2", tok)  # a module the loop does not know, as an adapter would add
    adapted.transformer.h[0].mlp.c_fc = torch.nn.Sequential(adapted.transformer.h[0].mlp.c_fc)
    assert "Sequential" in fast_decode.unsupported_reason(adapted)

    configured = _model("gpt2", tok)
    configured.generation_config.no_repeat_ngram_size = 2
    assert "no_repeat_ngram_size" in fast_decode.unsupported_reason(configured)

    from transformers import OPTConfig, OPTForCausalLM

    other = OPTForCausalLM(OPTConfig(vocab_size=len(tok), hidden_size=16, num_hidden_layers=1,
                                     ffn_dim=32, num_attention_heads=2, word_embed_proj_dim=16))
    assert "builtin family" in fast_decode.unsupported_reason(other)
    # ...and generate still works on it (Hugging Face generate)
    out = generate(other.eval(), tok, PROMPTS[:1], max_new_tokens=3, seed=0)
    assert out.sequences.shape[1] <= out.prompt_width + 3


def test_an_unknown_decode_setting_is_a_clear_error(tok):
    with pytest.raises(ValueError, match="decode must be auto or hf"):
        generate(_model("gpt2", tok), tok, PROMPTS, max_new_tokens=2, decode="fast")


@pytest.mark.slow  # torch.compile: about 20 s per family on one CPU thread
@pytest.mark.parametrize("family", ["gpt2", "llama"])
def test_the_compiled_decode_step_samples_the_same_tokens_and_reports_its_compile_time(
        tok, family):
    model = _model(family, tok)
    before = fast_decode.compile_seconds() or 0.0
    for seed in range(2):
        hf = generate(model, tok, PROMPTS, max_new_tokens=12, seed=seed, decode="hf")
        compiled = generate(model, tok, PROMPTS, max_new_tokens=12, seed=seed, compile=True)
        assert torch.equal(hf.sequences, compiled.sequences)
    assert fast_decode.compile_seconds() > before  # compiled once, timed


def test_a_model_in_train_mode_is_left_to_hf_generate(tok):
    """The loop leaves dropout out, so it only samples from models in eval mode (generate()
    switches to eval itself)."""
    model = _model("gpt2", tok).train()
    assert "train mode" in fast_decode.unsupported_reason(model)
    assert fast_decode.unsupported_reason(model.eval()) is None
