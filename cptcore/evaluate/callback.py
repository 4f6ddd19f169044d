"""EvalCallback: evaluations inside a training run, from the step-0 baseline to the end.

Schedule: every configured evaluator at step 0 (before the first step) and at the end; perplexities every
eval.every_steps; generation-based evaluators every eval.generate_every-th evaluation. Runs on the main
process only. Each score goes to the metric stream with its n and 95% CI, per-item rows to run.dir/eval/.
Warning signs are compared with the step-0 baseline; a failing evaluator is an event, not a crash.
"""
from __future__ import annotations

from transformers import TrainerCallback

from ..config import GENERATION_EVALUATORS, RunConfig
from .stats import loss_rise_pct
from .suite import Suite, items_path, write_items


class EvalCallback(TrainerCallback):
    """Runs cfg.eval.evaluators on kwargs['model'] at step 0, on schedule and at the end."""

    def __init__(self, cfg: RunConfig, run, writer, tokenizer, tokens_per_step: int):
        self.cfg, self.ecfg, self.run, self.writer = cfg, cfg.eval, run, writer
        self.tokenizer, self.tokens_per_step = tokenizer, tokens_per_step
        self.suite = Suite(cfg)
        self.names = list(cfg.eval.evaluators)
        self.baseline: dict[str, float] = {}
        self.done: dict[int, set[str]] = {}
        self.last_ok_step = 0
        self._round = 0

    # --- hooks -------------------------------------------------------------------------------
    def on_train_begin(self, args, state, control, model=None, **kwargs):
        if not state.is_world_process_zero or not self.names:
            return
        if state.global_step == 0:
            self.evaluate(model, 0, self.names, control)  # the baseline every later number is compared with
        else:  # resumed: the baseline is already in the stream
            self.baseline = self._stream_baseline()
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
    def evaluate(self, model, step: int, names: list[str], control=None) -> dict[str, float]:
        """Run `names` now; write scores, per-item rows, errors and warnings. Returns metric -> value."""
        self._round += 1
        tokens = step * self.tokens_per_step
        values: dict[str, float] = {}
        for name in names:
            try:
                scores, rows = self.suite.run(name, model, self.tokenizer, self._round)
                write_items(items_path(self.run.dir / "eval", name, step), rows)
            except Exception as e:  # noqa: BLE001 - an evaluator must never kill the training run
                self.writer.event("event/eval_error", f"{name} failed at step {step}: {type(e).__name__}: {e}",
                                  step, tokens, evaluator=name)
                continue
            for s in scores:
                self.writer.write(s.name, s.value, step, tokens, n=s.n, ci_low=s.ci_low, ci_high=s.ci_high,
                                  evaluator=name, **s.extra)
                values[s.name] = s.value
        self.done.setdefault(step, set()).update(names)
        if step == 0:
            self.baseline.update(values)
            return values
        breaches = self.breaches(values)
        for metric, base, now, message in breaches:
            extra = {"metric": metric, "baseline": base, "value_now": now, "last_ok_step": self.last_ok_step}
            if self.ecfg.stop_on_warning and control is not None:
                control.should_training_stop = True
                keep = self._checkpoint_at_or_before(self.last_ok_step)
                extra["keep_checkpoint"] = keep
                message += (f"; stopping (eval.stop_on_warning): last evaluation without a breach was step "
                            f"{self.last_ok_step}, keep {keep or 'the starting model'}")
            self.writer.event("event/warning", message, step, tokens, **extra)
        if not breaches:
            self.last_ok_step = step
        return values

    def breaches(self, values: dict[str, float]) -> list[tuple[str, float, float, str]]:
        """(metric, baseline, now, message) for each warning sign beyond its threshold."""
        e, base, out = self.ecfg, self.baseline, []
        ppl = "eval/replay_ppl"
        if ppl in values and ppl in base:
            rise = loss_rise_pct(values[ppl], base[ppl])
            if rise > e.warn_general_loss_pct:
                out.append((ppl, base[ppl], values[ppl],
                            f"general (replay) loss up {rise:.1f}% vs step 0 (ppl {base[ppl]:.2f} -> "
                            f"{values[ppl]:.2f}; threshold eval.warn_general_loss_pct={e.warn_general_loss_pct:g}%)"))
        m = "eval/if_prompt_strict"
        if m in values and m in base and base[m] - values[m] > e.warn_if_drop_points:
            out.append((m, base[m], values[m],
                        f"IFEval prompt-level strict down {base[m] - values[m]:.1f} points vs step 0 "
                        f"({base[m]:.1f} -> {values[m]:.1f}; threshold eval.warn_if_drop_points="
                        f"{e.warn_if_drop_points:g})"))
        m = "eval/coherence_distinct2"
        if m in values and m in base and base[m] - values[m] > e.warn_distinct2_drop:
            out.append((m, base[m], values[m],
                        f"coherence down: distinct-2 {base[m]:.3f} -> {values[m]:.3f} vs step 0 "
                        f"(threshold eval.warn_distinct2_drop={e.warn_distinct2_drop:g})"))
        return out

    def _checkpoint_at_or_before(self, step: int) -> str | None:
        from ..runs.checkpoints import checkpoint_step, list_checkpoints

        ok = [p for p in list_checkpoints(self.run.checkpoints_dir) if checkpoint_step(p) <= step]
        return str(ok[-1]) if ok else None

    def _stream_baseline(self) -> dict[str, float]:
        from ..runs.metrics import baseline

        return baseline(self.run.read_metrics())
