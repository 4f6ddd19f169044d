"""The plan: what a run will train, computed once from its config. Data building, the trainer's callbacks, the
Launch budget table, the pre-launch checks, Monitor's requested lines, sweeps and the manifest all read it.

    cpt plan experiments/recipes/pit.yaml [--set k=v] [--json]     # a dry run: no model weights are loaded

A plan is stages (steps, sequences, shares, LR) and, per stage and role, the sequences the deficit scheduler
gives it, the input tokens they hold (seq_len each), the tokens that carry loss (chat data trains on assistant
tokens only) and passes over the role's sources. Input tokens are exact; loss tokens are the sources' loss share
times the input tokens (the manifest records the exact count packed). Counting sources needs only the model's
tokenizer (cptcore/tokenizer.py): no torch. Imports no torch.

Every stage has its shares in both units: `shares` (of input tokens: what the scheduler targets) and
`loss_shares` (of loss tokens, from each role's loss fraction; None when the sources were not counted). With
mix.unit=loss_tokens the configured shares are loss shares and the input shares are derived from them
(schedule.input_shares), so such a plan always counts its sources.
"""
from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from .config import ROLES, ConfigError, MixConfig, RunConfig, SourceConfig, StageConfig
from .data.schedule import MAX_RAMP_SEQUENCES, DeficitScheduler, input_shares, loss_shares, stage_targets
from .recipes import recipe_stages

# Sequences a plan may hold: the data keeps ~11 bytes of bookkeeping per sequence (its role, stage, rank in its
# role and loss count; the tokens are packed only when the trainer asks), so this bounds that to ~3 GB:
# 550B tokens at seq_len 2,048.
MAX_SEQUENCES = 1 << 28

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
    targets: np.ndarray = field(repr=False)   # (3,) input shares, or (sequences, 3) under progressive mixing
    order: np.ndarray = field(repr=False)     # role index of each sequence (the base schedule)
    unit: str = "tokens"                      # the unit the config's shares are in (mix.unit)
    loss_shares: dict[str, float] | None = None  # shares of loss tokens (None: sources not counted)
    loss_fractions: np.ndarray | None = field(default=None, repr=False)  # (3,) loss tokens per input token

    def mix_text(self) -> str:
        """The stage's shares in both units, the configured unit first (the other one is derived: ≈)."""
        tokens = f"{_percents(self.shares)} of input tokens"
        if self.loss_shares is None:
            return tokens
        loss = f"{_percents(self.loss_shares)} of loss tokens"
        return f"{loss} (≈ {tokens})" if self.unit == "loss_tokens" else f"{tokens} (≈ {loss})"

    def to_dict(self) -> dict:
        return {"index": self.index, "name": self.name, "first_step": self.first_step, "steps": self.steps,
                "first_seq": self.first_seq, "sequences": self.sequences, "unit": self.unit, "shares": self.shares,
                "loss_shares": self.loss_shares, "lr": self.lr,
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
        """The whole run's planned shares of input tokens."""
        n = max(1, self.sequences)
        return {r: sum(s.shares[r] * s.sequences for s in self.stages) / n for r in ROLES}

    @property
    def requested_loss(self) -> dict[str, float] | None:
        """The whole run's planned shares of loss tokens (stages weighted by their loss tokens); None when the
        sources were not counted."""
        if any(s.loss_shares is None for s in self.stages):
            return None
        weights = [sum(b.loss_tokens for b in s.roles.values()) for s in self.stages]
        total = max(1, sum(weights))
        return {r: sum(s.loss_shares[r] * w for s, w in zip(self.stages, weights)) / total for r in ROLES}

    def to_dict(self) -> dict:
        return {"steps": self.steps, "sequences": self.sequences, "seq_len": self.seq_len,
                "seqs_per_step": self.seqs_per_step, "processes": self.processes,
                "tokens_per_step": self.tokens_per_step, "tokens": self.tokens, "online": self.online,
                "requested": self.requested, "requested_loss": self.requested_loss,
                "roles": {r: b.to_dict() for r, b in self.roles.items()},
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


def check_context(cfg: RunConfig) -> None:
    """data.seq_len must fit the model's context window (times the YaRN factor when long_context sets one):
    beyond it, positions the model never saw would be trained silently."""
    from .models import context_length

    ctx = context_length(cfg.model)
    factor = cfg.long_context.yarn_factor or 1.0
    if ctx and cfg.data.seq_len > ctx * factor:
        how = (f" x long_context.yarn_factor={factor:g} = {int(ctx * factor):,}" if factor > 1 else "")
        raise ConfigError(f"data.seq_len={cfg.data.seq_len:,} exceeds the context of {cfg.model.name} "
                          f"({ctx:,} tokens{how}): lower data.seq_len, or set long_context.yarn_factor to extend "
                          "the window")


def plan(cfg: RunConfig, world_size: int | None = None, count: SourceCounter | None = None) -> Plan:
    """The run's stages with steps, sources, shares, LR and per-role sequences and tokens.

    world_size: processes sharing a step (default: from cfg.launch). count: counts one pass over a source, to
    add loss tokens, loss shares, available tokens and passes (mix.unit=loss_tokens needs it: the model's
    tokenizer is used when none is given). ConfigError names what to fix."""
    from .data.heldout import resolve

    check_context(cfg)
    cfg = resolve(cfg)  # evaluations follow the data: a user's held-out documents leave the training sources
    unit = cfg.mix.unit
    if unit == "loss_tokens" and count is None:
        count = counter_for(cfg)
        if count is None:
            raise ConfigError(f"mix.unit=loss_tokens counts each role's loss tokens with the model's tokenizer, "
                              f"and {cfg.model.name!r} has none on disk that cptcore/tokenizer.py reads "
                              f"(download it, or set mix.unit=tokens)")
    stages = recipe_stages(cfg)
    steps = split_steps(stages, cfg.train.max_steps)
    nproc = world_size or processes(cfg)
    per_step = cfg.train.batch_size * cfg.train.grad_accum * nproc
    where_from = "stages" if cfg.stages is not None else f"recipe {cfg.recipe}"
    total = cfg.train.max_steps * per_step
    if total > MAX_SEQUENCES:
        raise ConfigError(f"train.max_steps={cfg.train.max_steps:,} x {per_step} sequences per step = {total:,} "
                          f"sequences, more than one run plans ({MAX_SEQUENCES:,}): lower train.max_steps, or "
                          "raise data.seq_len to put more tokens in each sequence")
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
        if cfg.progressive.enabled and shares["domain"] > 0 and n_seq > MAX_RAMP_SEQUENCES:
            raise ConfigError(f"{where}: progressive.enabled schedules each of its {n_seq:,} sequences one by one, "
                              f"at most {MAX_RAMP_SEQUENCES:,}: lower train.max_steps or turn progressive off")
        used = [r for r in ROLES if shares[r] > 0 or (cfg.dynamic_mix.enabled and data[r])]
        counted = {r: _pass_counts(data[r], s.loss_on, s.domain_as if r == "domain" else "as_is", count)
                   for r in used}
        # loss tokens per input token of each role (0 for a role the stage does not use)
        uncounted = [r for r in used if counted[r] is None]
        fractions = None if count is None or uncounted else np.array(
            [counted[r][1] / counted[r][0] if r in counted else 0.0 for r in ROLES])
        if unit == "loss_tokens" and fractions is None:
            raise ConfigError(f"{where}: mix.unit=loss_tokens needs every role's loss tokens counted, and "
                              f"data.{uncounted[0]} streams (counted only as it trains): set mix.unit=tokens")
        targets = stage_targets(cfg.progressive, shares, n_seq)  # in mix.unit
        tokens, loss = np.array([shares[r] for r in ROLES]), shares
        if unit == "loss_tokens":  # the scheduler counts sequences: target the input shares that carry them
            targets, tokens = input_shares(targets, fractions), input_shares(tokens, fractions)
        elif fractions is not None:
            loss = dict(zip(ROLES, loss_shares(tokens, fractions).tolist()))
        else:
            loss = None
        order = DeficitScheduler().schedule(targets, n_seq)
        counts = [np.count_nonzero(order == j) for j in range(len(ROLES))]  # not bincount: 8 bytes per int8
        roles = {r: _budget(int(counts[ROLES.index(r)]), cfg.data.seq_len, counted[r]) for r in used}
        out.append(Stage(i, s.name, first, n, first * per_step, n_seq, dict(zip(ROLES, tokens.tolist())),
                         s.lr or cfg.train.lr, s.loss_on, s.domain_as, data, roles, targets, order, unit, loss,
                         fractions))
        first += n
    return Plan(out, cfg.data.seq_len, per_step, nproc, cfg.dynamic_mix.enabled)


def _pass_counts(sources: list[SourceConfig], loss_on: str, domain_as: str,
                 count: SourceCounter | None) -> tuple[int, int] | None:
    """(input tokens, loss tokens) in one pass over a role's sources; None when not counted."""
    if count is None or not sources:
        return None
    entries = [count(src, loss_on, domain_as) for src in sources]
    if any(e["tokens"] is None for e in entries):  # a streaming source is counted only as it trains
        return None
    return sum(e["tokens"] for e in entries), sum(e["loss_tokens"] for e in entries)


def _budget(sequences: int, seq_len: int, counted: tuple[int, int] | None) -> RoleBudget:
    tokens = sequences * seq_len
    if counted is None:
        return RoleBudget(sequences, tokens)
    avail, loss = counted
    # the loss of a sequence is on its last seq_len - 1 positions (each predicts the next token)
    loss_tokens = round(tokens * loss / avail * (seq_len - 1) / seq_len) if avail else 0
    return RoleBudget(sequences, tokens, loss_tokens, avail, tokens / avail if avail else None)


def _percents(shares: dict[str, float]) -> str:
    return ", ".join(f"{r} {100 * v:.3g}%" for r, v in shares.items() if v > 0)


def stage_config(cfg: RunConfig, stage: Stage) -> RunConfig:
    """The run's config as one stage sees it: its sources, input-token shares, LR and steps (not re-validated)."""
    data = cfg.data.model_copy(update={r: stage.data[r] for r in ROLES})
    return cfg.model_copy(update={
        "data": data, "mix": MixConfig(**stage.shares), "stages": None, "recipe": "cpt",
        "train": cfg.train.model_copy(update={"lr": stage.lr, "max_steps": stage.steps})})


def describe(p: Plan, cfg: RunConfig) -> str:
    """A human-readable plan: what each stage trains, for how long, at which LR, and passes over the data."""
    lines = [f"recipe {cfg.recipe if cfg.stages is None else 'custom stages'}: {p.steps} steps x "
             f"{p.tokens_per_step:,} tokens ({p.seqs_per_step} sequences of {p.seq_len}"
             f"{f', {p.processes} processes' if p.processes > 1 else ''}) = {p.tokens:,} tokens"
             + (" (dynamic mix: roles follow the evaluations from this base)" if p.online else ""),
             f"  shares target {'loss' if cfg.mix.unit == 'loss_tokens' else 'input'} tokens (mix.unit="
             f"{cfg.mix.unit})"]
    for s in p.stages:
        extra = (", loss on prompts too" if s.loss_on == "all" else "") + \
                (", documents as fact instructions" if s.domain_as == "facts" else "") + \
                (", progressive ramp" if s.targets.ndim == 2 else "")
        lines.append(f"  {s.index + 1}. {s.name:14} steps {s.first_step + 1}-{s.first_step + s.steps} "
                     f"({s.sequences * p.seq_len:,} tokens)  lr {s.lr:g}{extra}")
        lines.append(f"     mix {s.mix_text()}")
        for role, b in s.roles.items():
            share = f"{100 * s.shares[role]:5.1f}% of input" + (
                "" if s.loss_shares is None else f", {100 * s.loss_shares[role]:5.1f}% of loss")
            counted = "" if b.available is None else (f", ~{b.loss_tokens:,} with loss, {b.passes:.2f} passes "
                                                      f"over {b.available:,}")
            lines.append(f"     {role:8} {b.tokens:>12,} tokens ({share}){counted}   "
                         f"{', '.join(x.path for x in s.data[role])}")
    return "\n".join(lines)


_COUNTS: dict[tuple, dict] = {}  # one pass over a source, per (source, its files, tokenizer, kind, masking)


def counter_for(cfg: RunConfig, progress: bool = False) -> SourceCounter | None:
    """A source counter with the model's tokenizer, torch-free where the tokenizer is on disk (None when it
    is not: a hub model not downloaded yet). Counts are cached per (source and its files' size and mtime,
    tokenizer, model kind, loss_on, domain_as): changing the LR or the steps re-reads nothing. Counting a
    source tokenizes it into the token cache (cptcore/data/cache.py) that training then reads."""
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
        if source.streaming:  # counting would read the whole stream
            from .data.streaming import stream_entry

            return stream_entry(source)
        if key not in _COUNTS:
            _COUNTS[key] = source_entry(source, tok, kind, loss_on, domain_as, cfg.data.num_proc, progress)
        return _COUNTS[key]

    return count


def cmd_plan(args) -> int:
    """`cpt plan CONFIG`: the stages, steps and tokens per role a config will train (no model weights)."""
    cfg = RunConfig.load(args.config, args.set)
    p = plan(cfg, count=None if args.no_count else counter_for(cfg))
    from .data.leaks import check_leaks

    check_leaks(cfg, p)  # a plan that trains on its own evaluation items is refused here, as in training
    print(json.dumps(p.to_dict(), indent=1) if args.json else describe(p, cfg))
    return 0


def cmd_prepare(args) -> int:
    """`cpt prepare CONFIG`: tokenize every source the config trains on into the token cache (a later plan,
    Launch budget, run or sweep point over the same sources tokenizes nothing)."""
    import time

    from .data.cache import cache_root

    cfg = RunConfig.load(args.config, args.set)
    if args.num_proc:
        cfg = cfg.model_copy(update={"data": cfg.data.model_copy(update={"num_proc": args.num_proc})})
    count = counter_for(cfg, progress=not args.json)
    if count is None:
        raise ConfigError(f"{cfg.model.name!r} has no tokenizer on disk that cptcore/tokenizer.py reads: "
                          "`cpt train` prepares its sources when it starts")
    t0 = time.time()
    p = plan(cfg, count=count)
    done, seen = [], set()
    for s in p.stages:
        for role in s.roles:
            for src in s.data[role]:
                entry = count(src, s.loss_on, s.domain_as if role == "domain" else "as_is")
                if (entry["path"], entry.get("cache")) not in seen:
                    seen.add((entry["path"], entry.get("cache")))
                    done.append({"role": role, **{k: entry.get(k) for k in ("path", "rows", "tokens", "cache")}})
    if args.json:
        print(json.dumps({"sources": done, "seconds": round(time.time() - t0, 3), "cache": str(cache_root())}))
        return 0
    for d in done:
        what = "streams: tokenized as it trains" if d["cache"] is None else \
            f"{d['rows']:,} rows, {d['tokens']:,} tokens  cache {d['cache'][:12]}"
        print(f"{d['role']:8} {d['path']}: {what}")
    print(f"prepared in {time.time() - t0:.1f} s under {cache_root() / 'tokens'}")
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
    p.add_argument("--no-count", action="store_true", help="do not read the sources (no passes or loss tokens; "
                   "mix.unit=loss_tokens reads them anyway: its schedule needs them)")
    p.set_defaults(func=cmd_plan)

    pr = sub.add_parser("prepare", help="tokenize a config's sources once into the token cache under CPT_HOME")
    pr.add_argument("config", type=Path)
    pr.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config value")
    pr.add_argument("--num-proc", type=int, default=None, help="tokenizing processes (default data.num_proc)")
    pr.add_argument("--json", action="store_true")
    pr.set_defaults(func=cmd_prepare)
