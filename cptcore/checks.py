"""Checks before a run starts: the config's known pitfalls, the token budget, and problems in data files.

Never imports streamlit; the Launch and Data pages render what these return.
"""
from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from .config import ROLES, RunConfig, SourceConfig

# Peak LR ranges per (model kind, method). Full fine-tuning of instruct models in the CPT papers uses
# 5e-6..3e-5 at 7B; small models tolerate a little more. LoRA wants about 10x the full rate (Biderman et al.
# 2024 sweep 1e-5..5e-4); base models tolerate more than instruct models (no chat behaviour to lose).
LR_RANGES = {
    ("instruct", "full"): (1e-5, 5e-5),
    ("base", "full"): (3e-5, 1e-4),
    ("instruct", "lora"): (1e-4, 5e-4),
    ("base", "lora"): (3e-4, 1e-3),
}
MAX_PASSES = 10.0  # Jiang et al. 2024 train 10 epochs over the documents; beyond that it memorises and forgets
MIN_REPLAY = 0.05  # Ibrahim et al. 2024: 5% replay for a mild shift, 25% for a strong one
INSTRUCT_STEPS = 500  # the config's own guidance: 100-500 steps keep an instruct model's chat behaviour
MAX_UPLOAD_BYTES = 50 * 1024 * 1024  # keep in step with server.maxUploadSize in .streamlit/config.toml
DATA_SUFFIXES = (".txt", ".md", ".jsonl", ".json", ".parquet", ".csv")


@dataclass
class Finding:
    """One pre-launch warning: a short message and the reason it matters."""
    code: str
    level: str  # "warning" (likely to spoil the run) or "info" (worth knowing)
    message: str
    reason: str


def recommended_lr(kind: str, method: str) -> tuple[float, float]:
    return LR_RANGES[(kind, method)]


# --- token budget ----------------------------------------------------------------------------
def token_budget(cfg: RunConfig, available: dict[str, int] | None = None) -> dict[str, dict]:
    """Per role: share, tokens it will train (share x steps x batch x accum x seq_len), tokens in one pass
    over its sources (when counted) and passes over them."""
    total = cfg.train.max_steps * cfg.train.tokens_per_step(cfg.data.seq_len)
    out = {}
    for role in ROLES:
        share = getattr(cfg.mix, role)
        tokens = int(round(share * total))
        avail = (available or {}).get(role)
        out[role] = {"share": share, "tokens": tokens, "available": avail,
                     "passes": tokens / avail if avail else None}
    return out


def tokenizer_is_local(name: str) -> bool:
    """Whether counting tokens can load the model's tokenizer without a download (cheap enough to do live)."""
    from .models import BUILTIN_GGUF, TINY_MODEL, cache_dir

    if name == TINY_MODEL:
        return True
    if name in BUILTIN_GGUF:
        return (cache_dir() / name / "model.safetensors").is_file()
    return Path(name).expanduser().is_dir()


_IMPORTS = threading.Lock()  # the dashboard runs scripts in threads; a rerun must not race a half-done import
_TOKENIZERS: dict[str, object] = {}  # read-only after loading: shared by every page and session


def load_tokenizer(model):
    """The tokenizer of a ModelConfig (or model name), loaded under a lock: concurrent first imports of
    transformers from two script threads fail with 'cannot import name ...' (a partially initialised module)."""
    from .config import ModelConfig

    model = model if isinstance(model, ModelConfig) else ModelConfig(name=model)
    key = model.model_dump_json(include={"name", "revision", "trust_remote_code"})
    with _IMPORTS:
        if key not in _TOKENIZERS:
            from .models import load_tokenizer as load

            _TOKENIZERS[key] = load(model)
        return _TOKENIZERS[key]


def source_tokens(cfg: RunConfig) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """Per role with a share, each source's rows and tokens under the run's tokenizer (one pass over it),
    and per role the data error that stopped counting it."""
    from .data.mix import load_role
    from .data.sources import DataError

    tokenizer = load_tokenizer(cfg.model)
    counts, errors = {}, {}
    for role in ROLES:
        if getattr(cfg.data, role) and getattr(cfg.mix, role) > 0:
            try:
                counts[role] = load_role(cfg, role, tokenizer)[1]
            except DataError as e:
                errors[role] = str(e)
    return counts, errors


# --- pitfalls --------------------------------------------------------------------------------
def check_config(cfg: RunConfig, available: dict[str, int] | None = None) -> list[Finding]:
    """The seed's pitfalls on a config, warnings first. `available`: tokens per role (one pass), if counted."""
    out: list[Finding] = []
    kind, method, lr = cfg.model.kind, cfg.train.method, cfg.train.lr
    lo, hi = recommended_lr(kind, method)
    evals = set(cfg.eval.evaluators)
    if cfg.mix.domain == 0:
        out.append(Finding("no_domain", "warning", "mix.domain is 0: the run trains on no domain text.",
                           "Nothing new is learned; the run only measures drift."))
    if cfg.mix.replay == 0:
        out.append(Finding(
            "no_replay", "warning", "No replay data (mix.replay = 0).",
            "Without general text the model forgets fastest; 5% replay suffices for a mild shift and 25% for a "
            "strong one (Ibrahim et al. 2024), and small models need more."))
    elif cfg.mix.replay < MIN_REPLAY:
        out.append(Finding("low_replay", "info", f"Replay is {cfg.mix.replay:.0%}, below {MIN_REPLAY:.0%}.",
                           "Even 1% helps, but 5-25% is what limits forgetting in Ibrahim et al. 2024."))
    if lr > hi:
        who = "an instruct model" if kind == "instruct" else "a base model"
        out.append(Finding(
            "lr_high", "warning", f"LR {lr:g} is above the {lo:g}..{hi:g} range for {who} with {method} training.",
            "A higher peak LR adapts more and forgets more (Ibrahim et al. 2024)"
            + ("; instruct models lose instruction following first." if kind == "instruct" else ".")))
    elif lr < lo:
        out.append(Finding("lr_low", "info", f"LR {lr:g} is below the {lo:g}..{hi:g} range for {kind}/{method}.",
                           "The run may barely move the domain metrics."
                           + (" LoRA wants about 10x the full fine-tuning LR." if method == "lora" else "")))
    budget = token_budget(cfg, available)
    passes = budget["domain"]["passes"]
    if passes is not None and passes > MAX_PASSES:
        out.append(Finding(
            "too_many_passes", "warning", f"{passes:.1f} passes over the domain documents (more than {MAX_PASSES:g}).",
            "Repeating the same documents many times memorises them and drives forgetting; add documents or "
            "paraphrases, or lower train.max_steps or mix.domain."))
    elif passes is not None and 0 < passes < 1:
        out.append(Finding("under_one_pass", "info", f"Only {passes:.0%} of the domain tokens will be trained on.",
                           "Facts in documents the run never reaches cannot be learned."))
    if not evals:
        out.append(Finding(
            "no_eval", "warning", "No evaluation (eval.evaluators is empty).",
            "Without a step-0 baseline and evaluations you cannot see domain gain or forgetting."))
    else:
        if kind == "instruct" and "ifeval" not in evals:
            out.append(Finding(
                "no_if_eval", "warning", "Instruct model without the ifeval evaluator.",
                "Instruction following is what CPT of an instruct model loses first; without IFEval its loss is "
                "invisible."))
        if "replay_ppl" not in evals and "ifeval" not in evals:
            out.append(Finding("no_general_eval", "warning", "No general evaluator (replay_ppl or ifeval).",
                               "Forgetting cannot be measured."))
        if not evals & {"domain_ppl", "knowledge_qa"}:
            out.append(Finding("no_domain_eval", "info", "No domain evaluator (domain_ppl or knowledge_qa).",
                               "The domain gain cannot be measured."))
        if cfg.eval.every_steps >= cfg.train.max_steps:
            out.append(Finding("sparse_eval", "info", "Evaluations only at step 0 and at the end.",
                               f"eval.every_steps ({cfg.eval.every_steps}) >= train.max_steps "
                               f"({cfg.train.max_steps}): no curve in between."))
    if kind == "instruct" and cfg.mix.instruct == 0:
        out.append(Finding(
            "no_instruct_data", "warning", "Instruct model trained without instruction data (mix.instruct = 0).",
            "A few instruction examples in the mix keep the answer format usable (Jiang et al. 2024)."))
    if kind == "instruct" and cfg.train.max_steps > INSTRUCT_STEPS:
        out.append(Finding("long_instruct_run", "info", f"{cfg.train.max_steps} steps on an instruct model.",
                           f"Up to {INSTRUCT_STEPS} steps usually keeps instruction following; watch IFEval."))
    return sorted(out, key=lambda f: f.level != "warning")


def rebalance_mix(shares: dict[str, float], changed: str, value: float, step: float = 0.5) -> dict[str, float]:
    """Set one role's percentage and rescale the other two in proportion so the three sum to exactly 100.

    Values are multiples of `step` (0.5 points: exact in binary floating point, so sums are exact)."""
    units = round(100 / step)
    v = min(units, max(0, round(value / step)))
    others = [r for r in ROLES if r != changed]
    w = [max(0, round(shares.get(r, 0) / step)) for r in others]
    rest = units - v
    first = round(rest * w[0] / sum(w)) if sum(w) else (rest + 1) // 2
    return {changed: v * step, others[0]: first * step, others[1]: (rest - first) * step}


# --- data files: problems before a run -------------------------------------------------------
@dataclass
class SourceReport:
    """What a data source holds and what is wrong with it."""
    path: str
    format: str | None = None
    rows: int = 0
    columns: list[str] = field(default_factory=list)
    preview: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    tokens: int | None = None


def _rows_with_lines(source: SourceConfig) -> tuple[list[tuple[int, dict]], list[str]]:
    """(line or row number, record) pairs; JSONL lines that do not parse become problems, not errors."""
    from .data.sources import read_records, source_files

    files = source_files(source)
    if len(files) == 1 and files[0].suffix == ".jsonl":
        rows, problems = [], []
        text = files[0].read_bytes().decode("utf-8", errors="replace")
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                problems.append(f"line {i}: blank line")
                continue
            try:
                rec = json.loads(line)
            except ValueError as e:
                problems.append(f"line {i}: malformed JSON ({getattr(e, 'msg', e)})")
                continue
            if not isinstance(rec, dict):
                problems.append(f"line {i}: expected a JSON object, got {type(rec).__name__}")
                continue
            rows.append((i, rec))
        if source.max_rows:
            rows = rows[: source.max_rows]
        return rows, problems
    return list(enumerate(read_records(source), 1)), []


def _is_empty(rec: dict, fmt: str, text_field: str) -> bool:
    if fmt == "text":
        v = rec.get(text_field)
        return not isinstance(v, str) or not v.strip()
    msgs = rec.get("messages")
    if isinstance(msgs, list):
        return not any(str(m.get("content", "")).strip() for m in msgs
                       if isinstance(m, dict) and m.get("role") == "assistant")
    from .data.formats import PAIR_FIELDS

    return not any(str(rec.get(b, "")).strip() for a, b in PAIR_FIELDS if a in rec)


def inspect_source(source: SourceConfig, tokenizer=None, kind: str = "instruct", preview_rows: int = 5,
                   max_problems: int = 50) -> SourceReport:
    """Rows, columns, format (text vs chat), a preview, tokens (with a tokenizer) and the problems found:
    malformed lines, empty rows and duplicates, each with its line number."""
    from .data.formats import detect_format, encode_rows
    from .data.sources import DataError

    report = SourceReport(path=source.path)
    try:
        rows, report.problems = _rows_with_lines(source)
    except DataError as e:
        report.problems.append(str(e))
        return report
    report.rows = len(rows)
    if not rows:
        report.problems.append("no readable rows")
        return report
    report.columns = sorted({k for _, r in rows for k in r})
    report.preview = [r for _, r in rows[:preview_rows]]
    try:
        report.format = detect_format([r for _, r in rows], source)
    except DataError as e:
        report.problems.append(str(e))
        return report
    seen: dict[str, int] = {}
    good = []
    for line, rec in rows:
        if _is_empty(rec, report.format, source.text_field):
            report.problems.append(f"line {line}: empty {'text' if report.format == 'text' else 'response'}")
            continue
        digest = hashlib.sha1(json.dumps(rec, sort_keys=True, default=str).encode()).hexdigest()
        if digest in seen:
            report.problems.append(f"line {line}: duplicate of line {seen[digest]}")
        else:
            seen[digest] = line
        good.append(rec)
    if tokenizer is not None and good:
        try:
            report.tokens = sum(len(ids) for ids, _ in encode_rows(good, report.format, source, tokenizer, kind))
        except DataError as e:
            report.problems.append(str(e))
    if len(report.problems) > max_problems:
        hidden = len(report.problems) - max_problems
        report.problems = report.problems[:max_problems] + [f"... and {hidden} more"]
    return report


def safe_upload_name(filename: str) -> str:
    """A plain file name from whatever the browser sent: no folders, no leading dots, a data suffix."""
    name = Path(str(filename).replace("\\", "/")).name
    stem, suffix = Path(name).stem, Path(name).suffix.lower()
    if suffix not in DATA_SUFFIXES:
        raise ValueError(f"{filename!r}: unsupported file type (use {', '.join(DATA_SUFFIXES)})")
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("._-")[:80] or "upload"
    return stem + suffix


def config_file_name(run_name: str) -> str:
    """A YAML file name from a run name the user typed (no folders, no leading dots)."""
    return (re.sub(r"[^A-Za-z0-9_.-]+", "-", run_name).strip(".-")[:80] or "run") + ".yaml"


def save_upload(home: Path, filename: str, data: bytes, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Store uploaded bytes under CPT_HOME/data only (never executed); an existing different file is kept."""
    if len(data) > max_bytes:
        raise ValueError(f"{filename!r}: {len(data) / 1e6:.1f} MB is over the {max_bytes / 1e6:.0f} MB upload limit")
    folder = (Path(home) / "data").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = safe_upload_name(filename)
    dest = folder / name
    n = 1
    while dest.exists() and dest.read_bytes() != data:
        dest = folder / f"{Path(name).stem}-{n}{Path(name).suffix}"
        n += 1
    if dest.resolve().parent != folder:
        raise ValueError(f"{filename!r}: refusing to write outside {folder}")
    tmp = folder / f".{dest.name}.part"
    tmp.write_bytes(data)
    tmp.replace(dest)
    return dest


def user_files(home: Path) -> list[Path]:
    folder = Path(home) / "data"
    return sorted(p for p in folder.glob("*") if p.is_file() and p.suffix in DATA_SUFFIXES) if folder.is_dir() else []
