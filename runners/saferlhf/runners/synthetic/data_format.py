"""The synthetic benchmark as a data format (`format: synthetic`), registered under the
`saferlhf.data_formats` entry point (see saferlhf.runners.common.formats). Importable without
torch."""

from __future__ import annotations

from saferlhf.runners.common.config import DataSource
from saferlhf.runners.common.records import Record

# Which record kind each split gives.
SPLIT_KINDS: dict[str, str] = {
    "sft": "supervised",
    "preference": "preference",
    "safety_preference": "safety_preference",
    "safety_labelled_preference": "safety_labelled_preference",
    "prompts": "prompt_only",
    "eval": "prompt_only",
    "calibration": "prompt_only",
}


class SyntheticFormat:
    kinds: tuple[str, ...] = tuple(dict.fromkeys(SPLIT_KINDS.values()))

    def check(self, source: DataSource, kind: str) -> str | None:
        """Is the split one that yields this kind? (Generating rows to check them would cost
        seconds per submit; the split decides the kind.)"""
        split = source.split or ""
        if split not in SPLIT_KINDS:
            return f"unknown synthetic split {split!r}; expected one of {', '.join(SPLIT_KINDS)}"
        if SPLIT_KINDS[split] != kind:
            wanted = " or ".join(s for s, k in SPLIT_KINDS.items() if k == kind)
            return (f"split {split} gives {SPLIT_KINDS[split]} records but this stage needs "
                    f"{kind} records; use split {wanted}")
        return None

    def load(self, source: DataSource, kind: str, seed: int) -> list[Record]:
        from saferlhf.runners.synthetic.splits import dataset

        problem = self.check(source, kind)
        if problem:
            raise ValueError(problem)
        extra = ({"harmful_compliance_rate": source.harmful_compliance_rate}
                 if source.harmful_compliance_rate is not None else {})
        return dataset(source.split or "", size=source.size, seed=seed,
                       label_noise=source.label_noise, **extra)

    def tokenizer_texts(self, source: DataSource) -> list[str]:
        """The benchmark's whole dictionary, one word per text, space-prefixed as inside a
        prompt: a tokenizer trained on the SFT texts alone never sees the words only evaluation
        prompts use and splits them into byte pieces."""
        from saferlhf.runners.synthetic.vocab import LEXICON

        return [f" {word}" for word in LEXICON]


FORMAT = SyntheticFormat()
