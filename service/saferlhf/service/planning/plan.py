"""Spec → plan: the DAG of stage runs for every round, each with its rendered stage.json.

Round 1:   sft → (reward ∥ cost) → ppo_lag → eval
Round r≥2: collect (policy of round r−1) → (reward ∥ cost) on the base data plus every labelled
           set collected in rounds 2..r, initialised from the SFT model as the reference does →
           ppo_lag (actor = round r−1's policy, reference = the SFT model, always) → eval
           (policies: sft and every round so far, so the arena compares versions and the
           round report shows the SFT model as round 0 beside every round, measured together).
Offline (one round; `offline` is safe_dpo or dpo, trained from the SFT model):
           sft → offline → eval
Escalation (cheap first): sft → offline → evaluate_<offline> ─ gate `escalate` ─►
           (reward ∥ cost) → ppo_lag (actor and reference = the offline policy, so the KL term
           keeps what it learnt instead of pulling back towards SFT) → eval. Every stage after
           the gate depends on the screening evaluation; when its gate passes they are skipped
           as not needed, when it misses (ESCALATED) they run.
A stage given with `use:` is planned as skipped: its path stands in for its output downstream.
Pure: no I/O; stage.json content is returned, the scheduler writes it.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

from saferlhf.runners.common.config import (
    BackendSpec,
    CollectParams,
    CostParams,
    DataSource,
    DistributedSpec,
    PolicyVersion,
    RewardParams,
)
from saferlhf.service.planning.dag import PlanError, topological_order
from saferlhf.service.planning.render import params_of, render_config
from saferlhf.service.spec.models import (
    RUNNER_KIND,
    JobSpec,
    UsedStage,
    escalation_value,
    offline_stage,
)
from saferlhf.service.state.types import ESCALATE, Resources

LABELLED_FILE = "labelled.jsonl"  # collect's output (PKU-SafeRLHF format)
IMPORTED_LABELS_FILE = "imported_labels.jsonl"  # where ImportLabels puts a `labeler: import` file


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    backoff_seconds: float = 30.0
    backoff_max_seconds: float = 600.0

    def delay_seconds(self, failed_attempts: int) -> float:
        """Backoff before the next attempt: backoff · 2^(failed−1), capped."""
        exponent = max(failed_attempts - 1, 0)
        return min(self.backoff_seconds * 2.0 ** min(exponent, 30), self.backoff_max_seconds)


@dataclass(frozen=True)
class PlannedStage:
    id: str  # "r<round>/<kind>", e.g. "r2/reward"
    round: int
    kind: str  # runner kind: sft | reward | cost | ppo_lag | evaluate | collect
    depends_on: tuple[str, ...]
    config: dict[str, Any]  # stage.json content ({} when skipped)
    output_dir: str  # for a skipped stage: the `use:` path
    resources: Resources
    skipped_with: str | None = None  # the `use:` path
    retries: RetryPolicy = RetryPolicy()
    timeout_minutes: float | None = None
    stall_minutes: float | None = None


@dataclass(frozen=True)
class PlannedGate:
    id: str  # "<stage id>/<gate index>", e.g. "r1/cost/0"; "<stage id>/escalate"
    after_stage: str
    metric: str
    op: str
    value: float
    on_fail: str = "fail"  # fail | pause | escalate


@dataclass(frozen=True)
class Plan:
    stages: tuple[PlannedStage, ...]  # in topological order
    gates: tuple[PlannedGate, ...]

    def stage(self, stage_id: str) -> PlannedStage:
        for stage in self.stages:
            if stage.id == stage_id:
                return stage
        raise KeyError(stage_id)


def derive_seed(seed: int, stage_id: str) -> int:
    """A per-stage seed in [0, 2³¹) that depends only on the spec seed and the stage id."""
    digest = hashlib.sha256(f"{seed}:{stage_id}".encode()).hexdigest()
    return int(digest[:8], 16) % 2**31


def job_root(spec: JobSpec, *, job_id: str, artifacts_root: str) -> str:
    """Where this job's stage outputs go: `<base>/<project>/<job id>`. The base is the spec's
    `file://` directory, or `artifacts_root` (+ the prefix of a pvc:// or s3:// URI; the
    executor mounts or syncs that storage there)."""
    uri = spec.spec.artifacts.uri
    base = artifacts_root
    if uri and uri.startswith("file://"):
        base = uri.removeprefix("file://")
    elif uri:
        prefix = uri.split("://", 1)[1].partition("/")[2].strip("/")
        base = os.path.join(artifacts_root, prefix) if prefix else artifacts_root
    return os.path.join(base, spec.metadata.project, job_id)


def effective_resources(job: JobSpec, stage: Any) -> Resources:
    """A stage's resources: `spec.defaults.resources`, overridden field by field by its own
    (the rule lives on the spec, `Spec.stage_resources`, so submit-time checks share it)."""
    return Resources(**job.spec.stage_resources(stage).model_dump())


def effective_backend(job: JobSpec, stage: Any) -> BackendSpec:
    """A stage's backend: the defaults' (`deepspeed:` selects DeepSpeed), then the stage's
    (`Spec.stage_backend`)."""
    return job.spec.stage_backend(stage)


def plan_job(spec: JobSpec, *, job_id: str, artifacts_root: str) -> Plan:
    """Plan every stage of every round; raises PlanError only on a planner bug."""
    root = job_root(spec, job_id=job_id, artifacts_root=artifacts_root)
    return _Planner(spec, job_id, root).run()


class _Planner:
    def __init__(self, job: JobSpec, job_id: str, root: str) -> None:
        self.job, self.spec, self.root = job, job.spec, root
        self.stages: dict[str, PlannedStage] = {}
        self.extra_gates: list[PlannedGate] = []  # the escalation gate
        # what each spec stage contributes to every round's run, derived once per plan
        self._derived: dict[tuple[str, int], Any] = {}

    def derived(self, what: str, stage: Any, make: Any) -> Any:
        """`make(stage)`, computed once per spec stage (a stage runs in every round)."""
        key = (what, id(stage))
        if key not in self._derived:
            self._derived[key] = make(stage)
        return self._derived[key]

    # --- helpers --------------------------------------------------------------------------
    def out_dir(self, r: int, name: str) -> str:
        return os.path.join(self.root, f"r{r}", name)

    def model_of(self, stage_id: str) -> str:
        """Model folder a (possibly skipped) stage produced."""
        stage = self.stages[stage_id]
        return stage.skipped_with or os.path.join(stage.output_dir, "model")

    def resources(self, stage: Any) -> Resources:
        return effective_resources(self.job, stage)

    def params(self, stage: Any) -> dict[str, Any]:
        """The stage's runner parameters (a fresh top-level dict: callers replace keys)."""
        return dict(self.derived("params", stage, _params))

    def retry_policy(self, stage: Any) -> RetryPolicy:
        retries = (stage.retries if stage is not None and stage.retries else None) \
            or self.spec.retries
        return RetryPolicy(**retries.model_dump())

    def backend(self, stage: Any) -> BackendSpec:
        return effective_backend(self.job, stage)

    def add(self, r: int, name: str, stage: Any, params: dict[str, Any],
            inputs: dict[str, Any], depends_on: list[str], suffix: str = "") -> str:
        """Plan one stage `r<r>/<kind><suffix>` (a suffix tells two stages of one kind apart)."""
        kind = RUNNER_KIND[name]
        stage_id = f"r{r}/{kind}{suffix}"
        resources = self.derived("resources", stage, self.resources)
        common: dict[str, Any] = dict(
            id=stage_id, round=r, kind=kind, depends_on=tuple(dict.fromkeys(depends_on)),
            resources=resources, retries=self.derived("retries", stage, self.retry_policy),
            timeout_minutes=(stage.timeout_minutes if stage else None)
            or self.spec.defaults.timeout_minutes,
            stall_minutes=(stage.stall_minutes if stage else None)
            or self.spec.defaults.stall_minutes,
        )
        if isinstance(stage, UsedStage) and r == 1:
            self.stages[stage_id] = PlannedStage(
                **common, config={}, output_dir=stage.use, skipped_with=stage.use)
            return stage_id
        output_dir = self.out_dir(r, kind + suffix)
        config = render_config(
            kind, params, output_dir=output_dir, seed=derive_seed(self.spec.seed, stage_id),
            backend=self.derived("backend", stage, self.backend),
            distributed=DistributedSpec(nnodes=resources.nodes,
                                        nproc_per_node=resources.nproc_per_node),
            job=self.job.metadata.name, round=r, inputs=inputs)
        self.stages[stage_id] = PlannedStage(**common, config=config, output_dir=output_dir)
        return stage_id

    # --- rounds ---------------------------------------------------------------------------
    def run(self) -> Plan:
        stages = self.spec.stages
        sft = self.add(1, "sft", stages.sft, self.params(stages.sft),
                       {"model": self.spec.model.model_dump()}, [])
        offline = offline_stage(stages)
        if offline is not None:
            self.offline(offline, sft)
        else:
            self.rounds(sft)
        order = topological_order({s.id: s.depends_on for s in self.stages.values()})
        return Plan(stages=tuple(self.stages[i] for i in order),
                    gates=tuple(self.gates() + self.extra_gates))

    def offline(self, name: str, sft: str) -> None:
        """sft → safe_dpo | dpo → eval, or with `escalation` the screened chain (module doc)."""
        stage = getattr(self.spec.stages, name)
        policy = self.add(1, name, stage, _params(stage), {"policy_path": self.model_of(sft)},
                          [sft])
        policies = [("sft", sft), (name, policy)]
        if self.spec.escalation is None:
            if self.spec.stages.eval is not None:
                self.evaluate(1, policies, None)
            return
        if self.spec.stages.eval is None:
            raise PlanError("escalation without eval (load_spec checks this)")
        screen = self.evaluate(1, policies, None, suffix=f"_{name}")
        bound = escalation_value(self.spec)
        if bound is None:
            raise PlanError("escalation without a bound (load_spec checks this)")
        escalation = self.spec.escalation
        self.extra_gates.append(PlannedGate(
            id=f"{screen}/{ESCALATE}", after_stage=screen, metric=escalation.metric,
            op=escalation.op, value=bound, on_fail=ESCALATE))
        scorers = {n: self.score_model(1, n, sft, [], extra=[screen]) for n in ("reward", "cost")}
        ppo = self.ppo_lag(1, policy, policy, scorers, [screen])
        self.evaluate(1, [*policies, ("round-1", ppo)], scorers)

    def rounds(self, sft: str) -> None:
        stages = self.spec.stages
        policies = [("sft", sft)]  # every eval answers with all of these: round 0 = sft
        collected: list[str] = []
        for r in range(1, self.spec.rounds.count + 1):
            upstream = [sft]
            if r >= 2:
                collect = self.collect(r, policies[-1][1])
                collected.append(collect)
                upstream.append(collect)
            scorers = {n: self.score_model(r, n, sft, collected) for n in ("reward", "cost")}
            policy = self.ppo_lag(r, policies[-1][1], sft, scorers, upstream)
            policies.append((f"round-{r}", policy))
            if stages.eval is not None:
                self.evaluate(r, policies, scorers)

    def collect(self, r: int, policy: str) -> str:
        rounds = self.spec.rounds.collect
        prompts = rounds.prompts
        if prompts is None:
            ppo = self.spec.stages.ppo_lag
            if ppo is None or isinstance(ppo, UsedStage):
                raise PlanError("collect needs prompts (load_spec checks this)")
            prompts = ppo.prompts
        settings = self.spec.stages.collect
        generation = params_of(settings) if settings is not None else {}
        params = CollectParams(
            prompts=prompts, samples_per_prompt=rounds.samples_per_prompt,
            labeler=rounds.labeler, label_noise=rounds.label_noise, **generation,
        ).model_dump()
        output_dir = self.out_dir(r, "collect")
        inputs: dict[str, Any] = {"policy_path": self.model_of(policy)}
        if rounds.labeler == "import":
            inputs["labels_path"] = os.path.join(output_dir, IMPORTED_LABELS_FILE)
        return self.add(r, "collect", settings, params, inputs, [policy])

    def score_model(self, r: int, name: str, sft: str, collected: list[str],
                    extra: list[str] | None = None) -> str:
        stage = getattr(self.spec.stages, name)
        labelled = [DataSource(format="pku_saferlhf", path=os.path.join(
            self.stages[c].output_dir, LABELLED_FILE)) for c in collected]
        if isinstance(stage, UsedStage):
            default = RewardParams if name == "reward" else CostParams
            params = default(data=labelled).model_dump() if labelled else {}
        else:
            params = self.params(stage)
            params["data"] = [*stage.data, *labelled]
        return self.add(r, name, stage, params, {"policy_path": self.model_of(sft)},
                        [sft, *collected, *(extra or [])])

    def ppo_lag(self, r: int, actor: str, reference: str, scorers: dict[str, str],
                upstream: list[str]) -> str:
        stage = self.spec.stages.ppo_lag
        if isinstance(stage, UsedStage) and r >= 2:
            raise PlanError("ppo_lag `use:` with several rounds (load_spec checks this)")
        inputs = {
            "actor_path": self.model_of(actor), "reference_path": self.model_of(reference),
            "reward_model_path": self.model_of(scorers["reward"]),
            "cost_model_path": self.model_of(scorers["cost"]),
        }
        return self.add(r, "ppo_lag", stage, self.params(stage), inputs,
                        [actor, *scorers.values(), *upstream])

    def evaluate(self, r: int, policies: list[tuple[str, str]], scorers: dict[str, str] | None,
                 suffix: str = "") -> str:
        """An eval stage over `policies`; without score models (`scorers` None: the offline
        forms before any RM/CM exists) the cost_model judge is left out."""
        stage = self.spec.stages.eval
        params = self.params(stage)
        inputs: dict[str, Any] = {
            # round: the report's row — 0 = the starting model, then each version in order
            "policies": [PolicyVersion(name=name, path=self.model_of(sid), round=i).model_dump()
                         for i, (name, sid) in enumerate(policies)]}
        if scorers is not None:
            inputs["reward_model_path"] = self.model_of(scorers["reward"])
            inputs["cost_model_path"] = self.model_of(scorers["cost"])
        else:  # no cost model exists yet (an offline stage's screening evaluation)
            params["judges"] = [j for j in params["judges"] if _judge_kind(j) != "cost_model"]
        return self.add(r, "eval", stage, params, inputs,
                        [sid for _, sid in policies] + list((scorers or {}).values()), suffix)

    def gates(self) -> list[PlannedGate]:
        out = []
        for index, gate in enumerate(self.spec.gates):
            kind = RUNNER_KIND[gate.after]
            for r in range(1, self.spec.rounds.count + 1):
                stage = self.stages.get(f"r{r}/{kind}")
                if stage is None or stage.skipped_with or (gate.rounds and r not in gate.rounds):
                    continue
                out.append(PlannedGate(id=f"{stage.id}/{index}", after_stage=stage.id,
                                       metric=gate.metric, op=gate.op, value=gate.value,
                                       on_fail=gate.on_fail))
        return out


def _params(stage: Any) -> dict[str, Any]:
    return {} if isinstance(stage, UsedStage) else params_of(stage)


def _judge_kind(judge: Any) -> str:
    """A judge entry of the eval params: a bare kind ("keyword") or a typed judge's dict."""
    return str(judge.get("kind")) if isinstance(judge, dict) else str(judge)
