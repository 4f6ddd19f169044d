"""Exact token mixes: the plan's sequences laid out in the order they train, each packed from its role's data.

The plan (cptcore/plan.py) decides how many sequences each stage trains and which role each comes from (the
deficit scheduler, cptcore/data/schedule.py); this module tokenizes each role's sources, packs them, and fills
the sequences. Dynamic mixing (OnlineMix) picks each sequence's role only when the trainer fetches it, so an
evaluation can still change the shares. The manifest records what was actually packed, next to the plan.

Shares come in two units (`unit`, as mix.unit): "tokens" counts input tokens (one per position: a sequence
share), "loss_tokens" counts the label positions that carry loss (labels[1:] != IGNORE), exactly, per sequence.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ROLES, RunConfig
from ..plan import Plan, Stage, plan as make_plan
from .formats import IGNORE, encode_source
from .pack import Packer
from .schedule import DeficitScheduler, loss_shares


@dataclass
class MixedData:
    """The run's training sequences in the order they are trained, plus what went into them."""
    plan: Plan
    input_ids: np.ndarray  # (n, seq_len) int32
    labels: np.ndarray     # (n, seq_len) int32, IGNORE where no loss
    roles: np.ndarray      # (n,) index into ROLES; -1 until an online mix fills the row
    stage: np.ndarray      # (n,) stage index of each sequence
    loss_counts: np.ndarray  # (n,) positions that carry loss per sequence (loss_positions); 0 until filled
    manifest: dict
    online: "OnlineMix | None" = None

    def __len__(self) -> int:
        return len(self.roles)

    @property
    def stages(self) -> list[Stage]:
        return self.plan.stages

    def fetch(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        if self.roles[i] < 0:
            self.online.fill(self, i)
        return self.input_ids[i], self.labels[i], int(self.roles[i])

    def realized_shares(self, n_sequences: int, start: int = 0, unit: str = "tokens") -> dict[str, float]:
        """Each role's share of the input tokens (unit "tokens") or of the loss tokens ("loss_tokens") among
        sequences start..n_sequences-1 that were trained."""
        n = max(start + 1, min(n_sequences, len(self.roles)))
        roles = self.roles[start:n]
        done = roles >= 0
        weights = self.loss_counts[start:n][done] if unit == "loss_tokens" else None
        counts = np.bincount(roles[done], weights=weights, minlength=len(ROLES))
        total = counts.sum()
        return {r: float(c / total) if total else 0.0 for r, c in zip(ROLES, counts)}

    def requested_shares(self, n_sequences: int, start: int = 0, unit: str = "tokens") -> dict[str, float]:
        """The mean target share per role over sequences start..n_sequences-1 of one stage: what the plan (or
        the online mix, with its shifts) asked of the sequences whose realized share realized_shares() gives.
        unit "loss_tokens": each target in loss tokens (with the stage's loss fractions: a counted plan)."""
        n = max(start + 1, min(n_sequences, len(self.roles)))
        s = self.stage_of(start)
        if self.online is not None:
            done = self.roles[start:n] >= 0
            t = self.online.used[start:n][done]
            t = t if len(t) else self.online.target(start)
        else:
            t = s.targets if s.targets.ndim == 1 else s.targets[start - s.first_seq:n - s.first_seq]
        if unit == "loss_tokens":
            t = loss_shares(t, s.loss_fractions)
        mean = t if t.ndim == 1 else t.mean(axis=0)
        return {r: float(v) for r, v in zip(ROLES, mean)}

    def stage_of(self, seq: int) -> Stage:
        """The stage a sequence index belongs to."""
        return self.plan.stages[int(self.stage[min(max(seq, 0), len(self.stage) - 1)])]


def loss_positions(labels: np.ndarray) -> np.ndarray:
    """Positions that carry loss per sequence: labels[1:] != IGNORE (each position predicts the next token)."""
    return np.count_nonzero(labels[..., 1:] != IGNORE, axis=-1)


def load_role(cfg: RunConfig, role: str, tokenizer, loss_on: str = "answers",
              domain_as: str = "as_is") -> tuple[list, list[dict]]:
    """Encode every source of a role; return examples and per-source manifest entries."""
    examples, entries = [], []
    for source in getattr(cfg.data, role):
        encoded, entry = encode_source(source, tokenizer, cfg.model.kind, loss_on,
                                       domain_as if role == "domain" else "as_is")
        examples.extend(encoded)
        entries.append(entry)
    return examples, entries


def role_packers(cfg: RunConfig, tokenizer, roles: list[str], loss_on: str = "answers",
                 domain_as: str = "as_is") -> dict[str, tuple[Packer, list[dict]]]:
    out = {}
    for role in roles:
        examples, entries = load_role(cfg, role, tokenizer, loss_on, domain_as)
        out[role] = (Packer(examples, cfg.data.seq_len, seed=cfg.train.seed * 31 + ROLES.index(role)), entries)
    return out


def build_mix(cfg: RunConfig, tokenizer, plan: Plan | None = None) -> MixedData:
    """Tokenize each stage's sources, pack them, and lay out the plan's sequences in mix order."""
    from ..plan import stage_config

    plan = plan or make_plan(cfg)
    seq_len, n = plan.seq_len, plan.sequences
    input_ids = np.empty((n, seq_len), dtype=np.int32)
    labels = np.empty((n, seq_len), dtype=np.int32)
    roles = np.full(n, -1, dtype=np.int8)
    stage_idx = np.empty(n, dtype=np.int8)
    stage_packers, stage_entries = [], []
    for s in plan.stages:
        span = slice(s.first_seq, s.first_seq + s.sequences)
        stage_idx[span] = s.index
        packers = role_packers(stage_config(cfg, s), tokenizer, list(s.roles), s.loss_on, s.domain_as)
        stage_packers.append({r: p for r, (p, _) in packers.items()})
        stage_entries.append({r: e for r, (_, e) in packers.items()})
        if plan.online:
            continue
        roles[span] = s.order
        for role, (packer, _) in packers.items():
            for i in s.first_seq + np.flatnonzero(s.order == ROLES.index(role)):
                input_ids[i], labels[i] = packer.next()
    loss_counts = np.zeros(n, dtype=np.int64) if plan.online else loss_positions(labels)
    data = MixedData(plan, input_ids, labels, roles, stage_idx, loss_counts, {})
    if plan.online:
        data.online = OnlineMix(plan, stage_packers)
    data.manifest = manifest(data, stage_packers, stage_entries)
    return data


def manifest(data: MixedData, stage_packers: list[dict[str, Packer]], stage_entries: list[dict]) -> dict:
    """What was packed (per stage and role: sequences, input tokens, tokens that carry loss, passes) beside
    the plan it came from. Online mixes choose roles later: their counts are the plan's."""
    plan, seq_len = data.plan, data.plan.seq_len
    stages, totals = [], {}
    for s, packers, entries in zip(plan.stages, stage_packers, stage_entries):
        span = slice(s.first_seq, s.first_seq + s.sequences)
        per_role = {}
        for role, packer in packers.items():
            if plan.online:  # roles are chosen at fetch time: the planned start, realized in the stream
                seqs, loss = s.roles[role].sequences, None
            else:
                mine = data.roles[span] == ROLES.index(role)
                seqs = int(mine.sum())
                loss = int(data.loss_counts[span][mine].sum())
            per_role[role] = {"sources": entries[role], "sequences": seqs, "tokens_trained": seqs * seq_len,
                              "loss_tokens_trained": loss, "tokens_available": packer.tokens_per_pass,
                              "passes": round(seqs * seq_len / packer.tokens_per_pass, 4)}
            t = totals.setdefault(role, {"sources": [], "sequences": 0, "tokens_trained": 0,
                                         "loss_tokens_trained": 0, "available": set()})
            t["sources"] += [e for e in entries[role] if e["path"] not in {x["path"] for x in t["sources"]}]
            t["sequences"] += seqs
            t["tokens_trained"] += seqs * seq_len
            t["loss_tokens_trained"] = None if loss is None else t["loss_tokens_trained"] + loss
            t["available"].add(packer.tokens_per_pass)
        stages.append({"index": s.index, "name": s.name, "roles": per_role})
    for t in totals.values():  # passes of the whole run where every stage packs the same amount of data
        avail = t.pop("available") - {None}
        t["tokens_available"] = avail.pop() if len(avail) == 1 else None
        t["passes"] = round(t["tokens_trained"] / t["tokens_available"], 4) if t["tokens_available"] else None
    out = {"roles": totals, "stages": stages, "plan": plan.to_dict()}  # shares, steps, LRs: in the plan
    if not plan.online:  # shares of the input tokens and of the loss tokens packed
        out["realized"] = data.realized_shares(len(data))
        out["realized_loss"] = data.realized_shares(len(data), unit="loss_tokens")
    return out


class OnlineMix:
    """Chooses each sequence's role when the trainer fetches it, so the shares can change mid-run.

    The stage's planned targets (constant, or a progressive ramp) plus a shift moved from domain to replay or
    instruct; the scheduler restarts at every change, so a new share holds from the next sequence fetched.
    The data loader reads one batch ahead: a change made after step s trains from step s + 2. Resuming
    re-creates the choices from the checkpoint on, not the ones before it.
    """

    def __init__(self, plan: Plan, packers: list[dict[str, Packer]]):
        self.plan, self.packers = plan, packers
        self.used = np.zeros((plan.sequences, len(ROLES)))  # the target each fetched sequence was scheduled by
        self.shift = {"replay": 0.0, "instruct": 0.0}
        self.scheduler = DeficitScheduler()
        self._stage = -1

    def target(self, i: int) -> np.ndarray:
        """Shares for sequence i: the stage's base plus the current shift (stages without domain stay put)."""
        s = self.plan.stages[self._stage_index(i)]
        t = (s.targets[i - s.first_seq] if s.targets.ndim == 2 else s.targets).copy()
        if t[0] > 0:
            for role, delta in self.shift.items():
                j = ROLES.index(role)
                if role in self.packers[s.index]:
                    moved = min(delta, t[0])
                    t[j] += moved
                    t[0] -= moved
        return t

    def _stage_index(self, i: int) -> int:
        return next(s.index for s in reversed(self.plan.stages) if s.first_seq <= i)

    def current_shares(self, i: int) -> dict[str, float]:
        return {r: float(v) for r, v in zip(ROLES, self.target(min(i, self.plan.sequences - 1)))}

    def set_shift(self, role: str, delta: float) -> None:
        self.shift[role] = max(0.0, delta)
        self.scheduler.restart()

    def fill(self, data: MixedData, i: int) -> None:
        k = int(data.stage[i])
        if k != self._stage:
            self._stage = k
            self.scheduler.restart()
        self.used[i] = self.target(i)
        role = self.scheduler.next(self.used[i])
        data.input_ids[i], data.labels[i] = self.packers[k][ROLES[role]].next()
        data.loss_counts[i] = loss_positions(data.labels[i])
        data.roles[i] = role
