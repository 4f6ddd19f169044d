"""Exact token mixes: each role's share of trained tokens matches the requested share.

Every packed sequence holds exactly seq_len tokens of one role, so token shares equal sequence shares.
A deficit scheduler picks, for each next sequence, the role furthest below its target; after n sequences
every role is within one sequence of its target (|error| <= 1/n), deterministically.
"""
from __future__ import annotations

from dataclasses import dataclass

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


@dataclass
class MixedData:
    """The run's training sequences in the order they are trained, plus what went into them."""
    input_ids: np.ndarray  # (n, seq_len) int32
    labels: np.ndarray     # (n, seq_len) int32, IGNORE where no loss
    roles: np.ndarray      # (n,) index into ROLES
    manifest: dict

    def __len__(self) -> int:
        return len(self.roles)

    def realized_shares(self, n_sequences: int) -> dict[str, float]:
        """Token share of each role among the first n_sequences trained."""
        n = max(1, min(n_sequences, len(self.roles)))
        counts = np.bincount(self.roles[:n], minlength=len(ROLES))
        return {r: float(c / n) for r, c in zip(ROLES, counts)}


def load_role(cfg: RunConfig, role: str, tokenizer) -> tuple[list, list[dict]]:
    """Encode every source of a role; return examples and per-source manifest entries."""
    examples, entries = [], []
    for source in getattr(cfg.data, role):
        rows = read_records(source)
        fmt = detect_format(rows, source)
        encoded = encode_rows(rows, fmt, source, tokenizer, cfg.model.kind)
        if not encoded:
            raise DataError(f"{source.path}: every row is empty")
        n_tokens = sum(len(ids) for ids, _ in encoded)
        n_loss = sum(sum(1 for x in lab if x != IGNORE) for _, lab in encoded)
        if n_loss == 0:
            raise DataError(f"{source.path}: no trainable tokens (chat records without assistant turns?)")
        lp = local_path(source)
        files = [{"path": str(f), "bytes": f.stat().st_size, "sha256": sha256(f)} for f in source_files(source)]
        entries.append({"path": source.path, "local": lp is not None, "format": fmt, "rows": len(rows),
                        "examples": len(encoded), "tokens": n_tokens, "loss_tokens": n_loss, "files": files})
        examples.extend(encoded)
    return examples, entries


def build_mix(cfg: RunConfig, tokenizer, n_sequences: int) -> MixedData:
    """Tokenize each role's sources, pack them, and lay out n_sequences in mix order."""
    shares = cfg.mix.shares()
    seq_len = cfg.data.seq_len
    roles = schedule_roles(shares, n_sequences)
    input_ids = np.empty((n_sequences, seq_len), dtype=np.int32)
    labels = np.empty((n_sequences, seq_len), dtype=np.int32)
    manifest: dict = {"seq_len": seq_len, "sequences": n_sequences, "requested": shares, "roles": {}}
    for k, role in enumerate(ROLES):
        if shares[role] == 0:
            continue
        examples, entries = load_role(cfg, role, tokenizer)
        packer = Packer(examples, seq_len, seed=cfg.train.seed * 31 + k)
        idx = np.flatnonzero(roles == k)
        for i in idx:
            input_ids[i], labels[i] = packer.next()
        trained = len(idx) * seq_len
        manifest["roles"][role] = {
            "sources": entries, "tokens_available": packer.tokens_per_pass, "sequences": int(len(idx)),
            "tokens_trained": int(trained), "passes": round(trained / packer.tokens_per_pass, 3),
        }
    data = MixedData(input_ids, labels, roles, manifest)
    manifest["realized"] = data.realized_shares(n_sequences)
    return data


def count_role_tokens(cfg: RunConfig, tokenizer) -> dict[str, int]:
    """Tokens available per role (one pass over its sources), for budget previews and pass counts."""
    return {role: sum(e["tokens"] for e in load_role(cfg, role, tokenizer)[1])
            for role in ROLES if getattr(cfg.data, role)}
