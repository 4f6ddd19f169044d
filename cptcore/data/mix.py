"""Exact token mixes: each role's share of trained tokens matches the requested share.

Every packed sequence holds exactly seq_len tokens of one role, so token shares equal sequence shares.
A deficit scheduler picks, for each next sequence, the role furthest below its target; after n sequences
every role is within one sequence of its target (|error| <= 1/n), deterministically.
Multi-stage runs lay their stages end to end; progressive mixing gives every sequence its own target
(a ramp); dynamic mixing picks each sequence's role only when the trainer fetches it (OnlineMix), so an
evaluation can still change the shares.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import ROLES, RunConfig
from .formats import IGNORE, detect_format, encode_rows
from .pack import Packer
from .sources import DataError, local_path, read_records, sha256, source_files


def schedule_roles(shares: dict[str, float], n: int) -> np.ndarray:
    """Role index (into ROLES) of each of n sequences; a share of 0 never appears."""
    target = np.array([shares.get(r, 0.0) for r in ROLES], dtype=np.float64)
    counts = np.zeros(len(ROLES))
    out = np.empty(n, dtype=np.int8)
    for i in range(n):
        deficit = target * (i + 1) - counts
        deficit[target == 0] = -np.inf
        k = int(np.argmax(deficit))  # ties go to the earlier role: deterministic
        out[i] = k
        counts[k] += 1
    return out


def schedule_varying(targets: np.ndarray) -> np.ndarray:
    """Like schedule_roles when the target shares change per sequence (targets: (n, 3), rows sum to 1)."""
    expected, counts = np.zeros(len(ROLES)), np.zeros(len(ROLES))
    out = np.empty(len(targets), dtype=np.int8)
    for i, t in enumerate(targets):
        expected += t
        deficit = expected - counts
        deficit[t == 0] = -np.inf
        k = int(np.argmax(deficit))
        out[i] = k
        counts[k] += 1
    return out


def ramp_targets(shares: dict[str, float], start_domain: float, ramp_ratio: float, n: int) -> np.ndarray:
    """(n, 3) targets: the domain share moves linearly from start_domain to its target over ramp_ratio*n
    sequences, then holds; replay and instruct split the rest in their target proportions."""
    target = np.array([shares[r] for r in ROLES], dtype=np.float64)
    ramp = max(1, round(ramp_ratio * n))
    t = np.minimum(1.0, np.arange(n) / ramp)
    domain = start_domain + (target[0] - start_domain) * t
    rest = target[1:] / target[1:].sum()
    return np.column_stack([domain, np.outer(1 - domain, rest)])


@dataclass
class MixedData:
    """The run's training sequences in the order they are trained, plus what went into them."""
    input_ids: np.ndarray  # (n, seq_len) int32
    labels: np.ndarray     # (n, seq_len) int32, IGNORE where no loss
    roles: np.ndarray      # (n,) index into ROLES; -1 until an online mix fills the row
    manifest: dict
    stage: np.ndarray | None = None                   # (n,) stage index of each sequence
    stages: list[dict] = field(default_factory=list)  # name, first_step, steps, first_seq, sequences, shares, lr
    online: "OnlineMix | None" = None

    def __len__(self) -> int:
        return len(self.roles)

    def fetch(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        if self.roles[i] < 0:
            self.online.fill(self, i)
        return self.input_ids[i], self.labels[i], int(self.roles[i])

    def realized_shares(self, n_sequences: int, start: int = 0) -> dict[str, float]:
        """Token share of each role among sequences start..n_sequences-1 that were trained."""
        n = max(start + 1, min(n_sequences, len(self.roles)))
        roles = self.roles[start:n]
        roles = roles[roles >= 0]
        counts = np.bincount(roles, minlength=len(ROLES))
        return {r: float(c / max(1, len(roles))) for r, c in zip(ROLES, counts)}

    def stage_at(self, seq: int) -> dict:
        """The stage a sequence index belongs to."""
        return next((s for s in reversed(self.stages) if s["first_seq"] <= seq), self.stages[0])


def facts_source_rows(rows: list[dict], text_field: str) -> list[dict]:
    from ..synth import facts_from_documents  # Knowledge-Instruct without a model

    facts = facts_from_documents(rows, text_field)
    if not facts:
        raise DataError("domain_as=facts: no sentence names its document's entity (give documents an "
                        "'entity' field, or write facts with `cpt synth DOCS --kind facts`)")
    return facts


def load_role(cfg: RunConfig, role: str, tokenizer, loss_on: str = "answers",
              domain_as: str = "as_is") -> tuple[list, list[dict]]:
    """Encode every source of a role; return examples and per-source manifest entries."""
    examples, entries = [], []
    for source in getattr(cfg.data, role):
        rows = read_records(source)
        if role == "domain" and domain_as == "facts":
            rows = facts_source_rows(rows, source.text_field)
            source = source.model_copy(update={"format": "chat"})
        fmt = detect_format(rows, source)
        encoded = encode_rows(rows, fmt, source, tokenizer, cfg.model.kind)
        if not encoded:
            raise DataError(f"{source.path}: every row is empty")
        if loss_on == "all":  # also learn the prompts (raw text already trains on every token)
            encoded = [(ids, ids) for ids, _ in encoded]
        n_tokens = sum(len(ids) for ids, _ in encoded)
        n_loss = sum(len(ids) if lab is ids else int(np.count_nonzero(np.asarray(lab) != IGNORE))
                     for ids, lab in encoded)
        if n_loss == 0:
            raise DataError(f"{source.path}: no trainable tokens (chat records without assistant turns?)")
        lp = local_path(source)
        files = [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256(f)} for f in source_files(source)]
        entries.append({"path": source.path, "local": lp is not None, "format": fmt, "rows": len(rows),
                        "examples": len(encoded), "tokens": n_tokens, "loss_tokens": n_loss, "files": files})
        examples.extend(encoded)
    return examples, entries


def role_packers(cfg: RunConfig, tokenizer, roles: list[str], loss_on: str = "answers",
                 domain_as: str = "as_is") -> dict[str, tuple[Packer, list[dict]]]:
    out = {}
    for role in roles:
        examples, entries = load_role(cfg, role, tokenizer, loss_on, domain_as)
        out[role] = (Packer(examples, cfg.data.seq_len, seed=cfg.train.seed * 31 + ROLES.index(role)), entries)
    return out


def build_mix(cfg: RunConfig, tokenizer, n_sequences: int, *, loss_on: str = "answers", domain_as: str = "as_is",
              targets: np.ndarray | None = None) -> MixedData:
    """Tokenize each role's sources, pack them, and lay out n_sequences in mix order.

    targets: per-sequence shares (progressive mixing); default: cfg.mix for every sequence.
    """
    shares = cfg.mix.shares()
    seq_len = cfg.data.seq_len
    roles = schedule_roles(shares, n_sequences) if targets is None else schedule_varying(targets)
    input_ids = np.empty((n_sequences, seq_len), dtype=np.int32)
    labels = np.empty((n_sequences, seq_len), dtype=np.int32)
    manifest: dict = {"seq_len": seq_len, "sequences": n_sequences, "requested": shares, "roles": {}}
    packers = role_packers(cfg, tokenizer, [r for r in ROLES if shares[r] > 0], loss_on, domain_as)
    for role, (packer, entries) in packers.items():
        idx = np.flatnonzero(roles == ROLES.index(role))
        for i in idx:
            input_ids[i], labels[i] = packer.next()
        manifest["roles"][role] = _role_manifest(entries, packer, len(idx) * seq_len, len(idx))
    data = MixedData(input_ids, labels, roles, manifest)
    manifest["realized"] = data.realized_shares(n_sequences)
    return data


def _role_manifest(entries: list[dict], packer: Packer, trained: int, sequences: int) -> dict:
    return {"sources": entries, "tokens_available": packer.tokens_per_pass, "sequences": int(sequences),
            "tokens_trained": int(trained), "passes": round(trained / packer.tokens_per_pass, 3)}


def stage_targets(cfg: RunConfig, shares: dict[str, float], n: int) -> np.ndarray | None:
    """Per-sequence targets of a stage under progressive mixing (None: constant shares)."""
    p = cfg.progressive
    if not p.enabled or shares["domain"] <= 0:
        return None
    return ramp_targets(shares, p.start_domain, p.ramp_ratio, n)


def build_stages(cfg: RunConfig, tokenizer, seqs_per_step: int, online: bool = False) -> MixedData:
    """All stages of cfg's recipe end to end; online=True leaves each role choice to fetch time."""
    from ..recipes import plan, stage_config

    stages = plan(cfg)
    if not online and len(stages) == 1 and stage_targets(cfg, stages[0].shares, 1) is None:
        s = stages[0]
        data = build_mix(stage_config(cfg, s), tokenizer, s.steps * seqs_per_step, loss_on=s.loss_on,
                         domain_as=s.domain_as)
        data.stage = np.zeros(len(data), dtype=np.int8)
        data.stages = [_stage_info(s, seqs_per_step)]
        data.manifest["stages"] = data.stages
        return data
    parts, infos, stage_packers, stage_bases = [], [], [], []
    for s in stages:
        scfg = stage_config(cfg, s)
        n = s.steps * seqs_per_step
        ramp = stage_targets(cfg, s.shares, n)
        base = ramp if ramp is not None else np.tile([s.shares[r] for r in ROLES], (n, 1))
        if online:
            roles = [r for r in ROLES if s.data[r]]  # every role with sources can receive share
            packers = role_packers(scfg, tokenizer, roles, s.loss_on, s.domain_as)
            stage_packers.append({r: p for r, (p, _) in packers.items()})
            stage_bases.append(base)
            manifest = {"requested": s.shares, "roles": {r: {"sources": e} for r, (_, e) in packers.items()}}
            parts.append((np.empty((n, cfg.data.seq_len), np.int32), np.empty((n, cfg.data.seq_len), np.int32),
                          np.full(n, -1, dtype=np.int8), manifest))
        else:
            d = build_mix(scfg, tokenizer, n, loss_on=s.loss_on, domain_as=s.domain_as, targets=ramp)
            parts.append((d.input_ids, d.labels, d.roles, d.manifest))
        infos.append(_stage_info(s, seqs_per_step))
    total = sum(len(p[2]) for p in parts)
    data = MixedData(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                     np.concatenate([p[2] for p in parts]),
                     {"seq_len": cfg.data.seq_len, "sequences": total,
                      "requested": {r: sum(s.shares[r] * len(p[2]) for s, p in zip(stages, parts)) / total
                                    for r in ROLES},  # the whole run's planned shares
                      "roles": _merge_roles([p[3]["roles"] for p in parts]), "online": online,
                      "progressive": cfg.progressive.enabled,
                      "stages": [i | {"requested": p[3]["requested"], "roles": p[3]["roles"]}
                                 for i, p in zip(infos, parts)]},
                     stage=np.concatenate([np.full(len(p[2]), k, dtype=np.int8) for k, p in enumerate(parts)]),
                     stages=infos)
    if online:
        data.online = OnlineMix(infos, stage_packers, stage_bases)
    else:
        data.manifest["realized"] = data.realized_shares(len(data))
    return data


def _merge_roles(per_stage: list[dict]) -> dict:
    """Per role over all stages: every source used, sequences and tokens trained (passes stay per stage)."""
    out: dict = {}
    for roles in per_stage:
        for role, m in roles.items():
            o = out.setdefault(role, {"sources": [], "sequences": 0, "tokens_trained": 0})
            o["sources"] += [e for e in m["sources"] if e["path"] not in {x["path"] for x in o["sources"]}]
            o["sequences"] += m.get("sequences", 0)
            o["tokens_trained"] += m.get("tokens_trained", 0)
    return out


def _stage_info(s, seqs_per_step: int) -> dict:
    return {"index": s.index, "name": s.name, "first_step": s.first_step, "steps": s.steps,
            "first_seq": s.first_step * seqs_per_step, "sequences": s.steps * seqs_per_step,
            "shares": s.shares, "lr": s.lr, "loss_on": s.loss_on, "domain_as": s.domain_as}


class OnlineMix:
    """Chooses each sequence's role when the trainer fetches it, so the shares can change mid-run.

    The stage's base targets (constant, or a progressive ramp) plus a shift moved from domain to replay or
    instruct; the deficit scheduler restarts at every change, so a new share holds from the next sequence
    fetched. The data loader reads one batch ahead: a change made after step s trains from step s + 2.
    Resuming re-creates the choices from the checkpoint on, not the ones before it.
    """

    def __init__(self, stages: list[dict], packers: list[dict[str, Packer]], bases: list[np.ndarray]):
        self.stages, self.packers, self.bases = stages, packers, bases
        self.shift = {"replay": 0.0, "instruct": 0.0}
        self._stage = -1
        self._restart()

    def _restart(self) -> None:
        self.expected, self.counts = np.zeros(len(ROLES)), np.zeros(len(ROLES))

    def target(self, i: int) -> np.ndarray:
        """Shares for sequence i: the stage's base plus the current shift (stages without domain stay put)."""
        k = next(k for k in reversed(range(len(self.stages))) if self.stages[k]["first_seq"] <= i)
        t = self.bases[k][i - self.stages[k]["first_seq"]].copy()
        if t[0] > 0:
            for role, delta in self.shift.items():
                j = ROLES.index(role)
                if role in self.packers[k]:
                    moved = min(delta, t[0])
                    t[j] += moved
                    t[0] -= moved
        return t

    def current_shares(self, i: int) -> dict[str, float]:
        return {r: float(v) for r, v in zip(ROLES, self.target(min(i, self.stages[-1]["first_seq"]
                                                                     + self.stages[-1]["sequences"] - 1)))}

    def set_shift(self, role: str, delta: float) -> None:
        self.shift[role] = max(0.0, delta)
        self._restart()

    def fill(self, data: MixedData, i: int) -> None:
        k = int(data.stage[i])
        if k != self._stage:
            self._stage = k
            self._restart()
        t = self.target(i)
        self.expected += t
        deficit = self.expected - self.counts
        deficit[t == 0] = -np.inf
        role = int(np.argmax(deficit))
        self.counts[role] += 1
        data.input_ids[i], data.labels[i] = self.packers[k][ROLES[role]].next()
        data.roles[i] = role


def count_role_tokens(cfg: RunConfig, tokenizer) -> dict[str, int]:
    """Tokens available per role (one pass over its sources), for budget previews and pass counts."""
    return {role: sum(e["tokens"] for e in load_role(cfg, role, tokenizer)[1])
            for role in ROLES if getattr(cfg.data, role)}
