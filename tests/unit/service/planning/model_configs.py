"""config.json files of published models for the memory planner's tests (no weights, no hub).

The field values are those of the models' published config.json files on the Hugging Face hub
(the repo named in each entry); transformers' own config classes write them, so the files have the
real layout. `LLAMA_7B` is also transformers' LlamaConfig default.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

LLAMA_7B = {  # huggyllama/llama-7b
    "model_type": "llama", "hidden_size": 4096, "intermediate_size": 11008,
    "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
    "vocab_size": 32000, "max_position_embeddings": 2048, "tie_word_embeddings": False,
}
LLAMA2_70B = {  # meta-llama/Llama-2-70b-hf
    "model_type": "llama", "hidden_size": 8192, "intermediate_size": 28672,
    "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
    "vocab_size": 32000, "max_position_embeddings": 4096, "tie_word_embeddings": False,
}
QWEN25_05B = {  # Qwen/Qwen2.5-0.5B
    "model_type": "qwen2", "hidden_size": 896, "intermediate_size": 4864,
    "num_hidden_layers": 24, "num_attention_heads": 14, "num_key_value_heads": 2,
    "vocab_size": 151936, "max_position_embeddings": 32768, "tie_word_embeddings": True,
}
GPT2_SMALL = {  # openai-community/gpt2
    "model_type": "gpt2", "n_embd": 768, "n_layer": 12, "n_head": 12, "vocab_size": 50257,
    "n_positions": 1024,
}


def hf_config(fields: dict[str, Any]):
    """The transformers config object for `fields`."""
    from transformers import AutoConfig

    rest = {k: v for k, v in fields.items() if k != "model_type"}
    return AutoConfig.for_model(fields["model_type"], **rest)


def write_model_folder(folder: Path, fields: dict[str, Any]) -> Path:
    """A model folder with only config.json, written by transformers (`save_pretrained`)."""
    hf_config(fields).save_pretrained(folder)
    assert json.loads((folder / "config.json").read_text())["model_type"] == fields["model_type"]
    return folder


def meta_model(fields: dict[str, Any], *, score: bool = False):
    """The real module on the meta device (no memory): a causal LM, or the runners' score model
    (backbone without LM head + Linear(h, 1))."""
    import torch
    from transformers import AutoModel, AutoModelForCausalLM

    config = hf_config(fields)
    with torch.device("meta"):
        if not score:
            return AutoModelForCausalLM.from_config(config)
        from saferlhf.runners.common.score_model import ScoreModel

        return ScoreModel(AutoModel.from_config(config))


def parameter_count(model) -> int:
    """Distinct parameters (a tied embedding counts once), as DeepSpeed's `model_to_params`."""
    return sum({id(p): p.numel() for p in model.parameters()}.values())
