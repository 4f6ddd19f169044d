"""EvalCallback: evaluations inside a training run, from the step-0 baseline to the end.

Schedule: every configured evaluator at step 0 (before the first step) and at the end; forward-pass evaluators
every eval.every_steps; generation-based evaluators every eval.generate_every-th evaluation. Runs on the main
process only. Each score goes to the metric stream with its n and 95% CI, per-item rows and per-item scores
to run.dir/eval/. Every record after step 0 also carries its *paired* change from step 0 on the same items
(`delta`, `delta_ci_low`, `delta_ci_high`, `delta_n`: 95% paired percentile bootstrap, stats.paired_change).
Warnings fire on a real decline only (stats.decline); a failing evaluator is an event, not a crash.
"""
from __future__ import annotations

from transformers import TrainerCallback

from ..config import GENERATION_EVALUATORS, RunConfig
from .stats import decline, paired_change
from .suite import Suite, items_path, load_scores, scores_path, write_items, write_scores

MEMORIZATION_RISE_PCT = 10.0  # held-out domain ppl this far above its best (and significantly) is a sign

# metric -> (threshold field of EvalConfig, what the warning says, unit of the threshold)
WARN_RULES = {
    "eval/replay_ppl": ("warn_general_loss_pct", "general (replay) loss ln(ppl) up", "%"),
    "eval/if_prompt_strict": ("warn_if_drop_points", "IFEval prompt-level strict down", " points"),
    "eval/coherence_distinct2": ("warn_distinct2_drop", "coherence distinct-2 down", ""),
}


class EvalCallback(TrainerCallback):
    """Runs cfg.eval.evaluators on kwargs['model'] at step 0, on schedule and at the end."""

    def __init__(self, cfg: RunConfig, run, writer, tokenizer, tokens_per_step: int):
        self.suite = Suite(cfg, reference_path=run.dir / "eval" / "general_kl_reference.pt")
        cfg = self.suite.cfg  # `auto` evaluation sources resolved (evaluators without data dropped)
        self.cfg, self.ecfg, self.run, self.writer = cfg, cfg.eval, run, writer
        self.tokenizer, self.tokens_per_step = tokenizer, tokens_per_step
        self.names = list(cfg.eval.evaluators)
        self.baseline: dict[str, tuple[dict, str]] = {}  # metric -> step-0 (items, kind), for paired changes
        self.done: dict[int, set[str]] = {}
        self.last_ok_step = 0
        self._round = 0
        self._best_domain: tuple[int, float, dict] | None = None  # (step, ppl, items) of the lowest domain_ppl
        self._memorization_told = False
        self.items_now: dict[str, dict] = {}

    # --- hooks -------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or not self.names:
            return
        if state.global_step == 0:
            self.evaluate(model, 0, self.names, control)  # the baseline every later number is compared with
        else:  # resumed: the step-0 items are on disk
            self.baseline = load_scores(self.run.dir / "eval", 0)
            self.last_ok_step = state.global_step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if not state.is_world_process_zero or step % self.ecfg.every_steps:
            return
        with_generation = (step // self.ecfg.every_steps) % self.ecfg.generate_every == 0
        names = [n for n in self.names if with_generation or n not in GENERATION_EVALUATORS]
        if names:
            self.evaluate(model, step, names, control)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if not state.is_world_process_zero or step == 0 or self.run.status().get("stop_requested"):
            return  # a user's stop should not wait for minutes of generation
        remaining = [n for n in self.names if n not in self.done.get(step, set())]
        if remaining:
            self.evaluate(model, step, remaining, control)

    # --- one evaluation ----------------------------------------------------------------------
    def evaluate(self, model, step: int, names: list[str], control=None) -> dict[str, dict]:
        """Run `names` now; write scores (with paired changes), per-item rows, errors and warnings.
        Returns metric -> the record written."""
        self._round += 1
        tokens = step * self.tokens_per_step
        written: dict[str, dict] = {}
        self.items_now: dict[str, dict] = {}  # this evaluation's items per metric
        out_dir = self.run.dir / "eval"
        for name in names:
            try:
                scores, rows = self.suite.run(name, model, self.tokenizer, self._round)
                write_items(items_path(out_dir, name, step), rows)
                write_scores(scores_path(out_dir, name, step), scores)
            except Exception as e:  # noqa: BLE001 - an evaluator must never kill the training run
                self.writer.event("event/eval_error", f"{name} failed at step {step}: {type(e).__name__}: {e}",
                                  step, tokens, evaluator=name)
                continue
            for s in scores:
                self.items_now[s.name] = s.items
                extra = dict(s.extra)
                if step == 0:
                    self.baseline[s.name] = (s.items, s.kind)
                elif s.name in self.baseline:
                    extra.update(paired_change(s.items, *self.baseline[s.name]) or {})
                written[s.name] = self.writer.write(s.name, s.value, step, tokens, n=s.n, ci_low=s.ci_low,
                                                    ci_high=s.ci_high, evaluator=name, **extra)
        self.done.setdefault(step, set()).update(names)
        if step == 0:
            self._memorization_sign(written.get("eval/domain_ppl"), step, tokens)
            return written
        self._memorization_sign(written.get("eval/domain_ppl"), step, tokens)
        breaches = self.breaches(written)
        for metric, rec, message in breaches:
            extra = {"metric": metric, "baseline": rec["value"] - rec["delta"], "value_now": rec["value"],
                     "delta": rec["delta"], "delta_ci_low": rec["delta_ci_low"],
                     "delta_ci_high": rec["delta_ci_high"], "last_ok_step": self.last_ok_step}
            if self.ecfg.stop_on_warning and control is not None:
                control.should_training_stop = True
                keep = self._checkpoint_at_or_before(self.last_ok_step)
                extra["keep_checkpoint"] = keep
                message += (f"; stopping (eval.stop_on_warning): last evaluation without a breach was step "
                            f"{self.last_ok_step}, keep {keep or 'the starting model'}")
            self.writer.event("event/warning", message, step, tokens, **extra)
        if not breaches:
            self.last_ok_step = step
        return written

    def _memorization_sign(self, rec: dict | None, step: int, tokens: int) -> None:
        """Held-out paraphrase perplexity rising significantly above its best while training goes on: the
        model is learning the documents' wording rather than more of their facts (Jiang et al. 2024). Told once."""
        items = self.items_now.get("eval/domain_ppl") if rec else None
        if rec is None or items is None:
            return
        best = self._best_domain
        if best is None or rec["value"] < best[1]:
            self._best_domain = (step, rec["value"], items)
            return
        if self._memorization_told:
            return
        change = paired_change(items, best[2], "exp")
        rise = 100 * (rec["value"] / best[1] - 1)
        if change and change["delta_ci_low"] > 0 and rise >= MEMORIZATION_RISE_PCT:
            self._memorization_told = True
            self.writer.event(
                "event/warning", f"memorization sign: held-out domain perplexity {best[1]:.4g} at step {best[0]} -> "
                f"{rec['value']:.4g} now (+{rise:.0f}%, paired 95% CI of the change {change['delta_ci_low']:+.3g} .. "
                f"{change['delta_ci_high']:+.3g}) while training continues: the documents' wording is being "
                f"memorized; fewer passes, a lower LR or the step-{best[0]} checkpoint may keep more", step, tokens,
                metric="eval/domain_ppl", kind="memorization", best_step=best[0], best_value=best[1],
                value_now=rec["value"], **change)

    def breaches(self, records: dict[str, dict]) -> list[tuple[str, dict, str]]:
        """(metric, record, message) for each real decline (stats.decline) beyond its threshold."""
        out = []
        for metric, (field, label, unit) in WARN_RULES.items():
            rec = records.get(metric)
            if rec is None:
                continue
            threshold = getattr(self.ecfg, field)
            fires, size = decline(metric, rec, threshold)
            if not fires:
                continue
            base = rec["value"] - rec["delta"]
            out.append((metric, rec, f"{label} {size:.3g}{unit} vs step 0 on the same {rec['delta_n']} items "
                        f"({base:.4g} -> {rec['value']:.4g}, paired 95% CI of the change {rec['delta_ci_low']:+.3g} .. "
                        f"{rec['delta_ci_high']:+.3g}; threshold eval.{field}={threshold:g})"))
        return out

    def _checkpoint_at_or_before(self, step: int) -> str | None:
        from ..runs.checkpoints import checkpoint_step, list_checkpoints

        ok = [p for p in list_checkpoints(self.run.checkpoints_dir) if checkpoint_step(p) <= step]
        return str(ok[-1]) if ok else None
