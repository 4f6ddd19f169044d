"""The plan: what a run will train, computed once from its config. Data building, the trainer's callbacks, the
Launch budget table, the pre-launch checks, Monitor's requested lines, sweeps and the manifest all read it.

    cpt plan experiments/recipes/pit.yaml [--set k=v] [--json]     # a dry run: no model weights are loaded

A plan is stages (steps, sequences, shares, LR) and, per stage and role, the sequences the deficit scheduler
gives it, the input tokens they hold (seq_len each), the tokens that carry loss (chat data trains on assistant
tokens only) and passes over the role's sources. Input tokens are exact; loss tokens are the sources' loss share
times the input tokens (the manifest records the exact count packed). Counting sources needs only the model's
tokenizer (cptcore/tokenizer.py): no torch. Imports no torch.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .config import ROLES, ConfigError, MixConfig, RunConfig, SourceConfig, StageConfig
from .data.schedule import DeficitScheduler, stage_targets
from .recipes import recipe_stages

# (source, loss_on, domain_as) -> {"tokens", "loss_tokens", "rows", "format", ...} for one pass over a source
SourceCounter = Callable[[SourceConfig, str, str], dict]


@dataclass
class RoleBudget:
    """One role's share of a stage (or of the whole run)."""
    sequences: int
    tokens: int                      # input tokens trained: sequences x seq_len (exact)
    loss_tokens: int | None = None   # tokens that carry loss, from the sources' loss share (None: not counted)
    available: int | None = None     # input tokens in one pass over the role's sources
    passes: float | None = None      # tokens / available

    def to_dict(self) -> dict:
        return {"sequences": self.sequences, "tokens": self.tokens, "loss_tokens": self.loss_tokens,
                "available": self.available, "passes": None if self.passes is None else round(self.passes, 4)}


@dataclass
class Stage:
    """One stage as it trains: steps counted from the run's start, concrete sources, shares and LR."""
    index: int
    name: str
    first_step: int
    steps: int
    first_seq: int
    sequences: int
    shares: dict[str, float]
    lr: float
    loss_on: str
    domain_as: str
    data: dict[str, list[SourceConfig]]
    roles: dict[str, RoleBudget]
    targets: np.ndarray = field(repr=False)   # (3,) shares, or (sequences, 3) under progressive mixing
    order: np.ndarray = field(repr=False)     # role index of each sequence (the base schedule)

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "first_step": self.first_step, "steps": self.steps,
                "first_seq": self.first_seq, "sequences": self.sequences, "shares": self.shares, "lr": self.lr,
                "loss_on": self.loss_on, "domain_as": self.domain_as, "progressive": self.targets.ndim == 2,
                "sources": {r: [s.path for s in self.data[r]] for r in self.roles},
                "roles": {r: b.to_dict() for r, b in self.roles.items()}}


@dataclass
class Plan:
    stages: list[Stage]
    seq_len: int
    seqs_per_step: int   # batch_size x grad_accum x processes
    processes: int
    online: bool         # dynamic mixing: roles are chosen at fetch time, starting from this plan

    @property
    def steps(self) -> int:
        return sum(s.steps for s in self.stages)

    @property
    def tokens_per_step(self) -> int:
        return self.seqs_per_step * self.seq_len

    @property
    def sequences(self) -> int:
        return sum(s.sequences for s in self.stages)

    @property
    def tokens(self) -> int:
        return self.sequences * self.seq_len

    @property
    def roles(self) -> dict[str, RoleBudget]:
        """The whole run per role; available and passes only where every stage uses the same sources."""
        out = {}
        for role in ROLES:
            parts = [(s, s.roles[role]) for s in self.stages if role in s.roles]
            if not parts:
                continue
            seqs = sum(b.sequences for _, b in parts)
            loss = None if any(b.loss_tokens is None for _, b in parts) else sum(b.loss_tokens for _, b in parts)
            same = len({json.dumps([x.model_dump() for x in s.data[role]]) + s.loss_on + s.domain_as
                        for s, _ in parts}) == 1
            avail = parts[0][1].available if same else None
            tokens = seqs * self.seq_len
            out[role] = RoleBudget(seqs, tokens, loss, avail, tokens / avail if avail else None)
        return out

    @property
    def requested(self) -> dict[str, float]:
        """The whole run's planned token shares."""
        n = max(1, self.sequences)
        return {r: sum(s.shares[r] * s.sequences for s in self.stages) / n for r in ROLES}

    def to_dict(self) -> dict:
        return {"steps": self.steps, "sequences": self.sequences, "seq_len": self.seq_len,
                "seqs_per_step": self.seqs_per_step, "processes": self.processes,
                "tokens_per_step": self.tokens_per_step, "tokens": self.tokens, "online": self.online,
                "requested": self.requested, "roles": {r: b.to_dict() for r, b in self.roles.items()},
                "stages": [s.to_dict() for s in self.stages]}


def split_steps(stages: list[StageConfig], total: int) -> list[int]:
    """Steps per stage: fixed max_steps, budget shares of `total`, the rest split equally."""
    fixed = [s.max_steps if s.max_steps is not None else (round(s.budget * total) if s.budget else None)
             for s in stages]
    budgeted = [i for i, s in enumerate(stages) if s.budget is not None]
    if budgeted and abs(sum(stages[i].budget for i in budgeted) - 1) < 1e-6:  # shares of the whole: sum exactly
        fixed[budgeted[-1]] = total - sum(fixed[i] for i in budgeted[:-1])
    free = [i for i, f in enumerate(fixed) if f is None]
    left = total - sum(f for f in fixed if f is not None)
    for j, i in enumerate(free):
        fixed[i] = left // len(free) + (1 if j < left % len(free) else 0)
    return fixed


def processes(cfg: RunConfig) -> int:
    """Processes that share a step (each trains batch_size x grad_accum sequences per step)."""
    return cfg.launch.nproc if cfg.launch.launcher != "local" else 1


def plan(cfg: RunConfig, world_size: int | None = None, count: SourceCounter | None = None) -> Plan:
    """The run's stages with steps, sources, shares, LR and per-role sequences and tokens.

    world_size: processes sharing a step (default: from cfg.launch). count: counts one pass over a source, to
    add loss tokens, available tokens and passes. ConfigError names what to fix."""
    stages = recipe_stages(cfg)
    steps = split_steps(stages, cfg.train.max_steps)
    nproc = world_size or processes(cfg)
    per_step = cfg.train.batch_size * cfg.train.grad_accum * nproc
    where_from = "stages" if cfg.stages is not None else f"recipe {cfg.recipe}"
    out, first = [], 0
    for i, (s, n) in enumerate(zip(stages, steps)):
        where = f"{where_from}: stage {i + 1} {s.name!r}"
        if n < 1:
            raise ConfigError(f"{where} gets {n} steps: raise train.max_steps (now {cfg.train.max_steps}) "
                              f"or this stage's budget")
        shares = (s.mix or cfg.mix).shares()
        data = {r: (getattr(s.data, r) if getattr(s.data, r) is not None else getattr(cfg.data, r)) for r in ROLES}
        for role in ROLES:
            if shares[role] > 0 and not data[role]:
                hint = {"instruct": "data.qa" if s.data.instruct is not None and cfg.stages is None
                        else "data.instruct", "domain": "data.domain", "replay": "data.replay"}[role]
                raise ConfigError(f"{where} mixes {role} (share {shares[role]:g}) but has no {role} data "
                                  f"(set {hint}{' or the stage data' if cfg.stages is not None else ''})")
        if cfg.progressive.enabled and shares["domain"] >= 1:
            raise ConfigError(f"{where}: progressive.enabled needs a replay or instruct share to ramp from "
                              f"(the domain share is 1)")
        n_seq = n * per_step
        targets = stage_targets(cfg.progressive, shares, n_seq)
        order = DeficitScheduler().schedule(targets, n_seq)
        counts = np.bincount(order, minlength=len(ROLES))
        roles = {}
        for k, role in enumerate(ROLES):
            if shares[role] > 0 or (cfg.dynamic_mix.enabled and data[role]):
                roles[role] = _budget(int(counts[k]), cfg.data.seq_len, data[role], s.loss_on,
                                      s.domain_as if role == "domain" else "as_is", count)
        out.append(Stage(i, s.name, first, n, first * per_step, n_seq, shares, s.lr or cfg.train.lr, s.loss_on,
                         s.domain_as, data, roles, targets, order))
        first += n
    return Plan(out, cfg.data.seq_len, per_step, nproc, cfg.dynamic_mix.enabled)


def _budget(sequences: int, seq_len: int, sources: list[SourceConfig], loss_on: str, domain_as: str,
            count: SourceCounter | None) -> RoleBudget:
    tokens = sequences * seq_len
    if count is None or not sources:
        return RoleBudget(sequences, tokens)
    entries = [count(src, loss_on, domain_as) for src in sources]
    avail = sum(e["tokens"] for e in entries)
    loss = sum(e["loss_tokens"] for e in entries)
    # the loss of a sequence is on its last seq_len - 1 positions (each predicts the next token)
    loss_tokens = round(tokens * loss / avail * (seq_len - 1) / seq_len) if avail else 0
    return RoleBudget(sequences, tokens, loss_tokens, avail, tokens / avail if avail else None)


def stage_config(cfg: RunConfig, stage: Stage) -> RunConfig:
    """The run's config as one stage sees it: its sources, shares, LR and steps (not re-validated)."""
    data = cfg.data.model_copy(update={r: stage.data[r] for r in ROLES})
    return cfg.model_copy(update={
        "data": data, "mix": MixConfig(**stage.shares), "stages": None, "recipe": "cpt",
        "train": cfg.train.model_copy(update={"lr": stage.lr, "max_steps": stage.steps})})


def describe(p: Plan, cfg: RunConfig) -> str:
    """A human-readable plan: what each stage trains, for how long, at which LR, and passes over the data."""
    lines = [f"recipe {cfg.recipe if cfg.stages is None else 'custom stages'}: {p.steps} steps x "
             f"{p.tokens_per_step:,} tokens ({p.seqs_per_step} sequences of {p.seq_len}"
             f"{f', {p.processes} processes' if p.processes > 1 else ''}) = {p.tokens:,} tokens"
             + (" (dynamic mix: roles follow the evaluations from this base)" if p.online else "")]
    for s in p.stages:
        mix = ", ".join(f"{r} {100 * v:g}%" for r, v in s.shares.items() if v > 0)
        extra = (", loss on prompts too" if s.loss_on == "all" else "") + \
                (", documents as fact instructions" if s.domain_as == "facts" else "") + \
                (", progressive ramp" if s.targets.ndim == 2 else "")
        lines.append(f"  {s.index + 1}. {s.name:14} steps {s.first_step + 1}-{s.first_step + s.steps} "
                     f"({s.sequences * p.seq_len:,} tokens)  lr {s.lr:g}  mix {mix}{extra}")
        for role, b in s.roles.items():
            counted = "" if b.available is None else (f", ~{b.loss_tokens:,} with loss, {b.passes:.2f} passes "
                                                      f"over {b.available:,}")
            lines.append(f"     {role:8} {b.tokens:>12,} tokens{counted}   "
                         f"{', '.join(x.path for x in s.data[role])}")
    return "\n".join(lines)


_COUNTS: dict[tuple, dict] = {}  # one pass over a source, per (source, its files, tokenizer, kind, masking)


def counter_for(cfg: RunConfig) -> SourceCounter | None:
    """A source counter with the model's tokenizer, torch-free where the tokenizer is on disk (None when it
    is not: a hub model not downloaded yet). Counts are cached per (source and its files' size and mtime,
    tokenizer, model kind, loss_on, domain_as): changing the LR or the steps re-reads nothing."""
    from .data.formats import source_entry
    from .data.sources import source_files
    from .tokenizer import load_text_tokenizer

    tok = load_text_tokenizer(cfg.model)
    if tok is None:
        return None
    kind = cfg.model.kind

    def count(source: SourceConfig, loss_on: str, domain_as: str) -> dict:
        try:
            files = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in source_files(source))
        except (OSError, ValueError):  # a missing file: source_entry raises the DataError that names it
            files = ()
        key = (source.model_dump_json(), files, str(tok.folder), kind, loss_on, domain_as)
        if key not in _COUNTS:
            _COUNTS[key] = source_entry(source, tok, kind, loss_on, domain_as)
        return _COUNTS[key]

    return count


def cmd_plan(args) -> int:
    """`cpt plan CONFIG`: the stages, steps and tokens per role a config will train (no model weights)."""
    cfg = RunConfig.load(args.config, args.set)
    p = plan(cfg, count=None if args.no_count else counter_for(cfg))
    print(json.dumps(p.to_dict(), indent=1) if args.json else describe(p, cfg))
    return 0


def cmd_recipes(args) -> int:
    """`cpt recipes [CONFIG]`: the built-in recipes, or the plan of a config."""
    from .recipes import RECIPES

    if args.config is not None:
        return cmd_plan(args)
    for name, text in RECIPES.items():
        print(f"{name:20} {text}")
    return 0


def add_parser(sub) -> None:
    from pathlib import Path

    r = sub.add_parser("recipes", help="list the built-in recipes (with a config: its plan, as `cpt plan`)")
    r.add_argument("config", type=Path, nargs="?")
    r.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    r.set_defaults(func=cmd_recipes, json=False, no_count=False)

    p = sub.add_parser("plan", help="print what a config will train: stages, steps, tokens and passes per role")
    p.add_argument("config", type=Path)
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-count", action="store_true", help="do not read the sources (no passes or loss tokens)")
    p.set_defaults(func=cmd_plan)
