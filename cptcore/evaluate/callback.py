"""EvalCallback: evaluations inside a training run, from the step-0 baseline to the end.

Schedule: every configured evaluator at step 0 (before the first step) and at the end; forward-pass evaluators
every eval.every_steps; generation-based evaluators every eval.generate_every-th evaluation. Runs on the main
process only. Each score goes to the metric stream with its n and 95% CI, per-item rows and per-item scores
to run.dir/eval/. Every record after step 0 also carries its *paired* change from step 0 on the same items
(`delta`, `delta_ci_low`, `delta_ci_high`, `delta_n`: 95% paired percentile bootstrap, stats.paired_change).
Warnings fire on a real decline only (stats.decline); a failing evaluator is an event, not a crash.
While an evaluation runs, its progress (evaluator, items done of total, step, phase) goes to status.json's
`evaluating` field (EvalProgress, supervise.write_eval_status), and each evaluator's duration to `eval_seconds`:
not to the metric stream, whose readers would have to skip hundreds of transient records per evaluation.
The step-0 evaluation reuses an earlier run's when the starting model, items and settings are the same
(eval.reuse_baseline, baseline.py): same files and records, plus `baseline_reused_from`, and one
event/baseline_reused. The model evaluated is always the Trainer's own (kwargs['model']): nothing is reloaded.
"""
from __future__ import annotations

import time

from transformers import TrainerCallback

from ..config import GENERATION_EVALUATORS, RunConfig
from .stats import decline, paired_change
from .suite import Suite, items_path, load_scores, scores_path, write_items, write_scores

MEMORIZATION_RISE_PCT = 10.0  # held-out domain ppl this far above its best (and significantly) is a sign
PROGRESS_EVERY_S = 2.0  # evaluation progress goes to status.json at most this often (plus each evaluator's start/end)

# metric -> (threshold field of EvalConfig, how the rule measures the decline, unit of the threshold). The
# rule (stats.decline) is unchanged; a warning first quotes the change as the charts draw it (frames.gain_text:
# a perplexity in % of its step-0 value, a score in points, signed so that higher is better), then the
# rule's own measure when it differs: for perplexities the rise of the loss ln(ppl) in %, which is smaller
# than the perplexity's (ppl 30 -> 58 is +93 % of ppl but +19 % of ln(ppl) = 3.40 -> 4.06).
WARN_RULES = {
    "eval/replay_ppl": ("warn_general_loss_pct", "its loss ln(ppl) rose", "%"),
    "eval/if_prompt_strict": ("warn_if_drop_points", "it fell", " points"),
    "eval/coherence_distinct2": ("warn_distinct2_drop", "it fell", " (fraction)"),
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
        self.cache = None  # step-0 results of the same starting model, items and settings (baseline.py)
        if cfg.eval.reuse_baseline:
            from .baseline import BaselineCache, cache_root

            self.cache = BaselineCache(cache_root(run.dir.parent), cfg, self.suite, tokenizer)  # the run's CPT_HOME
        status = run.status()
        self.eval_seconds: dict[str, float] = dict(status.get("eval_seconds") or {})  # kept across attempts
        if status.get("evaluating"):  # left by an attempt that died mid-evaluation
            _supervise().write_eval_status(run, None)

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
        last = getattr(state, "max_steps", None)
        if names:
            self.evaluate(model, step, names, control, phase="final" if last and step >= last else "periodic")

    def on_train_end(self, args, state, control, model=None, **kwargs):
        step = state.global_step
        if not state.is_world_process_zero or step == 0 or self.run.status().get("stop_requested"):
            return  # a user's stop should not wait for minutes of generation
        remaining = [n for n in self.names if n not in self.done.get(step, set())]
        if remaining:
            self.evaluate(model, step, remaining, control, phase="final")

    # --- one evaluation ----------------------------------------------------------------------
    def evaluate(self, model, step: int, names: list[str], control=None, phase: str | None = None) -> dict[str, dict]:
        """Run `names` now; write scores (with paired changes), per-item rows, errors and warnings.
        phase (baseline, periodic, final; by default baseline at step 0, else periodic) names the evaluation
        in its progress reports (status.json `evaluating`). Returns metric -> the record written."""
        self._round += 1
        tokens = step * self.tokens_per_step
        self.items_now: dict[str, dict] = {}  # this evaluation's items per metric
        out_dir = self.run.dir / "eval"
        progress = EvalProgress(self.run, phase or ("baseline" if step == 0 else "periodic"), step, names,
                                self.eval_seconds, getattr(self.writer, "attempt", None))
        try:
            written = self._run_evaluators(model, step, names, tokens, out_dir, progress)
        finally:
            progress.close()
        return self._after_evaluation(step, names, tokens, written, control)

    def _run_evaluators(self, model, step, names, tokens, out_dir, progress) -> dict[str, dict]:
        written: dict[str, dict] = {}
        cache = self.cache if step == 0 else None
        reused: dict[str, str] = {}  # evaluator -> the run that computed its step-0 result
        for index, name in enumerate(names, 1):
            source = self._reuse(cache, name, model, out_dir, written) if cache is not None else None
            if source:
                reused[name] = source
                continue  # no progress.begin/end: eval_seconds keep the durations ETAs are made from
            progress.begin(name, index)
            try:
                scores, rows = self.suite.run(name, model, self.tokenizer, self._round, progress=progress)
                write_items(items_path(out_dir, name, step), rows)
                write_scores(scores_path(out_dir, name, step), scores)
            except Exception as e:  # noqa: BLE001 - an evaluator must never kill the training run
                self.writer.event("event/eval_error", f"{name} failed at step {step}: {type(e).__name__}: {e}",
                                  step, tokens, evaluator=name)
                continue
            finally:
                progress.end(name)
            for s in scores:
                self.items_now[s.name] = s.items
                extra = dict(s.extra)
                if step == 0:
                    self.baseline[s.name] = (s.items, s.kind)
                elif s.name in self.baseline:
                    extra.update(paired_change(s.items, *self.baseline[s.name]) or {})
                written[s.name] = self.writer.write(s.name, s.value, step, tokens, n=s.n, ci_low=s.ci_low,
                                                    ci_high=s.ci_high, evaluator=name, **extra)
            if cache is not None:
                cache.store(name, self.run.id, scores, written, out_dir)
        if reused:
            sources = ", ".join(dict.fromkeys(reused.values()))
            self.writer.event(
                "event/baseline_reused", f"baseline reused from {sources} (model hash {cache.model_hash[:12]}, "
                f"{len(reused)} evaluator{'s' if len(reused) > 1 else ''}: {', '.join(reused)}); set "
                "eval.reuse_baseline: false for a fresh one", 0, 0, reused_from=sources,
                model_hash=cache.model_hash, evaluators=", ".join(reused))
        return written

    def _reuse(self, cache, name: str, model, out_dir, written: dict[str, dict]) -> str | None:
        """Write evaluator `name`'s cached step-0 result as a fresh evaluation would (files, records, baseline
        items), each record with `baseline_reused_from`; the run that computed it, or None when there is no
        usable entry (then the evaluation is fresh)."""
        entry = cache.load(name) if cache.key(name, model) else None
        if entry is None:
            return None
        try:
            items = cache.restore(entry, out_dir)
        except Exception:  # noqa: BLE001 - e.g. a full disk: the fresh evaluation reports what is wrong
            return None
        for s in entry.scores:
            self.items_now[s["name"]] = items[s["name"]][0]
            self.baseline[s["name"]] = items[s["name"]]
            written[s["name"]] = self.writer.write(s["name"], s["value"], 0, 0, **s["fields"],
                                                   baseline_reused_from=entry.run_id)
        return entry.run_id

    def _after_evaluation(self, step, names, tokens, written, control) -> dict[str, dict]:
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
            extra.update(_gain_fields(metric, rec))
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
            from ..frames import gain_text

            self._memorization_told = True
            g = _gain_fields("eval/domain_ppl", rec)
            chart = "; from step 0 it is now " + gain_text("eval/domain_ppl", g["gain"], g["gain_low"],
                                                            g["gain_high"]) if g else ""
            self.writer.event(
                "event/warning", f"memorization sign: held-out domain perplexity {best[1]:.4g} at step {best[0]} -> "
                f"{rec['value']:.4g} now (+{rise:.0f}% above its best, paired 95% CI of that rise "
                f"{change['delta_ci_low']:+.3g} .. {change['delta_ci_high']:+.3g} ppl{chart}) while training "
                f"continues: the documents' wording is being memorized; fewer passes, a lower LR or the "
                f"step-{best[0]} checkpoint may keep more", step, tokens,
                metric="eval/domain_ppl", kind="memorization", best_step=best[0], best_value=best[1],
                value_now=rec["value"], **change)

    def breaches(self, records: dict[str, dict]) -> list[tuple[str, dict, str]]:
        """(metric, record, message) for each real decline (stats.decline) beyond its threshold. The message
        quotes the gain from step 0 with its paired 95% CI exactly as Monitor's panel and hover show it
        (frames.record_gain, frames.gain_text), then the size the rule measured against its threshold."""
        from ..frames import gain_text, label as metric_label, record_gain

        out = []
        for metric, (field, measure, unit) in WARN_RULES.items():
            rec = records.get(metric)
            if rec is None:
                continue
            threshold = getattr(self.ecfg, field)
            fires, size = decline(metric, rec, threshold)
            if not fires:
                continue
            base, g = rec["value"] - rec["delta"], record_gain(metric, rec)
            shown = gain_text(metric, g["gain"], g["gain_low"], g["gain_high"])
            out.append((metric, rec, f"{metric_label(metric)} {shown} from step 0 on the same {rec['delta_n']} items "
                        f"({base:.4g} -> {rec['value']:.4g}); "
                        f"warned because {measure} {size:.3g}{unit}; threshold eval.{field}={threshold:g}"))
        return out

    def _checkpoint_at_or_before(self, step: int) -> str | None:
        from ..runs.checkpoints import checkpoint_step, list_checkpoints

        ok = [p for p in list_checkpoints(self.run.checkpoints_dir) if checkpoint_step(p) <= step]
        return str(ok[-1]) if ok else None


def _supervise():
    from .. import supervise

    return supervise


class EvalProgress:
    """One evaluation's progress, reported to status.json (supervise.write_eval_status) as its `evaluating`
    field: when each evaluator begins, when its item count becomes known, at most every `every_s` seconds
    of its batch loop (Suite.run calls this object with (done, total) after each batch) and when it ends;
    cleared by close(). So an evaluation of T seconds with E evaluators writes at most 3 E + T / every_s + 1
    times. Each evaluator's duration goes to `eval_seconds` (the shared dict given), for ETAs."""

    def __init__(self, run, phase: str, step: int, names: list[str], eval_seconds: dict[str, float],
                 attempt: int | None = None, every_s: float = PROGRESS_EVERY_S):
        self.run, self.every_s, self.eval_seconds = run, every_s, eval_seconds
        self.writes, self._last, self._t0 = 0, 0.0, time.time()
        self.state = {"phase": phase, "step": int(step), "evaluator": None, "index": 0, "count": len(names),
                      "evaluators": list(names), "done": 0, "total": None, "started": round(self._t0, 3),
                      "evaluator_started": round(self._t0, 3), "updated": round(self._t0, 3), "attempt": attempt}

    def begin(self, name: str, index: int) -> None:
        self._t0 = time.time()
        self.state.update(evaluator=name, index=index, done=0, total=None, evaluator_started=round(self._t0, 3))
        self._write()

    def __call__(self, done: int, total: int) -> None:
        known = self.state["total"] is not None
        self.state.update(done=int(done), total=int(total))
        if not known or time.time() - self._last >= self.every_s:
            self._write()

    def end(self, name: str) -> None:
        self.eval_seconds[name] = round(time.time() - self._t0, 3)
        if self.state["total"] is not None:
            self.state["done"] = self.state["total"]
        self._write(with_seconds=True)

    def close(self) -> None:
        self.writes += 1
        _supervise().write_eval_status(self.run, None, self.eval_seconds)

    def _write(self, with_seconds: bool = False) -> None:
        self._last = time.time()
        self.state["updated"] = round(self._last, 3)
        self.writes += 1
        _supervise().write_eval_status(self.run, dict(self.state), self.eval_seconds if with_seconds else None)


def _gain_fields(metric: str, rec: dict) -> dict:
    """The record's gain from step 0 as the charts draw it (frames.record_gain), for the warning event:
    gain, gain_low, gain_high, gain_unit; {} without a paired delta."""
    from ..frames import gain_unit, record_gain

    g = record_gain(metric, rec)
    if g is None:
        return {}
    return {"gain": g["gain"], "gain_low": g["gain_low"], "gain_high": g["gain_high"], "gain_unit": gain_unit(metric)}
