"""Metric streams → pandas frames for the dashboard: loading, change from step 0, smoothing, downsampling.

Never imports streamlit. Loaders are cached on file size and mtime: a live refresh parses only the lines
appended since the last look, and a restarted server reads a parquet copy instead of the JSON.
"""
from __future__ import annotations

import io
import json
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .evaluate.stats import lower_is_better  # the one direction rule: ppl, loss, _kl, repetition
from .runs.metrics import StreamTail, latest_attempt, latest_attempt_index, parse_records
from .runs.store import Run, atomic_write

CORE = ("step", "tokens", "time", "name", "value", "attempt")
# knowledge_mc's accuracy first among the QA metrics: it is the knowledge metric that moves
DOMAIN_METRICS = ("eval/domain_ppl", "eval/qa_mc_acc", "eval/qa_em", "eval/qa_f1", "eval/qa_contains",
                  "eval/qa_answer_logprob")
GENERAL_METRICS = ("eval/replay_ppl", "eval/general_kl", "eval/if_prompt_strict", "eval/if_prompt_loose",
                   "eval/if_inst_strict", "eval/if_inst_loose", "eval/coherence_distinct2")
KNOWLEDGE_METRICS = ("eval/qa_mc_acc", "eval/qa_em", "eval/qa_contains", "eval/qa_f1")  # scores in % of questions
PAIRED = ("delta", "delta_ci_low", "delta_ci_high", "delta_n")  # a record's paired change from step 0


# --- loading: incremental tail, cached on file size and mtime --------------------------------
@dataclass
class Metrics:
    """One run's stream: `values` keeps the latest attempt per (name, step); `events` keeps event/* records."""
    values: pd.DataFrame
    events: pd.DataFrame
    _by_name: dict = field(default_factory=dict, repr=False)
    memo: dict = field(default_factory=dict, repr=False)  # derived frames; dropped with this object on new data

    def names(self) -> list[str]:
        return sorted(self.values["name"].unique()) if len(self.values) else []

    def series(self, name: str) -> pd.DataFrame:
        """Rows of one metric sorted by step (empty frame when the run has none)."""
        if not self._by_name and len(self.values):
            self._by_name = {k: g.reset_index(drop=True) for k, g in self.values.groupby("name", sort=False)}
        return self._by_name.get(name, self.values.iloc[0:0])

    def last(self, name: str) -> float | None:
        s = self.series(name)
        return float(s["value"].iloc[-1]) if len(s) else None

    @property
    def last_step(self) -> int:
        return int(self.values["step"].max()) if len(self.values) else 0


@dataclass
class _Tail:
    stream: StreamTail
    key: tuple = ()
    chunks: list = field(default_factory=list)
    metrics: Metrics | None = None
    saved: int = 0  # bytes covered by the parquet cache on disk
    lock: threading.Lock = field(default_factory=threading.Lock)


_TAILS: dict[str, _Tail] = {}
_TAILS_LOCK = threading.Lock()


def empty_values() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="float64" if c in ("time", "value") else
                                      ("object" if c == "name" else "int64")) for c in CORE})


def parse_lines(data: bytes) -> pd.DataFrame:
    """Complete JSONL lines → frame. pyarrow when the lines are regular; line by line (skipping
    malformed lines and accepting NaN) otherwise."""
    if not data.strip():
        return empty_values()
    try:
        import pyarrow as pa
        import pyarrow.json as pj

        schema = pa.schema([("step", pa.int64()), ("tokens", pa.int64()), ("time", pa.float64()),
                            ("name", pa.string()), ("value", pa.float64()), ("attempt", pa.int64())])
        table = pj.read_json(io.BytesIO(data), parse_options=pj.ParseOptions(
            explicit_schema=schema, unexpected_field_behavior="infer"))
        frame = table.to_pandas()
    except Exception:  # noqa: BLE001 - NaN literals, mixed types, a bad line: take the slow exact path
        rows = [r for r in parse_records(data) if "name" in r and "step" in r]
        frame = pd.DataFrame.from_records(rows) if rows else empty_values()
    for c in CORE:
        if c not in frame:
            frame[c] = 1 if c == "attempt" else (0 if c in ("step", "tokens") else np.nan)
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["attempt"] = frame["attempt"].fillna(1).astype("int64")
    return frame


def _split(frame: pd.DataFrame) -> Metrics:
    """Latest attempt per (name, step) (runs.metrics.latest_attempt_index), sorted by name and step; events apart."""
    if not len(frame):
        return Metrics(empty_values(), empty_values())
    if "message" in frame:
        is_event = frame["value"].isna() & frame["message"].notna()
    else:
        is_event = frame["value"].isna() & frame["name"].str.startswith("event/")
    values = frame[~is_event]
    codes, _ = pd.factorize(values["name"], sort=True)  # codes in name order: the result is sorted by name
    keep = latest_attempt_index(codes, values["step"].to_numpy(), values["attempt"].to_numpy())
    values = values.iloc[keep].reset_index(drop=True)
    events = frame[is_event].sort_values(["step", "time"], kind="stable").reset_index(drop=True)
    return Metrics(values, events)


SIDECAR_MIN_BYTES = 1 << 20  # cache a stream's parsed frame once this many new bytes were parsed


def _sidecar(path: Path) -> Path:
    """CPT_HOME/.cache/metrics/<run>.parquet: the parsed stream, so a restarted server skips the JSON parse."""
    return path.parent.parent / ".cache" / "metrics" / f"{path.parent.name}.parquet"


def _fingerprint(fh, offset: int) -> str:
    """Hash of the file's head and of the bytes just before `offset`: an appended file keeps it, a
    rewritten one does not."""
    import hashlib

    fh.seek(0)
    head = fh.read(min(offset, 4096))
    fh.seek(max(0, offset - 4096))
    return hashlib.sha1(head + fh.read(min(offset, 4096))).hexdigest()


def _load_sidecar(path: Path, fh, size: int) -> tuple[pd.DataFrame, int] | None:
    try:
        import pyarrow.parquet as pq

        table = pq.read_table(_sidecar(path))
        meta = json.loads(table.schema.metadata[b"cpt"])
        if meta["offset"] > size or meta["fingerprint"] != _fingerprint(fh, meta["offset"]):
            return None
        return table.to_pandas(), int(meta["offset"])
    except Exception:  # noqa: BLE001 - a missing, stale or unreadable cache just means parsing the JSON
        return None


def _save_sidecar(path: Path, fh, frame: pd.DataFrame, offset: int) -> bool:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        meta = json.dumps({"offset": offset, "fingerprint": _fingerprint(fh, offset)}).encode()
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"cpt": meta})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        dest = _sidecar(path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(dest, buf.getvalue())
        return True
    except Exception:  # noqa: BLE001 - read-only CPT_HOME or odd extra fields: stay uncached
        return False


def load_metrics(path: Path | str | Run) -> Metrics:
    """A run's metrics; re-reads only the bytes appended since the last call (nothing if size and mtime
    are unchanged); starts over when the file shrank. A fresh process starts from the parquet cache."""
    path = Path(path.metrics_path if isinstance(path, Run) else path)
    with _TAILS_LOCK:
        tail = _TAILS.setdefault(str(path.resolve()), _Tail(StreamTail(path)))
    with tail.lock:
        try:
            st = path.stat()
        except FileNotFoundError:
            tail.__init__(StreamTail(path))
            return _split(empty_values())
        key = (st.st_size, st.st_mtime_ns)
        if tail.metrics is not None and key == tail.key:
            return tail.metrics
        if st.st_size < tail.stream.offset:  # rewritten, not appended: start over
            tail.stream.start_at(0)
            tail.chunks, tail.saved = [], 0
        with open(path, "rb") as fh:
            if tail.stream.offset == 0 and st.st_size >= SIDECAR_MIN_BYTES:
                cached = _load_sidecar(path, fh, st.st_size)
                if cached is not None:
                    tail.chunks = [cached[0]]
                    tail.stream.start_at(cached[1])
                    tail.saved = cached[1]
            data, restarted = tail.stream.read(fh)  # complete lines only: a partial last line waits
            if restarted:
                tail.chunks, tail.saved = [], 0
            if data:
                tail.chunks.append(parse_lines(data))
            frame = pd.concat(tail.chunks, ignore_index=True) if len(tail.chunks) > 1 else (
                tail.chunks[0] if tail.chunks else empty_values())
            complete = tail.stream.complete
            if complete - tail.saved >= SIDECAR_MIN_BYTES and _save_sidecar(path, fh, frame, complete):
                tail.saved = complete
        tail.chunks = [frame]
        tail.key, tail.metrics = key, _split(frame)
        return tail.metrics


def metrics_from_records(records: list[dict]) -> Metrics:
    """Same frames from in-memory records (tests, exports), via runs.metrics.latest_attempt."""
    kept = latest_attempt(records)
    values = [r for r in kept if r.get("value") is not None]
    events = [r for r in kept if r.get("value") is None]
    v = pd.DataFrame.from_records(values) if values else empty_values()
    e = pd.DataFrame.from_records(events) if events else empty_values()
    if len(v):
        v = v.sort_values(["name", "step"], kind="stable").reset_index(drop=True)
    return Metrics(v, e)


# --- units, labels and change from the step-0 baseline ----------------------------------------
LABELS = {
    "eval/domain_ppl": "domain ppl", "eval/replay_ppl": "general (replay) ppl",
    "eval/qa_mc_acc": "QA multiple-choice accuracy", "eval/qa_em": "QA exact match", "eval/qa_f1": "QA F1",
    "eval/qa_contains": "QA answer contained", "eval/qa_answer_logprob": "QA answer log-prob",
    "eval/general_kl": "general KL", "eval/if_prompt_strict": "IF prompt-level strict",
    "eval/if_prompt_loose": "IF prompt-level loose", "eval/if_inst_strict": "IF instruction-level strict",
    "eval/if_inst_loose": "IF instruction-level loose", "eval/coherence_distinct2": "distinct-2",
    "eval/coherence_distinct1": "distinct-1", "eval/coherence_repetition": "4-gram repetition",
}
CHANGE_UNITS = {"%": "% change", "points": "points", "nats": "nats/token"}


def label(name: str) -> str:
    """A metric's name for people: "domain ppl", "IF prompt-level strict", "general KL"."""
    return LABELS.get(name, name.removeprefix("eval/"))


def direction(name: str) -> str:
    return "lower is better" if lower_is_better(name) else "higher is better"


def unit(name: str) -> str:
    """How a change of this metric is shown: "%" (perplexities, losses: % change of the value), "nats"
    (log-probs and KL, nats/token), "points" (scores: percentage points)."""
    if "ppl" in name or "loss" in name:
        return "%"
    return "nats" if "logprob" in name or "_kl" in name else "points"


def change_label(name: str, with_direction: bool = True) -> str:
    """"domain ppl, % change (lower is better)", "IF prompt-level strict, points (higher is better)"."""
    text = f"{label(name)}, {CHANGE_UNITS[unit(name)]}"
    return f"{text} ({direction(name)})" if with_direction else text


# The one sign convention of every "change from step 0" a person reads (Home's table, Monitor's charts and
# warnings, Compare's curves and trade-off): the *gain*, the change signed so that higher is better. A
# perplexity that fell 42 % reads +42 (% drop), one that rose 93 % reads -93; a score's gain is its change in
# points; KL's is minus its rise (sign flipped). Below 0 is worse than the starting model, whatever the metric.
def gain_unit(name: str) -> str:
    """The unit of a metric's gain: "% drop" (perplexities, losses: % of the step-0 value), "points" (scores),
    "nats/token, sign flipped" (KL, for which lower is better), "nats/token" (log-probs)."""
    u = unit(name)
    if u == "%" and lower_is_better(name):
        return "% drop"
    if lower_is_better(name):
        return f"{CHANGE_UNITS[u]}, sign flipped"
    return CHANGE_UNITS[u]


def gain_label(name: str) -> str:
    """A gain's name, the same on every view (Home's CI column, Monitor's subplot titles, Compare's axes):
    "domain ppl, % drop (higher is better)", "general KL, nats/token, sign flipped (higher is better: less
    drift)", "IF prompt-level strict, points (higher is better)"."""
    why = ": less drift" if "_kl" in name else ""
    return f"{label(name)}, {gain_unit(name)} (higher is better{why})"


def gain_axis_title(name: str) -> str:
    """A gain's axis: "% drop from step 0", "points from step 0", "nats/token, sign flipped, from step 0"."""
    u = gain_unit(name)
    return f"{u}{',' if ',' in u else ''} from step 0"


def format_gain(name: str, value: float) -> str:
    """A gain as every view prints it: one decimal in % and points (Home's "%+.1f"), three in nats/token."""
    if value is None or not np.isfinite(value):
        return "n/a"
    return f"{value:+.3f}" if unit(name) == "nats" else f"{value:+.1f}"


def gain_text(name: str, gain: float, low: float = math.nan, high: float = math.nan) -> str:
    """"-93.1 % drop (paired 95% CI -95.0 .. -90.0)": a gain with its unit and, when known, its paired CI;
    the words a warning quotes and the chart's hover shows."""
    text = f"{format_gain(name, gain)} {gain_unit(name)}"
    if low is not None and high is not None and np.isfinite(low) and np.isfinite(high):
        text += f" (paired 95% CI {format_gain(name, low)} .. {format_gain(name, high)})"
    return text


def record_gain(name: str, rec: dict) -> dict | None:
    """The gain of one evaluation record (its paired delta from step 0) exactly as the charts draw it
    (baseline_change): gain, gain_low, gain_high, baseline. None when the record carries no delta."""
    if rec.get("delta") is None:
        return None
    row = baseline_change(pd.DataFrame([{"step": rec.get("step", 1), **{k: rec.get(k) for k in (
        "value", "unit", *PAIRED)}}]), name).iloc[0]
    return {k: float(row[k]) for k in ("gain", "gain_low", "gain_high", "baseline")}


def value_label(name: str, record_unit: str | None = None) -> str:
    """A value axis: "domain ppl (ppl, lower is better)", "QA exact match (%, higher is better)"."""
    if not name.startswith("eval/"):
        return name
    return f"{label(name)} ({record_unit + ', ' if record_unit else ''}{direction(name)})"


def record_unit(s: pd.DataFrame) -> str | None:
    """The unit the records of one metric carry ("ppl", "%", "nats/token", "fraction"); None for records
    written before units were recorded."""
    if "unit" not in s:
        return None
    u = s["unit"].dropna()
    return str(u.iloc[0]) if len(u) else None


def points_scale(name: str, record_unit: str | None = None) -> float:
    """Factor from a score's own unit to percentage points: 1 for scores written in % (IFEval, QA exact match,
    F1, contains, multiple-choice accuracy), 100 for fractions (coherence). The record's `unit` decides; a
    record without one is read by name: IFEval and QA scores in %, other scores as fractions."""
    if record_unit == "%":
        return 1.0
    if record_unit == "fraction":
        return 100.0
    if record_unit:  # ppl, nats/token: not points
        return 1.0
    return 1.0 if name.startswith(("eval/if_", "eval/qa_")) else 100.0


def _numeric(s: pd.DataFrame, col: str) -> np.ndarray:
    if col not in s:
        return np.full(len(s), np.nan)
    return pd.to_numeric(s[col], errors="coerce").to_numpy(dtype="float64")


CHANGE_COLUMNS = ("change", "change_low", "change_high", "gain", "gain_low", "gain_high", "baseline", "paired")


def baseline_change(s: pd.DataFrame, name: str) -> pd.DataFrame:
    """One metric's change from step 0, from the *paired* change each evaluation record carries.

    A record after step 0 holds `delta` (value - step-0 value on the same items, the metric's own unit) and
    its 95% paired bootstrap CI `delta_ci_low`/`delta_ci_high`; change_low/change_high are that interval,
    never the record's own value CI shifted by the step-0 point (two overlapping intervals say nothing about
    a change on the same items). Display units: perplexities and losses as % change of the step-0 value
    (step-0 value = value - delta; the band likewise), scores in percentage points (points_scale), log-probs
    and KL in nats/token.

    A record without a delta (step 0; runs from before paired changes were recorded) has `paired` False and
    no band: its change is measured against the first record (0 there), its change_low/change_high are NaN.
    `gain`, `gain_low`, `gain_high` are the change signed so that higher is better (a perplexity drop is a
    gain); `baseline` is the step-0 value each change is relative to.
    """
    out = s.copy()
    if not len(out):
        for c in CHANGE_COLUMNS:
            out[c] = pd.Series(dtype="bool" if c == "paired" else "float64")
        out["baseline_step"] = pd.Series(dtype="int64")
        return out
    value = pd.to_numeric(out["value"], errors="coerce").to_numpy(dtype="float64")
    delta, lo, hi = (_numeric(out, c) for c in PAIRED[:3])
    paired = np.isfinite(delta)
    base0 = value[0] - (delta[0] if paired[0] else 0.0)  # the step-0 value, for records without a delta
    diff = np.where(paired, delta, value - base0)
    base = np.where(paired, value - delta, base0)
    u = unit(name)
    if u == "%":
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = np.where(base != 0, 100.0 / base, np.nan)
    elif u == "points":
        scale = np.full(len(out), points_scale(name, record_unit(out)))
    else:
        scale = np.ones(len(out))
    out["change"] = diff * scale
    out["change_low"] = np.where(paired, lo * scale, np.nan)
    out["change_high"] = np.where(paired, hi * scale, np.nan)
    sign = -1.0 if lower_is_better(name) else 1.0
    out["gain"] = sign * out["change"]
    out["gain_low"] = sign * (out["change_high"] if sign < 0 else out["change_low"])
    out["gain_high"] = sign * (out["change_low"] if sign < 0 else out["change_high"])
    out["baseline"] = base
    out["paired"] = paired
    out["baseline_step"] = 0 if paired[0] else int(out["step"].iloc[0])
    return out


def unpaired_metrics(m: Metrics, names) -> list[str]:
    """Metrics of `names` with records after step 0 that carry no paired delta (drawn without a band)."""
    out = []
    for name in names:
        s = m.series(name)
        if len(s) > 1 and np.isnan(_numeric(s.iloc[1:], "delta")).any():
            out.append(name)
    return out


def change_curve(m: Metrics, name: str, max_points: int = 1000) -> pd.DataFrame:
    """baseline_change of one metric, downsampled on the change (memoized until new data arrives)."""
    key = ("change", name, max_points)
    if key not in m.memo:
        m.memo[key] = downsample(baseline_change(m.series(name), name), max_points, y="change")
    return m.memo[key]


# --- smoothing and downsampling --------------------------------------------------------------
def ema(values, weight: float) -> np.ndarray:
    """TensorBoard-style debiased exponential moving average over the finite values (others pass through);
    weight 0 returns the values unchanged. Vectorized in blocks short enough that weight**-block stays finite."""
    y = np.asarray(values, dtype="float64")
    out = y.copy()
    ok = np.isfinite(y)
    v = y[ok]
    n = len(v)
    if weight <= 0 or n == 0:
        return out
    block = max(1, min(n, int(100 / -np.log10(weight))))
    powers = weight ** np.arange(block)
    s = np.empty(n)
    last = 0.0
    for start in range(0, n, block):
        seg = v[start:start + block]
        p = powers[: len(seg)]
        # s_t = w^t * (w * s_prev + (1 - w) * sum_{i<=t} v_i * w^-i)
        s[start:start + len(seg)] = p * (weight * last + (1 - weight) * np.cumsum(seg / p))
        last = s[start + len(seg) - 1]
    out[ok] = s / (1 - weight ** np.arange(1, n + 1))
    return out


def downsample_index(y, max_points: int) -> np.ndarray:
    """Indices to plot: per bucket its min and max, plus the first and last point (extremes survive)."""
    y = np.asarray(y, dtype="float64")
    n = len(y)
    if n <= max_points or max_points < 4:
        return np.arange(n)
    buckets = max(1, (max_points - 2) // 2)
    size = math.ceil(n / buckets)
    padded = np.full(buckets * size, np.nan)
    padded[:n] = np.where(np.isfinite(y), y, np.nan)
    grid = padded.reshape(buckets, size)
    ok = ~np.all(np.isnan(grid), axis=1)
    rows = np.flatnonzero(ok)
    lo = np.nanargmin(grid[ok], axis=1) + rows * size
    hi = np.nanargmax(grid[ok], axis=1) + rows * size
    return np.unique(np.concatenate([[0, n - 1], lo, hi]))


def downsample(s: pd.DataFrame, max_points: int = 1000, y: str = "value") -> pd.DataFrame:
    if len(s) <= max_points:
        return s
    return s.iloc[downsample_index(s[y].to_numpy(), max_points)]


def curve(m: Metrics, name: str, smoothing: float = 0.0, max_points: int = 1000) -> pd.DataFrame:
    """One metric ready to plot: smoothed on the full series, then downsampled (value_raw keeps the data)."""
    key = ("curve", name, smoothing, max_points)
    if key in m.memo:
        return m.memo[key]
    s = m.series(name)
    if len(s):
        s = s[["step", "tokens", "time", "value"] + [c for c in ("n", "ci_low", "ci_high", "unit", "chance", *PAIRED)
                                                     if c in s]].copy()
        s["value_raw"] = s["value"]
        if smoothing > 0:
            s["value"] = ema(s["value"].to_numpy(), smoothing)
        s = downsample(s, max_points)
    m.memo[key] = s
    return s


# --- progress ---------------------------------------------------------------------------------
def eta_seconds(m: Metrics, max_steps: int | None, window: int = 20) -> float | None:
    """Seconds left, from the pace of the last `window` logged steps of train/loss."""
    s = m.series("train/loss")
    if not max_steps or len(s) < 2:
        return None
    tail = s.iloc[-window:]
    tail = tail[tail["attempt"] == tail["attempt"].iloc[-1]]  # wall time restarts with each attempt
    steps = float(tail["step"].iloc[-1] - tail["step"].iloc[0])
    secs = float(tail["time"].iloc[-1] - tail["time"].iloc[0])
    if steps <= 0 or secs <= 0:
        return None
    return max(0.0, (max_steps - int(s["step"].iloc[-1])) * secs / steps)


def final_values(m: Metrics) -> dict[str, float]:
    """The last value of every metric (latest attempt per step), memoized until new data arrives."""
    if "final" not in m.memo:
        last = m.values.groupby("name", sort=True)["value"].last() if len(m.values) else {}
        m.memo["final"] = {str(k): float(v) for k, v in dict(last).items()}
    return dict(m.memo["final"])


def latest_change(m: Metrics, names: tuple[str, ...]) -> dict | None:
    """The latest record's change from step 0 (baseline_change) of the first metric of `names` the run has:
    name, gain, gain_low, gain_high (95% paired CI; NaN when the record carries no delta), unit."""
    for name in names:
        s = m.series(name)
        if len(s):
            last = baseline_change(s.iloc[[0, -1]] if len(s) > 2 else s, name).iloc[-1]
            return {"name": name, "gain": float(last["gain"]), "gain_low": float(last["gain_low"]),
                    "gain_high": float(last["gain_high"]), "unit": unit(name)}
    return None


def latest_gain(m: Metrics, names: tuple[str, ...]) -> float | None:
    """Gain vs the step-0 baseline (from the paired delta) at the latest record of the first metric of
    `names` the run has."""
    c = latest_change(m, names)
    return None if c is None else c["gain"]


def baseline_reuse_caption(m: Metrics) -> str | None:
    """"Step-0 baseline reused from RUN ..." when the run's step 0 was copied from the baseline cache
    (event/baseline_reused, evaluate/baseline.py); None when it was evaluated here."""
    ev = m.events[m.events["name"] == "event/baseline_reused"] if len(m.events) else m.events
    if not len(ev) or "reused_from" not in ev:
        return None
    last = ev.iloc[-1]
    what = f" for {last['evaluators']}" if isinstance(last.get("evaluators"), str) else ""
    return (f"Step-0 baseline reused from {last['reused_from']}{what}: the same starting model (hash "
            f"{str(last.get('model_hash') or '')[:12]}), items and settings, so it was copied, not re-evaluated. "
            "Set eval.reuse_baseline: false for a fresh one.")


def export_frame(metrics: dict[str, Metrics], names: list[str]) -> pd.DataFrame:
    """The full (not downsampled, not smoothed) records of `names` for each run, for CSV export."""
    parts = []
    for run_id, m in metrics.items():
        for name in names:
            s = m.series(name)
            if len(s):
                parts.append(s.assign(run=run_id))
    if not parts:
        return pd.DataFrame(columns=["run", *CORE])
    out = pd.concat(parts, ignore_index=True)
    extra = [c for c in out.columns if c not in CORE and c != "run"]
    return out[["run", *CORE, *extra]]
