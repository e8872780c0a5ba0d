"""The synthetic safety benchmark: seeded benign/harmful requests in a small English-like
vocabulary, SFT-like responses, and exact helpfulness/harm functions (docs/synthetic_benchmark.md).
Importable without torch."""

from saferlhf.runners.synthetic.judge import Judgement, find_task, judge
from saferlhf.runners.synthetic.oracle import harm_level, oracle_label_pairs, write_pku_jsonl
from saferlhf.runners.synthetic.splits import (
    DEFAULT_SIZES,
    SPLITS,
    dataset,
    eval_prompts,
    sample_pair,
)
from saferlhf.runners.synthetic.vocab import LEXICON

__all__ = [
    "DEFAULT_SIZES", "LEXICON", "SPLITS", "Judgement", "dataset", "eval_prompts", "find_task",
    "harm_level", "judge", "oracle_label_pairs", "sample_pair", "write_pku_jsonl",
]
