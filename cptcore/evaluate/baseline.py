"""Step-0 baselines cached under CPT_HOME/cache/baselines/ and reused by later runs of the same starting model.

Every run evaluates its starting model at step 0: minutes of identical numbers when the model, the items and
the settings are the same. One entry per evaluator, `<key>.json`, holds what a fresh evaluation writes: the
metric records, the per-item rows and per-item scores files (their exact text), and for general_kl the
starting model's reference distributions (`<key>.kl-<sha>.pt`, content-named). The key is the sha256 of:
  model     content hash of the weight and tokenizer files (sha256 per file, memoized by path, size and
            mtime_ns in CPT_HOME/cache/file_hashes.json (cptcore/hashing.py), so a 7B model is hashed once; a hub id: its local snapshot; the
            built-in tiny model, which has no files: its weights in memory), the tokenizer as loaded, weights
            dtype, device type (and GPU name), attention implementation, rope/YaRN settings, long_context,
            revision, torch and transformers versions
  evaluator its name and the source of cptcore/evaluate (a changed evaluator never reuses old numbers)
  inputs    Suite.inputs: the items actually evaluated (rows, prompts, token ids), batch size, chat format,
            seq_len, seeds, generation caps, top-k; plus the greedy generation config for generating evaluators
  format    FORMAT_VERSION
LoRA and full fine-tuning share entries: get_peft_model starts every adapter at B = 0, so the wrapped model's
outputs at step 0 are exactly the base model's (tests/test_baseline_reuse.py compares the per-item files).
Writes are atomic (tmp + os.replace); two runs writing one key both write a complete, equal entry. A missing,
corrupt or mismatching entry means a fresh evaluation, never an error.
"""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write, dumps, restore_nonfinite
from ..hashing import HashMemo, sha256_json
from .suite import items_path, scores_path

FORMAT_VERSION = 1
GENERATING = {"knowledge_qa": "qa_max_new_tokens", "ifeval": "max_new_tokens", "coherence": "max_new_tokens"}
# files of a model folder that decide its outputs (checkpoint folders also hold optimizer states: not these)
MODEL_FILE_SUFFIXES = (".safetensors", ".bin", ".json", ".py", ".model", ".txt", ".jinja", ".tiktoken")
NOT_MODEL_FILES = {"training_args.bin", "trainer_state.json"}
CORE_FIELDS = ("step", "tokens", "time", "name", "value", "attempt")


def cache_root(home: Path | str | None = None) -> Path:
    """CPT_HOME/cache/baselines (home: the runs' folder; default store.cpt_home())."""
    from ..runs.store import cpt_home

    return Path(home if home is not None else cpt_home()) / "cache" / "baselines"


# --- model identity ----------------------------------------------------------------------------
def folder_hash(folder: Path, memo: HashMemo) -> str:
    files = sorted(p for p in Path(folder).iterdir() if p.is_file() and p.name not in NOT_MODEL_FILES
                   and p.suffix in MODEL_FILE_SUFFIXES)
    if not any(p.suffix in (".safetensors", ".bin") for p in files):
        raise FileNotFoundError(f"no weight files in {folder}")
    return sha256_json([(p.name, memo.sha256(p)) for p in files])


def model_folder(name: str, revision: str | None) -> Path:
    """The local folder the model was loaded from: a folder, a converted GGUF, or a hub id's snapshot."""
    from ..models import resolve_model

    src = resolve_model(name)  # returns at once for what is already on disk
    if isinstance(src, Path):
        return src
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(src, revision=revision, local_files_only=True))


def base_model(model):
    return model.get_base_model() if hasattr(model, "get_base_model") else model  # a PEFT wrapper's model


def memory_hash(model) -> str:
    """Weights in memory (the built-in tiny model has no files), LoRA wrapping removed: adapters start at 0."""
    import torch

    h = hashlib.sha256()
    for name, t in base_model(model).state_dict().items():
        if "lora_" in name or ".modules_to_save." in name:
            continue
        name = name.replace(".base_layer", "").replace(".original_module", "")
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def tokenizer_hash(tokenizer) -> str:
    """The tokenizer as loaded (the token cache's fingerprint: rules, chat template, EOS; plus its class, length
    and special ids, which generation pads with): it decides the items' tokens."""
    from ..data.cache import tokenizer_fingerprint

    return sha256_json({"class": type(tokenizer).__name__, "fingerprint": tokenizer_fingerprint(tokenizer),
                        "len": len(tokenizer),
                        "special": {k: getattr(tokenizer, k, None) for k in ("bos_token_id", "eos_token_id",
                                                                             "pad_token_id", "unk_token_id")}})


def model_identity(cfg, model, tokenizer, memo: HashMemo) -> dict:
    """What decides a starting model's outputs (cfg: the RunConfig)."""
    import torch
    import transformers

    from ..models import TINY_MODEL, rope_settings
    from .generate import model_device

    base = base_model(model)
    device = model_device(model)
    weights = memory_hash(model) if cfg.model.name == TINY_MODEL else folder_hash(
        model_folder(cfg.model.name, cfg.model.revision), memo)
    return {"weights": weights, "tokenizer": tokenizer_hash(tokenizer), "dtype": str(base.dtype),
            "device": device.type, "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
            "attention": getattr(base.config, "_attn_implementation", None),
            "rope": rope_settings(base.config), "max_position_embeddings": getattr(base.config,
                                                                                   "max_position_embeddings", None),
            "long_context": cfg.long_context.model_dump(), "revision": cfg.model.revision,
            "torch": torch.__version__, "transformers": transformers.__version__}


_CODE: list[str] = []


def evaluator_code() -> str:
    """sha256 of cptcore/evaluate's sources (scoring code that changed must not reuse old numbers)."""
    if not _CODE:
        here = Path(__file__).parent
        _CODE.append(sha256_json([(p.name, p.read_text(encoding="utf-8")) for p in sorted(here.glob("*.py"))
                                  if p.name not in ("callback.py", "standalone.py", "baseline.py")]))
    return _CODE[0]


# --- entries -----------------------------------------------------------------------------------
@dataclass
class Entry:
    """One evaluator's cached step-0 result."""
    key: str
    evaluator: str
    run_id: str
    model_hash: str
    scores: list[dict]  # {"name", "value", "kind", "fields"}: each metric record, in the order written
    items_text: str  # the per-item rows file, verbatim
    scores_text: str  # the per-item scores file, verbatim
    reference: bytes | None = None  # general_kl's reference file, verbatim


class BaselineCache:
    """Keys, lookups and stores for one run's step-0 evaluation (suite: its Suite; cfg: its resolved RunConfig)."""

    def __init__(self, root: Path, cfg, suite, tokenizer):
        self.root, self.cfg, self.suite, self.tokenizer = Path(root), cfg, suite, tokenizer
        self.keys: dict[str, str] = {}
        self._model: dict | None = None
        self.model_hash = ""

    def key(self, name: str, model) -> str | None:
        """The cache key of evaluator `name` on `model` now; None when it cannot be known (then: fresh)."""
        try:
            if self._model is None:
                memo = HashMemo(self.root.parent)  # CPT_HOME/cache/file_hashes.json, shared with the token cache
                self._model = model_identity(self.cfg, model, self.tokenizer, memo)
                self.model_hash = sha256_json(self._model)
                memo.save()
            inputs = self.suite.inputs(name, self.tokenizer)
            if name in GENERATING:
                from .generate import greedy_config

                gen = greedy_config(model, self.tokenizer, getattr(self.cfg.eval, GENERATING[name]))
                inputs["generation"] = gen.to_dict()
            parts = {"format": FORMAT_VERSION, "model": self.model_hash, "evaluator": name,
                     "code": evaluator_code(), "inputs": sha256_json(inputs)}
        except Exception:  # noqa: BLE001 - data the evaluator cannot read fails in the evaluator, as before
            return None
        self.keys[name] = sha256_json(parts)
        return self.keys[name]

    def load(self, name: str) -> Entry | None:
        """The entry stored under `name`'s key, or None (none yet, unreadable, or not what it claims)."""
        key = self.keys.get(name)
        if key is None:
            return None
        try:
            data = json.loads((self.root / f"{key}.json").read_text(encoding="utf-8"))
            if (data["format"], data["key"], data["evaluator"]) != (FORMAT_VERSION, key, name):
                return None
            scores = [restore_nonfinite(dict(s, fields=restore_nonfinite(dict(s["fields"])))) for s in data["scores"]]
            if not scores or not all(isinstance(s["name"], str) for s in scores):
                return None
            json.loads(data["scores_text"])  # both files must parse, as a fresh evaluation's do
            [json.loads(line) for line in data["items_text"].splitlines()]
            reference = None
            if data.get("reference"):
                reference = (self.root / data["reference"]["file"]).read_bytes()
                if hashlib.sha256(reference).hexdigest() != data["reference"]["sha256"]:
                    return None
            elif name == "general_kl":
                return None
            return Entry(key, name, str(data["run_id"]), str(data["model_hash"]), scores, data["items_text"],
                         data["scores_text"], reference)
        except Exception:  # noqa: BLE001 - a missing or corrupt entry: evaluate afresh
            return None

    def store(self, name: str, run_id: str, scores, records: dict[str, dict], out_dir: Path) -> bool:
        """Keep a fresh step-0 result of `name` (its Scores, the records written, the files in out_dir)."""
        key = self.keys.get(name)
        if key is None:
            return False
        try:
            entry = {"format": FORMAT_VERSION, "key": key, "evaluator": name, "run_id": run_id,
                     "model_hash": self.model_hash, "created": time.time(), "model": self._model,
                     "items_text": items_path(out_dir, name, 0).read_text(encoding="utf-8"),
                     "scores_text": scores_path(out_dir, name, 0).read_text(encoding="utf-8"),
                     "scores": [{"name": s.name, "value": records[s.name]["value"], "kind": s.kind,
                                 "fields": {k: v for k, v in records[s.name].items() if k not in CORE_FIELDS}}
                                for s in scores]}
            self.root.mkdir(parents=True, exist_ok=True)
            if name == "general_kl":
                ref = self.suite.reference_path.read_bytes()
                sha = hashlib.sha256(ref).hexdigest()
                entry["reference"] = {"file": f"{key}.kl-{sha[:16]}.pt", "sha256": sha}  # content-named: immutable
                atomic_write(self.root / entry["reference"]["file"], ref)
            atomic_write(self.root / f"{key}.json", dumps(entry))  # last: an entry never names a missing file
            return True
        except Exception:  # noqa: BLE001 - a cache that cannot be written only costs the next run time
            return False

    def restore(self, entry: Entry, out_dir: Path) -> dict[str, tuple[dict, str]]:
        """Write the entry's files into out_dir as a fresh evaluation would; metric -> (items, kind)."""
        from .stats import items_from_record

        Path(out_dir).mkdir(parents=True, exist_ok=True)
        atomic_write(items_path(out_dir, entry.evaluator, 0), entry.items_text)
        atomic_write(scores_path(out_dir, entry.evaluator, 0), entry.scores_text)
        if entry.reference is not None:
            atomic_write(self.suite.reference_path, entry.reference)
        items = {m: items_from_record(rec) for m, rec in json.loads(entry.scores_text).items()}
        return {s["name"]: items.get(s["name"], ({}, s["kind"])) for s in entry.scores}
