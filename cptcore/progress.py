"""Where a run is, for people: what it is doing now (training, which evaluation at which item, its place in the
queue), how far along it is and when it should end, evaluations included.

Inputs are the run's own files: status.json (the heartbeat's step; `evaluating`, the evaluation running now, and
`eval_seconds`, how long each evaluator took the last time it ran: both written by EvalCallback through
supervise.write_eval_status), the metric stream (the pace of training steps) and config.yaml (the evaluation
schedule). Never imports streamlit; pages and `cpt status` only print what it returns.

ETA = (max_steps - step) * seconds per training step
      + what is left of the evaluation running now (its current evaluator at its measured item rate, then the
        evaluators after it at their measured durations)
      + every evaluation still to come (each eval.every_steps steps: the forward-pass evaluators, all of them
        every eval.generate_every-th one; all of them at the end), each costing the sum of its evaluators'
        measured durations (from the step-0 evaluation until a later one measured them again).
Seconds per training step come from the logged train/loss records of the latest attempt, over intervals
without an evaluation (an interval that held one has that evaluation's measured time taken out, when no
interval is free of one).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from statistics import mean

from .config import GENERATION_EVALUATORS
from .fmt import MISSING, duration as format_duration  # "42 s", "4 min 10 s", "1 h 5 min"

ACTIVE = ("queued", "running")
STALE_AFTER_S = 30.0  # an `evaluating` field this much older than the heartbeat is left over, not live
PACE_WINDOW = 20  # logged intervals the training pace is measured over


@dataclass
class Progress:
    """phase_text: "training", "evaluating ifeval 12/25 (step 0 baseline)", "queued: 2nd in line, waiting for
    RUN (running, step 12/50)" or the final status. fraction: training steps done of max_steps (None when
    unknown). eta_s: seconds left, evaluations included (None when not running or not measurable yet);
    eta_text: eta_s for people, or what can be said ("> 3 min" during the step-0 evaluation: its evaluations, then a training time not measured yet); detail:
    how the ETA was made. While evaluating: eval_fraction (items done of the current evaluator) and eval_note,
    the words that replace an empty panel's hint."""
    state: str
    phase_text: str
    fraction: float | None = None
    eta_s: float | None = None
    eta_text: str = MISSING
    detail: str = ""
    evaluating: dict | None = None
    eval_fraction: float | None = None
    eval_note: str = ""
    queue_text: str | None = None


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 12th, 13th, 21st."""
    n = int(n)
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


# --- evaluation progress -----------------------------------------------------------------------
def live_evaluation(status: dict) -> dict | None:
    """status.json's `evaluating`, when it describes an evaluation running now: the run is active, the field
    belongs to this attempt and is not older than the heartbeat (a process that died mid-evaluation leaves it)."""
    ev = status.get("evaluating")
    if not isinstance(ev, dict) or status.get("status") not in ACTIVE:
        return None
    if ev.get("attempt") is not None and status.get("attempt") is not None and ev["attempt"] != status["attempt"]:
        return None
    beat, updated = status.get("heartbeat"), ev.get("updated")
    if isinstance(beat, (int, float)) and isinstance(updated, (int, float)) and beat - updated > STALE_AFTER_S:
        return None
    return ev


def evaluating_text(ev: dict) -> str:
    """"evaluating ifeval 12/25 (step 0 baseline)"; "evaluating ifeval (step 0 baseline)" before its items are
    counted (its data loads)."""
    name = ev.get("evaluator") or "…"
    count = f" {ev.get('done') or 0}/{ev['total']}" if ev.get("total") is not None else ""
    return f"evaluating {name}{count} (step {ev.get('step') or 0} {ev.get('phase') or 'evaluation'})"


def _eval_note(ev: dict) -> str:
    which = {"baseline": "The step-0 evaluation", "final": "The final evaluation"}.get(
        ev.get("phase"), f"The step-{ev.get('step') or 0} evaluation")
    items = f", {ev.get('done') or 0}/{ev['total']} items" if ev.get("total") is not None else ""
    return (f"{which} is running (evaluator {ev.get('index') or 1} of {ev.get('count') or 1}: "
            f"{ev.get('evaluator') or '…'}{items}); its scores appear in the panels below when it ends.")


# --- the schedule and its cost -----------------------------------------------------------------
def eval_schedule(cfg_dict: dict) -> tuple[list[str], int, int]:
    """(evaluators, eval.every_steps, eval.generate_every) of an unvalidated config dict, defaults filled in."""
    from .config import EvalConfig

    defaults = EvalConfig()
    e = (cfg_dict or {}).get("eval") or {}
    names = e.get("evaluators", defaults.evaluators)
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]

    def positive(key: str) -> int:
        try:
            return max(1, int(e.get(key, getattr(defaults, key))))
        except (TypeError, ValueError):
            return getattr(defaults, key)

    return list(names or []), positive("every_steps"), positive("generate_every")


def _evaluation_set(k: int, names: list[str], generate_every: int) -> list[str]:
    """Evaluators of the k-th periodic evaluation (EvalCallback.on_step_end's rule)."""
    return [n for n in names if k % generate_every == 0 or n not in GENERATION_EVALUATORS]


def upcoming_evaluations(step: int, max_steps: int, names: list[str], every: int, generate_every: int) -> list[
        tuple[int, list[str]]]:
    """(step, evaluators) of every evaluation after training step `step`: the periodic ones before max_steps,
    then the final one at max_steps (every evaluator: the periodic part and what on_train_end adds)."""
    out = []
    k = step // every + 1
    while names and k * every < max_steps:
        out.append((k * every, _evaluation_set(k, names, generate_every)))
        k += 1
    if names and step < max_steps:
        out.append((max_steps, list(names)))
    return out


class _Costs:
    """Seconds an evaluator takes: its last measured duration (status eval_seconds). Before one was measured,
    while the step-0 evaluation still runs, the mean of those measured (None: nothing measured yet); after
    it, 0 (an evaluator the step-0 evaluation did not time was dropped for want of data)."""

    def __init__(self, seconds: dict, baseline_running: bool, extra: dict | None = None):
        self.seconds = {k: float(v) for k, v in (seconds or {}).items() if isinstance(v, (int, float))}
        self.seconds.update(extra or {})
        self.baseline_running = baseline_running

    def of(self, name: str) -> float | None:
        if name in self.seconds:
            return self.seconds[name]
        if self.baseline_running:
            return mean(self.seconds.values()) if self.seconds else None
        return 0.0

    def total(self, names) -> float | None:
        parts = [self.of(n) for n in names]
        return None if any(p is None for p in parts) else float(sum(parts))


def seconds_per_step(m, every: int, max_steps: int | None, names: list[str], generate_every: int,
                     costs: _Costs | None = None, window: int = PACE_WINDOW) -> float | None:
    """Training seconds per step from the logged train/loss records of the latest attempt: over the last
    `window` intervals that held no evaluation; when every interval held one, over all of them with the
    evaluations' measured durations taken out. None with fewer than two records."""
    s = m.series("train/loss") if m is not None else None
    if s is None or len(s) < 2:
        return None
    s = s[s["attempt"] == s["attempt"].iloc[-1]]
    steps, times = s["step"].to_numpy(), s["time"].to_numpy(dtype="float64")
    clean, held = [], []
    for a, b, ta, tb in zip(steps[:-1], steps[1:], times[:-1], times[1:]):
        if b <= a or not (tb >= ta):
            continue
        ks = range(int(a) // every + 1, int(b) // every + 1)
        (held if len(ks) else clean).append((int(b - a), float(tb - ta), ks))
    if clean:
        part = clean[-window:]
        return sum(dt for _, dt, _ in part) / sum(n for n, _, _ in part)
    part = held[-window:]
    if not part:
        return None
    total, n_steps = 0.0, 0
    for n, dt, ks in part:
        took = 0.0
        for k in ks:
            c = costs.total(names if max_steps and k * every >= max_steps else
                            _evaluation_set(k, names, generate_every)) if costs else None
            took += c or 0.0
        total += max(0.0, dt - took)
        n_steps += n
    return total / n_steps if total > 0 and n_steps else None


def _current_left(ev: dict, costs: _Costs, now: float) -> float | None:
    """Seconds left in the evaluator running now: at its item rate so far, else its measured duration."""
    done, total = ev.get("done") or 0, ev.get("total")
    elapsed = max(0.0, now - float(ev.get("evaluator_started") or ev.get("updated") or now))
    if total and done >= total:
        return 0.0
    if total and done > 0:
        return elapsed * (total - done) / done
    c = costs.of(ev.get("evaluator") or "")
    return None if c is None else max(0.0, c - elapsed)


# --- the whole picture -------------------------------------------------------------------------
def run_progress(run, metrics, status: dict, cfg_dict: dict, now: float | None = None) -> Progress:
    """What Monitor's status block (and `cpt status`) shows for `run`: see Progress and the module docstring
    for the ETA. metrics: frames.load_metrics(run) (only train/loss is read); status: liveness.refresh(run)."""
    now = time.time() if now is None else now
    state = status.get("status", "unknown")
    cfg_dict = cfg_dict or {}
    max_steps = status.get("max_steps") or (cfg_dict.get("train") or {}).get("max_steps")
    loss = metrics.series("train/loss") if metrics is not None else None
    step = max(int(status.get("step") or 0), int(loss["step"].iloc[-1]) if loss is not None and len(loss) else 0)
    ev = live_evaluation(status)
    if ev is not None:
        step = max(step, int(ev.get("step") or 0))
    fraction = min(1.0, step / max_steps) if max_steps else None

    if state == "queued" and ev is None:
        line = queue_line(run)
        return Progress(state, line or "queued: waiting to start", fraction, queue_text=line)
    if state not in ACTIVE:
        return Progress(state, state, fraction)

    names, every, gen_every = eval_schedule(cfg_dict)
    baseline_running = ev is not None and ev.get("phase") == "baseline"
    no_baseline_yet = ev is None and step == 0 and not status.get("eval_seconds") and bool(names)
    costs = _Costs(status.get("eval_seconds") or {}, baseline_running or no_baseline_yet)
    if baseline_running and ev.get("total") and ev.get("done"):  # the evaluator running now, at its rate so far
        elapsed = now - float(ev.get("evaluator_started") or now)
        costs.seconds.setdefault(ev["evaluator"], elapsed * ev["total"] / ev["done"])

    # the evaluation running now, then those to come
    eval_left: float | None = 0.0
    n_evals = 0
    if ev is not None:
        rest = list((ev.get("evaluators") or [])[int(ev.get("index") or 1):])
        if max_steps and ev.get("step") == max_steps and max_steps % every == 0:
            periodic = _evaluation_set(max_steps // every, names, gen_every)
            if set(ev.get("evaluators") or []) == set(periodic):  # on_train_end adds the others
                rest += [n for n in names if n not in periodic]
        cur, after = _current_left(ev, costs, now), costs.total(rest)
        eval_left = None if cur is None or after is None else cur + after
        n_evals = 1
        upcoming = upcoming_evaluations(step, max_steps, names, every, gen_every) if max_steps and step < max_steps else []
        if ev.get("phase") == "final":
            upcoming = []
    else:
        upcoming = upcoming_evaluations(step, max_steps, names, every, gen_every) if max_steps else []
        if no_baseline_yet:
            upcoming = [(0, list(names))] + upcoming
    for _, evaluators in upcoming:
        c = costs.total(evaluators)
        eval_left = None if eval_left is None or c is None else eval_left + c
    n_evals += len(upcoming)

    steps_left = max(0, (max_steps or 0) - step) if max_steps else None
    sps = seconds_per_step(metrics, every, max_steps, names, gen_every, costs)
    train_left = None if steps_left is None else (0.0 if steps_left == 0 else
                                                 (None if sps is None else steps_left * sps))
    eta = None if train_left is None or eval_left is None else train_left + eval_left

    evals = f"{n_evals} evaluation{'s' if n_evals != 1 else ''} left" + (" (the one running now included)"
                                                                       if ev is not None else "")
    if eta is not None:
        eta_text = format_duration(eta)
        detail = (f"{format_duration(train_left)} of training ({steps_left} steps at {sps:.3g} s/step) + "
                  f"{format_duration(eval_left)} of evaluation ({evals})" if steps_left else
                  f"{format_duration(eval_left)} of evaluation ({evals})")
    elif eval_left is not None and n_evals:
        eta_text = f"> {format_duration(eval_left)}"  # short enough for a metric at 1280 px; detail says why
        detail = (f"{format_duration(eval_left)} of evaluation ({evals}); the training pace is measured once "
                  "steps have been logged")
    elif train_left is not None:
        eta_text = f"> {format_duration(train_left)}"
        detail = f"{format_duration(train_left)} of training; evaluation times are measured at step 0"
    else:
        eta_text, detail = MISSING, "measured once training steps and the step-0 evaluation have run"

    if ev is not None:
        done, total = ev.get("done") or 0, ev.get("total")
        return Progress(state, evaluating_text(ev), fraction, eta, eta_text, detail, evaluating=ev,
                        eval_fraction=min(1.0, done / total) if total else 0.0, eval_note=_eval_note(ev))
    return Progress(state, "training" if state == "running" else state, fraction, eta, eta_text, detail)


# --- the queue ------------------------------------------------------------------------------------
def _run_state(home, run_id: str) -> str:
    """"running, step 12/50" (", evaluating ifeval 12/25 (step 0 baseline)" while it evaluates)."""
    from .runs.store import Run, read_json

    other = Run(home / run_id)
    st = read_json(other.status_path)
    text = st.get("status", "unknown")
    if st.get("status") == "running":
        max_steps = st.get("max_steps") or (other.config_dict().get("train") or {}).get("max_steps")
        text += f", step {int(st.get('step') or 0)}/{max_steps or '?'}"
        ev = live_evaluation(st)
        if ev is not None:
            text += f", {evaluating_text(ev)}"
    return text


def queue_line(run, place=None) -> str | None:
    """"queued: 2nd in line (after RUN_A), waiting for RUN_B (running, step 12/50)" for a run waiting in a
    local queue (runs.queue.queue_place); None when it holds no ticket."""
    from .runs.queue import queue_place

    place = place if place is not None else queue_place(run)
    if place is None:
        return None
    text = f"queued: {ordinal(place.position)} in line"
    if place.holding and place.ahead:
        text += f" (after {', '.join(place.ahead)})"
    target = place.holding or (place.ahead[0] if place.ahead else None)
    if target is None:
        return text + (f", the {place.slot} slot is free: starting" if place.slot else ", starting")
    return text + f", waiting for {target} ({_run_state(run.dir.parent, target)})"


def status_line(run, status: dict) -> str | None:
    """The one line `cpt status` adds: the queue line of a queued run, the evaluation of an evaluating one."""
    if status.get("status") == "queued" and live_evaluation(status) is None:
        return queue_line(run) or None
    ev = live_evaluation(status)
    return evaluating_text(ev) if ev is not None else None
