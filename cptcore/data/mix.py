"""Exact token mixes: the plan's sequences laid out in the order they train, each packed from its role's data.

The plan (cptcore/plan.py) decides how many sequences each stage trains and which role each comes from (the
deficit scheduler, cptcore/data/schedule.py); this module tokenizes each role's sources, packs them, and fills
the sequences. Dynamic mixing (OnlineMix) picks each sequence's role only when the trainer fetches it, so an
evaluation can still change the shares. The manifest records what was actually packed, next to the plan.

Shares come in two units (`unit`, as mix.unit): "tokens" counts input tokens (one per position: a sequence
share), "loss_tokens" counts the label positions that carry loss (labels[1:] != IGNORE), exactly, per sequence.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config import ROLES, RunConfig
from ..plan import Plan, Stage, plan as make_plan
from .cache import cached_source
from .formats import IGNORE
from .pack import Packer
from .schedule import DeficitScheduler, loss_shares


@dataclass
class MixedData:
    """The run's training sequences in the order they are trained, plus what went into them.

    Only bookkeeping is held per sequence (role, stage, rank among its role's sequences of the stage, loss
    count: 10 bytes); fetch(i) cuts sequence i from its role's packer when the trainer asks for it, so memory
    does not grow with train.max_steps and a resumed run that skips batches reads the same sequences."""
    plan: Plan
    roles: np.ndarray      # (n,) index into ROLES; -1 until an online mix fills the row
    stage: np.ndarray      # (n,) stage index of each sequence
    rank: np.ndarray       # (n,) which sequence of its role's packer in its stage (-1 until an online mix fills it)
    loss_counts: np.ndarray  # (n,) positions that carry loss per sequence (loss_positions); -1 until cut
    packers: list = field(default_factory=list, repr=False)  # per stage: {role: Packer}
    manifest: dict = field(default_factory=dict)
    online: "OnlineMix | None" = None

    def __len__(self) -> int:
        return len(self.roles)

    @property
    def stages(self) -> list[Stage]:
        return self.plan.stages

    def fetch(self, i: int) -> tuple[np.ndarray, np.ndarray, int]:
        if self.roles[i] < 0:
            self.online.fill(self, i)
        role = int(self.roles[i])
        ids, labels = self.packers[int(self.stage[i])][ROLES[role]].sequence(int(self.rank[i]))
        self.loss_counts[i] = loss_positions(labels)
        return ids, labels, role

    def positions(self, i: int) -> np.ndarray:
        """Position ids of sequence i, restarting at every document (train.attention per_document); after fetch(i)."""
        return self.packers[int(self.stage[i])][ROLES[int(self.roles[i])]].positions(int(self.rank[i]))

    def materialize(self, n: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(input_ids, labels) of the first n sequences as (n, seq_len) arrays: for inspection and tests of
        small runs (a real run never holds them all)."""
        n = len(self) if n is None else n
        rows = [self.fetch(i)[:2] for i in range(n)]
        return (np.stack([r[0] for r in rows]), np.stack([r[1] for r in rows])) if rows else (
            np.zeros((0, self.plan.seq_len), np.int32), np.zeros((0, self.plan.seq_len), np.int32))

    def realized_shares(self, n_sequences: int, start: int = 0, unit: str = "tokens") -> dict[str, float]:
        """Each role's share of the input tokens (unit "tokens") or of the loss tokens ("loss_tokens") among
        sequences start..n_sequences-1 that were trained."""
        n = max(start + 1, min(n_sequences, len(self.roles)))
        roles = self.roles[start:n]
        if unit == "loss_tokens":  # sequences cut (trained or counted), so their loss is known
            lc = self.loss_counts[start:n]
            counts = np.array([lc[(roles == j) & (lc >= 0)].sum(dtype=np.int64) for j in range(len(ROLES))])
        else:  # per role, not np.bincount: that widens int8 roles to 8 bytes each
            counts = np.array([np.count_nonzero(roles == j) for j in range(len(ROLES))])
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
    """Each source of a role as a memory-mapped shard of the token cache (tokenized now only if it is not
    there: cptcore/data/cache.py), and its manifest entry."""
    shards, entries = [], []
    for source in getattr(cfg.data, role):
        shard, entry = cached_source(source, tokenizer, cfg.model.kind, loss_on,
                                     domain_as if role == "domain" else "as_is", num_proc=cfg.data.num_proc,
                                     progress=True)
        shards.append(shard)
        entries.append(entry)
    return shards, entries


def role_packers(cfg: RunConfig, tokenizer, roles: list[str], loss_on: str = "answers",
                 domain_as: str = "as_is") -> dict[str, tuple[Packer, list[dict]]]:
    out = {}
    for role in roles:
        seed = cfg.train.seed * 31 + ROLES.index(role)
        if any(s.streaming for s in getattr(cfg.data, role)):  # tokenized as training reads it
            from .streaming import StreamPacker

            packer = StreamPacker(getattr(cfg.data, role), tokenizer, cfg.model.kind, cfg.data.seq_len, seed,
                                  loss_on, domain_as if role == "domain" else "as_is")
            out[role] = (packer, packer.entries)
            continue
        shards, entries = load_role(cfg, role, tokenizer, loss_on, domain_as)
        out[role] = (Packer.from_shards(shards, cfg.data.seq_len, seed=seed), entries)
    return out


# Runs up to this many sequences and input tokens cut every sequence once before training, to count its loss
# tokens for the manifest's exact loss shares (~20 us a cut: under a second); larger runs leave that to the
# stream (mix_loss: exact over what was trained) and the manifest says None.
COUNT_LOSS_UP_TO = (20_000, 1 << 26)


def build_mix(cfg: RunConfig, tokenizer, plan: Plan | None = None) -> MixedData:
    """Tokenize each stage's sources and lay out the plan's sequences in mix order (cut when fetched)."""
    from ..plan import stage_config

    plan = plan or make_plan(cfg)
    n = plan.sequences
    roles = np.full(n, -1, dtype=np.int8)
    rank = np.full(n, -1, dtype=np.int32)
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
        for role in packers:  # the k-th sequence of a role in this stage is its packer's sequence k
            mine = s.order == ROLES.index(role)
            rank[span][mine] = np.arange(int(mine.sum()), dtype=np.int32)
    data = MixedData(plan, roles, stage_idx, rank, np.full(n, -1, dtype=np.int32), stage_packers)
    if plan.online:
        data.online = OnlineMix(plan, stage_packers)
    elif plan.sequences <= COUNT_LOSS_UP_TO[0] and plan.tokens <= COUNT_LOSS_UP_TO[1] and all(
            getattr(p, "random_access", True) for ps in stage_packers for p in ps.values()):  # not streams
        for i in range(n):
            data.fetch(i)
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
                counts = data.loss_counts[span][mine]
                loss = int(counts.sum()) if (counts >= 0).all() else None  # large runs: in the stream
            per_role[role] = {"sources": entries[role], "sequences": seqs, "tokens_trained": seqs * seq_len,
                              "loss_tokens_trained": loss, "tokens_available": packer.tokens_per_pass,
                              "passes": (round(seqs * seq_len / packer.tokens_per_pass, 4)
                                         if packer.tokens_per_pass else None)}  # a stream's size is unknown
            t = totals.setdefault(role, {"sources": [], "sequences": 0, "tokens_trained": 0,
                                         "loss_tokens_trained": 0, "available": set()})
            t["sources"] += [e for e in entries[role] if e["path"] not in {x["path"] for x in t["sources"]}]
            t["sequences"] += seqs
            t["tokens_trained"] += seqs * seq_len
            t["loss_tokens_trained"] = (None if loss is None or t["loss_tokens_trained"] is None
                                        else t["loss_tokens_trained"] + loss)
            t["available"].add(packer.tokens_per_pass)
        stages.append({"index": s.index, "name": s.name, "roles": per_role})
    for t in totals.values():  # passes of the whole run where every stage packs the same amount of data
        avail = t.pop("available") - {None}
        t["tokens_available"] = avail.pop() if len(avail) == 1 else None
        t["passes"] = round(t["tokens_trained"] / t["tokens_available"], 4) if t["tokens_available"] else None
    out = {"roles": totals, "stages": stages, "plan": plan.to_dict()}  # shares, steps, LRs: in the plan
    if not plan.online:  # shares of the input tokens and of the loss tokens packed (counted runs)
        out["realized"] = data.realized_shares(len(data))
        counted = bool((data.loss_counts >= 0).all())
        out["realized_loss"] = data.realized_shares(len(data), unit="loss_tokens") if counted else None
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
        self.used = np.zeros((plan.sequences, len(ROLES)), dtype=np.float32)  # the target each fetched sequence was scheduled by
        self.shift = {"replay": 0.0, "instruct": 0.0}
        self.scheduler = DeficitScheduler()
        self.taken = [[0] * len(ROLES) for _ in packers]  # sequences cut per stage and role so far
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
        data.rank[i] = self.taken[k][role]
        self.taken[k][role] += 1
        data.roles[i] = role
