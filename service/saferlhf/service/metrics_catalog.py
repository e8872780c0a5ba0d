"""Every Prometheus metric the service exports (DESIGN §9) — one table, read by
`saferlhf.service.metrics`
to create them and by the tests that check the dashboard and alert rules name only these.

Naming: prefix `saferlhf_`, base units, ratios in 0–1, `_total` for counters, `_seconds` for
durations. Never the label name `job` (Prometheus's own target label): use `saferlhf_job`.
"""

from __future__ import annotations

from dataclasses import dataclass

TRAIN_LABELS = ("saferlhf_job", "project", "round", "stage")


@dataclass(frozen=True)
class MetricDef:
    name: str
    type: str  # gauge | counter | histogram
    labels: tuple[str, ...]
    help: str
    source: str = ""  # the runner metric key it mirrors, if any


CATALOG: tuple[MetricDef, ...] = (
    # --- training (per job, round, stage); dropped some time after the job ends -------------
    MetricDef("saferlhf_lagrange_multiplier", "gauge", TRAIN_LABELS, "Lagrange multiplier λ.",
              "train/lambda"),
    MetricDef("saferlhf_lagrange_multiplier_max", "gauge", TRAIN_LABELS, "Upper clamp λ_max.",
              "train/lambda_max"),
    MetricDef("saferlhf_episode_cost", "gauge", TRAIN_LABELS,
              "Episode cost J_C: mean cost over the window.", "train/episode_cost"),
    MetricDef("saferlhf_cost_threshold", "gauge", TRAIN_LABELS, "Cost threshold d.",
              "train/threshold"),
    MetricDef("saferlhf_reward", "gauge", TRAIN_LABELS, "Mean reward-model score of rollouts.",
              "train/reward"),
    MetricDef("saferlhf_cost", "gauge", TRAIN_LABELS, "Mean cost-model score of rollouts.",
              "train/cost"),
    MetricDef("saferlhf_kl_divergence", "gauge", TRAIN_LABELS,
              "Per-sequence KL(policy || reference), summed over tokens.", "train/kl_divergence"),
    MetricDef("saferlhf_harmful_ratio", "gauge", TRAIN_LABELS + ("judge",),
              "Fraction of responses judged harmful (judge=train: rollouts with cost > 0).",
              "train/harmful_rate | eval/harmful_rate/<judge>"),
    MetricDef("saferlhf_helpfulness_ratio", "gauge", TRAIN_LABELS,
              "Mean exact helpfulness on benign prompts (synthetic benchmark).",
              "eval/helpfulness"),
    MetricDef("saferlhf_over_refusal_ratio", "gauge", TRAIN_LABELS,
              "Refusal rate on safe prompts.", "eval/over_refusal_rate"),
    MetricDef("saferlhf_category_harmful_ratio", "gauge", TRAIN_LABELS + ("judge", "category"),
              "Harmful rate of the latest evaluated version per harm category (category: the "
              "bounded vocabulary of saferlhf.runners.common.harm_categories).",
              "eval/category_harmful_rate/<judge>/<category>"),
    MetricDef("saferlhf_harmful_prompt_ratio", "gauge", TRAIN_LABELS + ("judge",),
              "Tail: share of evaluation prompts with at least one sample judged harmful.",
              "eval/prompt_harmful_share/<judge>"),
    MetricDef("saferlhf_eval_cost_p95", "gauge", TRAIN_LABELS,
              "Tail: 95th percentile of the cost-model score on evaluation answers.",
              "eval/cost_p95"),
    MetricDef("saferlhf_round_worsened", "gauge", TRAIN_LABELS,
              "1 when the latest version is worse than the one before (harm up or helpfulness "
              "down; docs/evaluation.md), else 0.", "eval/worsened"),
    MetricDef("saferlhf_train_step", "gauge", TRAIN_LABELS, "Last reported training step.", "step"),
    MetricDef("saferlhf_stage_progress_ratio", "gauge", TRAIN_LABELS, "step / total_steps.",
              "progress"),
    MetricDef("saferlhf_preference_accuracy_ratio", "gauge", TRAIN_LABELS,
              "Held-out pair accuracy of the reward or cost model.", "eval/accuracy"),
    MetricDef("saferlhf_cost_sign_accuracy_ratio", "gauge", TRAIN_LABELS,
              "Held-out cost-sign accuracy of the cost model.", "eval/accuracy_sign"),
    MetricDef("saferlhf_guard_active", "gauge", TRAIN_LABELS + ("guard",),
              "1 while a safety-budget guard fires (VacuousThreshold, LambdaPinned, "
              "LambdaBelowBreakEven).", "guard/<name>"),
    MetricDef("saferlhf_rollout_weight_sync_seconds", "gauge", TRAIN_LABELS,
              "Wall time of the last copy of the actor's weights into the vLLM rollout engine "
              "(PPO-Lag, after each iteration's updates).", "rollout/weight_sync_seconds"),
    MetricDef("saferlhf_stage_last_event_timestamp_seconds", "gauge", TRAIN_LABELS,
              "Unix time of the stage's last runner event (stall alerts)."),
    # --- control plane -----------------------------------------------------------------------
    MetricDef("saferlhf_jobs", "gauge", ("project", "state"),
              "Jobs by state (computed from the store at scrape time)."),
    MetricDef("saferlhf_jobs_finished_total", "counter", ("project", "state"),
              "Jobs that reached a terminal state."),
    MetricDef("saferlhf_stage_attempts_total", "counter", ("kind", "outcome"),
              "Stage attempts by runner kind and outcome."),
    MetricDef("saferlhf_stage_duration_seconds", "histogram", ("kind",),
              "Wall time of finished stage attempts."),
    MetricDef("saferlhf_stage_retries_total", "counter", ("kind", "reason"),
              "Retries by failure class."),
    MetricDef("saferlhf_events_received_total", "counter", ("source",),
              "Runner events stored (source=stream|file)."),
    MetricDef("saferlhf_grpc_requests_total", "counter", ("method", "code"),
              "gRPC requests by method and status code."),
    MetricDef("saferlhf_grpc_request_duration_seconds", "histogram", ("method",),
              "gRPC request latency."),
)

BY_NAME = {m.name: m for m in CATALOG}


def exported_series_names() -> set[str]:
    """Names as they appear in a scrape (histograms add _bucket/_sum/_count; counters _total)."""
    out: set[str] = set()
    for m in CATALOG:
        out.add(m.name)
        if m.type == "histogram":
            out |= {m.name + "_bucket", m.name + "_sum", m.name + "_count"}
        if m.type == "counter" and m.name.endswith("_total"):
            out.add(m.name[: -len("_total")] + "_created")
    return out
