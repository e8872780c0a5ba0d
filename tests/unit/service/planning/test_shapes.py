"""Parameter counts from config.json agree exactly with the real Hugging Face modules (built on
the meta device), LoRA counts with peft, and the largest module with DeepSpeed's definition."""

from __future__ import annotations

import json
import os

import pytest
from saferlhf.runners.common.config import ModelSpec
from saferlhf.service.planning import model_config as mc
from saferlhf.service.planning.model_config import Unknown, model_shape, shape_from_config
from saferlhf.service.planning.shapes import (
    LoraInput,
    LoraTargetError,
    largest_module_params,
    lm_params,
    lora_params,
    score_params,
)

from tests.unit.service.planning.model_configs import (
    GPT2_SMALL,
    LLAMA2_70B,
    LLAMA_7B,
    QWEN25_05B,
    hf_config,
    meta_model,
    parameter_count,
    write_model_folder,
)

TINY = {
    "llama-gqa": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 172,
                  "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 2,
                  "vocab_size": 300, "max_position_embeddings": 128},
    "llama-bias-tied": {"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
                        "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 300,
                        "attention_bias": True, "mlp_bias": True, "tie_word_embeddings": True},
    "mistral": {"model_type": "mistral", "hidden_size": 64, "intermediate_size": 160,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "vocab_size": 300},
    "qwen2": {"model_type": "qwen2", "hidden_size": 64, "intermediate_size": 160,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "vocab_size": 300, "tie_word_embeddings": True},
    "qwen3": {"model_type": "qwen3", "hidden_size": 64, "intermediate_size": 160,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
              "head_dim": 32, "vocab_size": 300},
    "gemma": {"model_type": "gemma", "hidden_size": 64, "intermediate_size": 160,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 1,
              "head_dim": 16, "vocab_size": 300},
    "gpt2-untied": {"model_type": "gpt2", "n_embd": 64, "n_layer": 2, "n_head": 4,
                    "vocab_size": 300, "n_positions": 96, "tie_word_embeddings": False},
}
PUBLISHED = {"llama-7b": LLAMA_7B, "llama2-70b": LLAMA2_70B, "qwen2.5-0.5b": QWEN25_05B,
             "gpt2": GPT2_SMALL}


def _shape(fields):
    shape = shape_from_config(hf_config(fields).to_dict())
    assert not isinstance(shape, Unknown), shape
    return shape


@pytest.mark.parametrize("name", [*TINY, *PUBLISHED])
def test_lm_and_score_model_parameter_counts_equal_the_real_modules(name: str) -> None:
    fields = {**TINY, **PUBLISHED}[name]
    shape = _shape(fields)
    assert lm_params(shape) == parameter_count(meta_model(fields))
    assert score_params(shape) == parameter_count(meta_model(fields, score=True))


def test_the_published_sizes_come_out_as_published() -> None:
    # LLaMA-7B: 6.74 B (the "7B"); Llama-2-70B: 68.98 B; Qwen2.5-0.5B: 0.49 B; GPT-2: 124 M.
    assert lm_params(_shape(LLAMA_7B)) == 6_738_415_616
    assert lm_params(_shape(LLAMA2_70B)) == 68_976_648_192
    assert lm_params(_shape(QWEN25_05B)) == 494_032_768
    assert lm_params(_shape(GPT2_SMALL)) == 124_439_808


@pytest.mark.parametrize("name", ["llama-gqa", "gpt2-untied", "qwen2"])
def test_the_largest_module_is_deepspeeds_largest_layer(name: str) -> None:
    # deepspeed/runtime/zero/stage3.py estimate_zero3_model_states_mem_needs_all_live:
    # max over modules of the parameters each holds itself (recurse=False).
    model = meta_model(TINY[name])
    largest = max(sum(p.numel() for p in m.parameters(recurse=False)) for m in model.modules())
    assert largest_module_params(_shape(TINY[name])) == largest


@pytest.mark.parametrize(("name", "targets"), [
    ("llama-gqa", None),  # PEFT's default for llama: q_proj, v_proj
    ("llama-gqa", ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")),
    ("llama-gqa", "all-linear"),
    ("llama-gqa", r".*layers\.1\.mlp\.(up|down)_proj"),
    ("qwen2", ("q_proj", "lm_head")),
    ("gpt2-untied", None),  # c_attn
    ("gpt2-untied", ("c_proj",)),  # matches attn.c_proj and mlp.c_proj, as in PEFT
    ("gpt2-untied", ("attn.c_proj", "c_fc")),
])
def test_lora_parameter_counts_equal_peft(name: str, targets) -> None:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(hf_config(TINY[name]))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=list(targets)
                        if isinstance(targets, tuple) else targets)
    peft_model = get_peft_model(model, config)
    trainable = sum(p.numel() for p in peft_model.parameters() if p.requires_grad)
    assert lora_params(_shape(TINY[name]), LoraInput(4, targets)) == trainable


def test_lora_targets_that_match_nothing_are_named_with_the_modules_that_exist() -> None:
    with pytest.raises(LoraTargetError, match="q_proj") as info:
        lora_params(_shape(TINY["llama-gqa"]), LoraInput(8, ("query", "value")))
    assert "query" in str(info.value)


def test_config_reads_are_cached_by_mtime_and_a_changed_file_is_reread(tmp_path) -> None:
    folder = write_model_folder(tmp_path / "m", TINY["llama-gqa"])
    first = mc.read_config_shape(str(folder))
    assert mc.read_config_shape(str(folder)) is first  # served from the cache
    raw = json.loads((folder / "config.json").read_text())
    raw["num_hidden_layers"] = 3
    (folder / "config.json").write_text(json.dumps(raw))
    st = os.stat(folder / "config.json")
    os.utime(folder / "config.json", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert mc.read_config_shape(str(folder)).layers == 3


def test_unknown_architectures_and_hub_models_without_a_local_config_are_unknown(
        tmp_path, monkeypatch) -> None:
    (tmp_path / "falcon").mkdir()
    (tmp_path / "falcon" / "config.json").write_text('{"model_type": "falcon"}')
    got = mc.read_config_shape(str(tmp_path / "falcon"))
    assert isinstance(got, Unknown) and "falcon" in got.reason
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    hub = ModelSpec(path="huggyllama/llama-7b", revision="a" * 40)
    got = model_shape(hub)
    assert isinstance(got, Unknown) and "not on this machine" in got.reason
    # Once the pinned revision is in the local cache, its config.json is used.
    snapshot = tmp_path / "hub" / "models--huggyllama--llama-7b" / "snapshots" / ("a" * 40)
    write_model_folder(snapshot, LLAMA_7B)
    assert lm_params(model_shape(hub)) == 6_738_415_616


def test_builtin_shapes_match_the_models_the_runners_build() -> None:
    import torch
    from saferlhf.runners.common.models import _builtin_config

    class _Tok:  # the trained BPE tokenizer's size equals the target vocabulary here
        bos_token_id, eos_token_id, pad_token_id = 0, 1, 2

        def __len__(self) -> int:
            return 1024

    from transformers import AutoModelForCausalLM

    for path in ("builtin:tiny-gpt2", "builtin:tiny-llama"):
        spec = ModelSpec(path=path, max_position_embeddings=64)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(_builtin_config(spec, _Tok()))
        assert lm_params(mc.builtin_shape(spec)) == parameter_count(model), path
