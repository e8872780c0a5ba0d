"""One harm-category vocabulary that every red-team suite's own categories map to.

Why: each suite labels harm its own way (HarmBench "chemical_biological", StrongREJECT
"Non-violent crimes", JailbreakBench "Malware/Hacking", the Safe RLHF paper "Social Bias",
PKU-SafeRLHF's 19 per-response booleans, XSTest's test types, the synthetic benchmark's six).
Reports compare rounds and suites per category, and the category becomes a Prometheus label, so
the set of values must be small and fixed: `VOCABULARY` below. A dataset's own category is kept
beside it (`source_category` in responses.jsonl and the per-set tables) for audits.

Rules of `harm_category(raw, is_harmful)`:
- a prompt labelled safe (`is_harmful is False`) is `benign`, whatever its raw category;
- no raw category → `uncategorised`;
- a raw category is normalised (lower case, runs of non-alphanumerics → "_") and looked up in
  `_SOURCE_MAP`; an unknown one is `other` (listed by `unmapped` so loaders can say so).
The mapping is ours: where a source category spans two of ours we chose the dominant one, and
the docstring of each entry group says where it came from. Torch-free.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable

# The vocabulary, in a fixed order (reports list categories in this order; a tie between
# categories of one PKU-SafeRLHF row goes to the earlier, more specific one).
VOCABULARY: tuple[str, ...] = (
    "weapons",  # weapons, explosives, chemical / biological / nuclear weapons
    "cybercrime",  # malware, hacking, unauthorised intrusion
    "violence",  # violent crime, physical harm, terrorism, poisoning people
    "self_harm",  # suicide, self-harm, psychological and emotional harm
    "child_safety",  # child sexual exploitation, child abuse
    "sexual",  # sexual and adult content
    "hate",  # hate speech, discrimination, social bias
    "harassment",  # insults, bullying, harassment
    "privacy",  # privacy violations, personal data
    "fraud",  # fraud, scams, deception for gain, economic and white-collar crime
    "crime",  # other non-violent crime: theft, drugs, illegal goods and services, trafficking
    "misinformation",  # disinformation, misleading content, election manipulation
    "intellectual_property",  # copyright and IP violations
    "specialized_advice",  # unqualified medical / legal / financial advice, government decisions
    "unethical",  # immoral or manipulative behaviour, animal abuse, environmental damage
    "other",  # a harmful prompt whose source category is not in the mapping
    "uncategorised",  # the source gives no category
    "benign",  # a prompt labelled safe (XSTest's safe half, benign behaviours, synthetic benign)
)
BENIGN = "benign"
UNCATEGORISED = "uncategorised"
OTHER = "other"

_GROUPS: dict[str, tuple[str, ...]] = {
    "weapons": (
        "weapons", "chemical_biological", "chemical_biological_weapons_drugs",
        "indiscriminate_weapons", "cbrn", "explosives",
    ),
    "cybercrime": (
        "cybercrime", "cybercrime_intrusion", "cybercrime_unauthorized_intrusion",
        "malware_hacking", "malware", "hacking", "cyber", "code_interpreter_abuse",
    ),
    "violence": (
        "violence", "physical_harm", "violent_crimes", "endangering_national_security",
        "endangering_public_health", "poison", "terrorism", "violent_crime",
    ),
    "self_harm": (
        "self_harm", "suicide_self_harm", "suicide_and_self_harm", "psychological_harm",
        "emotional_harm",
    ),
    "child_safety": ("child_sexual_exploitation", "child_abuse", "child_safety"),
    "sexual": (
        "sexual_content", "sexual_adult_content", "pornographic", "sexual", "sex_related_crimes",
        "adult_content",
    ),
    "hate": (
        "hate", "social_bias", "discriminatory_behavior", "hate_harassment_and_discrimination",
        "harassment_discrimination", "discrimination", "hate_speech", "contrast_discr",
    ),
    "harassment": ("harassment", "harassment_bullying", "insult", "insulting_behavior",
                   "bullying", "defamation"),
    "privacy": ("privacy", "privacy_violation", "contrast_privacy"),
    "fraud": (
        "fraud", "fraud_deception", "economic_crime", "white_collar_crime", "economic_harm",
        "financial_crime", "scams",
    ),
    "crime": (
        "crime", "illegal", "illegal_activities", "illegal_goods_and_services",
        "non_violent_crimes", "drugs", "human_trafficking", "theft", "disrupting_public_order",
    ),
    "misinformation": (
        "misinformation", "disinformation", "misinformation_disinformation",
        "disinformation_and_deception", "elections", "misleading_information",
    ),
    "intellectual_property": ("copyright", "copyright_issues", "intellectual_property",
                              "copyright_violations"),
    "specialized_advice": ("expert_advice", "specialized_advice", "government_decision_making"),
    "unethical": (
        "immoral", "unethical", "mental_manipulation", "animal_abuse", "environmental_damage",
        "manipulation",
    ),
    "other": ("harmful", "general_harm", "advbench"),
    "benign": ("benign",),
}
_SOURCE_MAP: dict[str, str] = {raw: ours for ours, raws in _GROUPS.items() for raw in raws}
_NON_ALNUM = re.compile(r"[^a-z0-9]+")


def normalise(raw: str) -> str:
    """`"Hate, harassment and discrimination"` → `"hate_harassment_and_discrimination"`."""
    return _NON_ALNUM.sub("_", raw.strip().lower()).strip("_")


def harm_category(raw: str | None, is_harmful: bool | None = None) -> str:
    """The vocabulary value of a prompt with dataset category `raw` (rules in the docstring)."""
    if is_harmful is False:
        return BENIGN
    if raw is None or not raw.strip():
        return UNCATEGORISED
    return _SOURCE_MAP.get(normalise(raw), OTHER)


def bounded(value: str) -> str:
    """`value` when it is in the vocabulary, else `other` (for labels built from outside data)."""
    return value if value in VOCABULARY else OTHER


def unmapped(raws: Iterable[str | None]) -> list[str]:
    """The distinct non-empty raw categories that fall into `other` by not being mapped."""
    return sorted({r for r in raws if r and r.strip() and normalise(r) not in _SOURCE_MAP})


def top_category(flagged: Iterable[str]) -> str | None:
    """The one raw category to give a prompt that several flags describe (PKU-SafeRLHF marks each
    response with booleans): the vocabulary value flagged most often, ties to the earlier value in
    `VOCABULARY`; returned as the first raw name that maps to it (so the raw label survives)."""
    names = [f for f in flagged if f and f.strip()]
    if not names:
        return None
    counts = Counter(harm_category(n) for n in names)
    order = {c: i for i, c in enumerate(VOCABULARY)}
    best = min(counts, key=lambda c: (-counts[c], order[c]))
    return next(n for n in names if harm_category(n) == best)
