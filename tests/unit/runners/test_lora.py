"""LoRA: config validation, target layers per architecture, the merged engine weights (against
peft's own merge), the adapter-disabled reference, adapter folders and LoRA checkpoints."""

from __future__ import annotations

import copy

import pytest
import torch
from pydantic import ValidationError
from saferlhf.runners.common.config import (
    LoraSpec,
    PolicyLoraSpec,
    PPOLagParams,
    SFTParams,
)
from saferlhf.runners.common.errors import InvalidInputError
from saferlhf.runners.common.lora import (
    AdapterDisabled,
    add_lora,
    add_lora_to_score_model,
    engine_weights,
    lora_delta,
    parameter_counts,
    resolve_target_modules,
)


def tiny(model_type: str):
    """A random 2-layer causal LM of `model_type`, built from config (no download)."""
    import transformers as tf

    small = {"vocab_size": 64, "hidden_size": 16, "intermediate_size": 32,
             "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
             "max_position_embeddings": 32}
    configs = {
        "gpt2": lambda: tf.GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2,
                                      n_positions=32),
        "llama": lambda: tf.LlamaConfig(**small),
        "mistral": lambda: tf.MistralConfig(**small),
        "qwen2": lambda: tf.Qwen2Config(**small),
        "opt": lambda: tf.OPTConfig(vocab_size=64, hidden_size=16, ffn_dim=32, num_hidden_layers=2,
                                    num_attention_heads=2, max_position_embeddings=32,
                                    word_embed_proj_dim=16),
    }
    torch.manual_seed(0)
    return tf.AutoModelForCausalLM.from_config(configs[model_type]())


def perturb_adapters(model, seed: int = 1) -> None:
    """Non-zero B (peft starts B at 0, where every merge is trivially the base)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn(param.shape, generator=gen) * 0.2)


IDS = torch.tensor([[5, 9, 2, 33, 7, 1], [8, 8, 60, 3, 0, 12]])


# -- config ------------------------------------------------------------------------------------


def test_lora_defaults_follow_the_reference_fork_and_policies_may_save_a_merged_copy():
    spec = PolicyLoraSpec()
    assert (spec.r, spec.alpha, spec.dropout, spec.target_modules) == (8, 16.0, 0.05, None)
    assert spec.save_merged is False
    assert "save_merged" not in LoraSpec.model_fields  # critics / score models save merged


@pytest.mark.parametrize("bad, where", [
    ({"r": 0}, "r"), ({"alpha": -1}, "alpha"), ({"dropout": 1.0}, "dropout"),
    ({"target_modules": []}, "target_modules"), ({"target_modules": ["c attn"]}, "not module"),
    ({"target_modules": ["q_proj", "q_proj"]}, "twice"), ({"rank": 8}, "rank"),
])
def test_a_bad_lora_setting_is_rejected_naming_it(bad, where):
    with pytest.raises(ValidationError, match=where):
        PolicyLoraSpec.model_validate(bad)


def test_sft_and_ppo_lag_take_lora_and_the_critics_their_own():
    sft = SFTParams.model_validate({"data": [{"format": "synthetic", "split": "sft"}],
                                    "lora": {"r": 4, "save_merged": True}})
    assert sft.lora == PolicyLoraSpec(r=4, save_merged=True)
    ppo = PPOLagParams.model_validate({
        "prompts": [{"format": "synthetic", "split": "prompts"}], "threshold": 0.0,
        "lora": {"target_modules": ["c_attn"]}, "critic_lora": {"r": 2}})
    assert ppo.lora.target_modules == ["c_attn"] and ppo.critic_lora.r == 2
    with pytest.raises(ValidationError, match="save_merged"):
        PPOLagParams.model_validate({
            "prompts": [{"format": "synthetic", "split": "prompts"}], "threshold": 0.0,
            "critic_lora": {"save_merged": True}})


# -- target layers -----------------------------------------------------------------------------


@pytest.mark.parametrize("model_type, expected", [
    ("gpt2", ["c_attn", "c_proj", "c_fc"]),
    ("llama", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("mistral", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("qwen2", ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
    ("opt", ["fc1", "fc2", "k_proj", "out_proj", "q_proj", "v_proj"]),  # every Linear but lm_head
])
def test_default_targets_are_the_projections_of_each_architecture(model_type, expected):
    model = tiny(model_type)
    assert resolve_target_modules(model, LoraSpec(), field="lora.target_modules") == expected


def test_an_unknown_target_is_an_input_error_naming_the_field_and_the_models_layers():
    model = tiny("gpt2")
    with pytest.raises(InvalidInputError) as err:
        resolve_target_modules(model, LoraSpec(target_modules=["q_proj", "c_attn"]),
                               field="lora.target_modules")
    assert err.value.field == "lora.target_modules"
    assert "'q_proj' matches no layer" in str(err.value)
    assert "c_attn, c_fc, c_proj, lm_head" in str(err.value)


def test_a_target_that_is_not_a_linear_layer_says_what_it_is():
    with pytest.raises(InvalidInputError, match="'wte' is a Embedding, not a Linear layer"):
        resolve_target_modules(tiny("gpt2"), LoraSpec(target_modules=["wte"]), field="f")


def test_a_head_tied_to_the_input_embeddings_is_refused_as_a_target():
    with pytest.raises(InvalidInputError, match="'lm_head' shares its weight with the input"):
        resolve_target_modules(tiny("gpt2"), LoraSpec(target_modules=["c_fc", "lm_head"]),
                               field="f")


def test_lora_freezes_the_base_and_trains_only_the_adapters():
    model = add_lora(tiny("gpt2"), LoraSpec(r=2), field="f")
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".lora_A." in n or ".lora_B." in n for n in trainable)
    # 2 layers × (c_attn 16→48, attn c_proj 16→16, c_fc 16→64, mlp c_proj 64→16), r = 2
    per_layer = 2 * (16 + 48) + 2 * (16 + 16) + 2 * (16 + 64) + 2 * (64 + 16)
    assert parameter_counts(model)[0] == 2 * per_layer


# -- merged weights for an engine --------------------------------------------------------------


def test_the_lora_delta_is_scale_times_b_a_hand_computed():
    a = torch.tensor([[1.0, 0.0, 2.0]])  # (r=1, in=3)
    b = torch.tensor([[1.0], [-3.0]])  # (out=2, r=1)
    expected = torch.tensor([[0.5, 0.0, 1.0], [-1.5, 0.0, -3.0]])  # 0.5·B·A, (out, in)
    assert torch.equal(lora_delta(a, b, 0.5, fan_in_fan_out=False), expected)
    assert torch.equal(lora_delta(a, b, 0.5, fan_in_fan_out=True), expected.T)  # Conv1D layout


@pytest.mark.parametrize("model_type", ["gpt2", "llama"])
def test_engine_weights_equal_peft_merge_and_unload_and_leave_the_model_untouched(model_type):
    model = add_lora(tiny(model_type), LoraSpec(r=4, alpha=8), field="f")
    perturb_adapters(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    merged = dict(engine_weights(model))
    expected = copy.deepcopy(model).merge_and_unload().state_dict()
    assert merged.keys() == expected.keys()
    for key in expected:
        assert torch.allclose(merged[key], expected[key], atol=1e-6), key
    bases = {k: "base_model.model." + k.replace(".weight", ".base_layer.weight") for k in expected}
    adapted = [k for k, b in bases.items() if b in before and not torch.equal(before[b], merged[k])]
    assert len(adapted) == 2 * (4 if model_type == "gpt2" else 7)  # every adapted layer moved
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # pure: nothing merged in place


def test_engine_weights_of_a_plain_model_are_its_state_dict():
    model = tiny("gpt2")
    weights = dict(engine_weights(model))
    state = model.state_dict()
    assert weights.keys() == state.keys()
    assert all(weights[k] is state[k] or torch.equal(weights[k], state[k]) for k in state)


def test_engine_weights_take_tensors_from_a_given_state_dict():
    """A ZeRO-3 save passes a gathered state dict: its tensors are used, not the parameters."""
    model = add_lora(tiny("gpt2"), LoraSpec(r=2), field="f")
    perturb_adapters(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    expected = {k: v.clone() for k, v in engine_weights(model)}  # unadapted ones are live views
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    merged = dict(engine_weights(model, state))
    assert all(torch.allclose(merged[k], expected[k]) for k in expected)


def test_a_score_model_with_a_lora_backbone_saves_merged_in_the_plain_layout(tmp_path):
    from saferlhf.runners.common.score_model import ScoreModel

    score = ScoreModel.from_policy(tiny("gpt2"), score_type="reward")
    plain_keys = set(score.state_dict()) - {"_extra_state"}
    add_lora_to_score_model(score, LoraSpec(r=2), field="lora.target_modules")
    perturb_adapters(score)
    assert score.score_head.weight.requires_grad  # the head trains in full
    score.eval()
    mask = torch.ones_like(IDS)
    with torch.no_grad():
        want = score(IDS, mask).end_scores
    score.save_pretrained(tmp_path)
    again = ScoreModel.from_pretrained(tmp_path).eval()
    assert set(again.state_dict()) - {"_extra_state"} == plain_keys
    with torch.no_grad():
        assert torch.allclose(again(IDS, mask).end_scores, want, atol=1e-5)


# -- the reference ---------------------------------------------------------------------------


def test_the_adapter_disabled_reference_gives_exactly_the_starting_policys_logits():
    base = tiny("llama")
    start = copy.deepcopy(base).eval()
    model = add_lora(base, LoraSpec(r=4, dropout=0.1), field="f")
    perturb_adapters(model)
    model.train()
    reference = AdapterDisabled(model)
    with torch.no_grad():
        want = start(input_ids=IDS).logits
        model.eval()
        actor = model(input_ids=IDS).logits
    model.train()
    got = reference(input_ids=IDS).logits
    assert torch.equal(got, want)
    assert not torch.allclose(actor, want, atol=1e-3)  # the adapters do change the policy
    assert model.training and not got.requires_grad  # mode restored, no graph
    assert not model.base_model.model.model.layers[0].self_attn.q_proj.disable_adapters


# -- folders -----------------------------------------------------------------------------------


@pytest.fixture()
def saved_adapter(tmp_path):
    """A tiny builtin GPT-2 base folder and a perturbed adapter on it, saved with merged/."""
    from saferlhf.runners.common.adapters import save_adapter
    from saferlhf.runners.common.config import ModelSpec
    from saferlhf.runners.common.models import build_policy, save_model
    from saferlhf.runners.ppo_lag.tiny import synthetic_texts

    torch.manual_seed(0)
    model, tok = build_policy(ModelSpec(path="builtin:tiny-gpt2", n_layer=2, n_embd=16,
                                        n_head=2, vocab_size=280, max_position_embeddings=32),
                              synthetic_texts(60))
    save_model(model, tok, tmp_path / "base")
    peft_model = add_lora(model, LoraSpec(r=2, dropout=0.0), field="f")
    perturb_adapters(peft_model)
    save_adapter(peft_model, tok, tmp_path / "model", base=str(tmp_path / "base"), merged=True)
    peft_model.eval()
    with torch.no_grad():
        want = peft_model(input_ids=IDS).logits
    return tmp_path, want


def test_a_saved_adapter_reloads_with_peft_and_its_merged_folder_with_transformers(saved_adapter):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    root, want = saved_adapter
    names = {p.name for p in (root / "model").iterdir()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
            "merged"} <= names and "model.safetensors" not in names
    base = AutoModelForCausalLM.from_pretrained(root / "base")
    with torch.no_grad():
        via_peft = PeftModel.from_pretrained(base, root / "model").eval()(input_ids=IDS).logits
        merged = AutoModelForCausalLM.from_pretrained(root / "model" / "merged").eval()
        via_merged = merged(input_ids=IDS).logits
    assert torch.allclose(via_peft, want, atol=1e-6)
    assert torch.allclose(via_merged, want, atol=1e-5)
    assert AutoTokenizer.from_pretrained(root / "model" / "merged").get_vocab() == \
        AutoTokenizer.from_pretrained(root / "base").get_vocab()


def test_load_policy_reads_an_adapter_folder_with_or_without_its_merged_copy(saved_adapter):
    import shutil

    from saferlhf.runners.common.models import load_policy

    root, want = saved_adapter
    for _ in ("merged", "base + adapter"):
        model, tok = load_policy(root / "model")
        assert not hasattr(model, "peft_config")  # a plain model for eval / collect
        with torch.no_grad():
            assert torch.allclose(model.eval()(input_ids=IDS).logits, want, atol=1e-5)
        assert tok.pad_token is not None
        shutil.rmtree(root / "model" / "merged", ignore_errors=True)


def test_an_adapter_whose_base_is_gone_is_an_input_error_naming_the_field(saved_adapter):
    import shutil

    from saferlhf.runners.common.models import load_policy

    root, _ = saved_adapter
    shutil.rmtree(root / "model" / "merged")
    shutil.rmtree(root / "base")
    with pytest.raises(InvalidInputError, match="was trained on .*base, which does not exist"
                       ) as err:
        load_policy(root / "model", field="actor_path")
    assert err.value.field == "actor_path"


# -- checkpoints -------------------------------------------------------------------------------


def test_a_lora_checkpoint_holds_only_trainable_weights_and_restores_them():
    from saferlhf.runners.common.checkpoint import ResumeError, model_state, restore_model_state

    model = add_lora(tiny("gpt2"), LoraSpec(r=2), field="f")
    perturb_adapters(model)
    state = model_state(model)
    assert state and all(".lora_" in k for k in state)  # GPT-2 has no persistent buffers
    fresh = add_lora(tiny("gpt2"), LoraSpec(r=2), field="f")
    restore_model_state(fresh, state, "actor")
    assert all(torch.equal(fresh.state_dict()[k], v) for k, v in state.items())
    with pytest.raises(ResumeError, match="lacks"):
        restore_model_state(add_lora(tiny("gpt2"), LoraSpec(r=2), field="f"),
                            {k: v for k, v in state.items() if "h.0." not in k}, "actor")
    with pytest.raises(ResumeError, match="cannot resume actor"):  # another rank: shapes differ
        restore_model_state(add_lora(tiny("gpt2"), LoraSpec(r=4), field="f"), state, "actor")
    full = tiny("gpt2")
    assert model_state(full).keys() == full.state_dict().keys()  # full fine-tune: everything


@pytest.mark.parametrize("path", ["builtin:tiny-gpt2", "builtin:tiny-llama"])
def test_the_services_builtin_layer_table_matches_the_builtin_models(path):
    """The service checks LoRA targets of builtin models at submit time from this table."""
    from saferlhf.runners.common.config import BUILTIN_LORA_LAYERS, ModelSpec
    from saferlhf.runners.common.lora import adaptable_layers
    from saferlhf.runners.common.models import build_policy
    from saferlhf.runners.ppo_lag.tiny import synthetic_texts

    model, _ = build_policy(ModelSpec(path=path, n_layer=1, n_embd=16, n_head=2,
                                      vocab_size=280), synthetic_texts(40))
    names = {n.rsplit(".", 1)[-1] for n in adaptable_layers(model)}
    assert set(BUILTIN_LORA_LAYERS[path]) == names - {"lm_head"}
    with pytest.raises(InvalidInputError, match="tied"):  # why lm_head is not in the table
        resolve_target_modules(model, LoraSpec(target_modules=["lm_head"]), field="f")
