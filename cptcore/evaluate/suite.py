"""Run evaluators by name on a model: the same code for `cpt eval` and for evaluations during training.

Eval data is read once per Suite and cut to the configured sizes; asking for more items than the data has
is an error naming the config key, never a silently smaller eval set.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import RunConfig, SourceConfig
from ..files import atomic_write
from .stats import Score


class EvalError(ValueError):
    """An evaluation cannot run as configured; the message names the config key or file."""


class Suite:
    """Evaluators of one config; data is loaded lazily and kept for later evaluations."""

    def __init__(self, cfg: RunConfig, limit_keys: dict[str, str] | None = None):
        self.cfg = cfg
        self._data: dict[str, list[dict]] = {}
        self._limit_keys = limit_keys or {}  # config key -> how the user set it (e.g. --limit), for errors
        self._if_responses: tuple[int, list] | None = None  # (round, rows) reused by coherence

    # --- data --------------------------------------------------------------------------------
    def _take(self, name: str, source: SourceConfig, limit: int, key: str, what: str) -> list[dict]:
        if name not in self._data:
            from ..data.sources import read_records

            rows = read_records(source)
            if limit > len(rows):
                raise EvalError(f"{self._limit_keys.get(key, key)}={limit} but {source.path} has only "
                                f"{len(rows)} {what}")
            self._data[name] = rows[:limit]
        return self._data[name]

    def docs(self, which: str) -> list[dict]:
        source = self.cfg.eval.domain_heldout if which == "domain_ppl" else self.cfg.eval.replay_heldout
        docs = self._take(which, source, self.cfg.eval.max_docs, "eval.max_docs", "documents")
        bad = next((i for i, d in enumerate(docs) if not str(d.get(source.text_field) or "").strip()), None)
        if bad is not None:
            raise EvalError(f"{source.path}: row {bad + 1} has no text in field {source.text_field!r} "
                            f"(set eval.{'domain' if which == 'domain_ppl' else 'replay'}_heldout.text_field)")
        return docs

    def questions(self) -> list[dict]:
        e = self.cfg.eval
        items = self._take("knowledge_qa", e.qa_source, e.qa_limit, "eval.qa_limit", "questions")
        for i, it in enumerate(items):
            missing = [f for f in ("question", "answer") if not str(it.get(f) or "").strip()]
            if missing:
                raise EvalError(f"{e.qa_source.path}: row {i + 1} has no {missing[0]!r} field")
        return items

    def if_prompts(self) -> list[dict]:
        if "ifeval" not in self._data:
            from .ifeval import load_prompts

            self._data["ifeval"] = load_prompts(self.cfg.eval.ifeval_source, self.cfg.eval.ifeval_limit,
                                                self._limit_keys.get("eval.ifeval_limit", "eval.ifeval_limit"))
        return self._data["ifeval"]

    def prefetch(self, names: list[str]) -> None:
        """Read and check the data of `names` now, so problems surface before a model loads."""
        for name in names:
            if name in ("domain_ppl", "replay_ppl"):
                self.docs(name)
            elif name == "knowledge_qa":
                self.questions()
            else:
                self.if_prompts()

    # --- evaluators --------------------------------------------------------------------------
    def chat(self, tokenizer) -> bool:
        return self.cfg.model.kind == "instruct" and bool(getattr(tokenizer, "chat_template", None))

    def run(self, name: str, model, tokenizer, round_id: int = 0) -> tuple[list[Score], list[dict]]:
        """Scores and per-item rows of one evaluator. round_id groups evaluators of one evaluation."""
        e = self.cfg.eval
        if name in ("domain_ppl", "replay_ppl"):
            from .perplexity import perplexity

            source = e.domain_heldout if name == "domain_ppl" else e.replay_heldout
            return perplexity(name, model, tokenizer, self.docs(name), source.text_field,
                              window=self.cfg.data.seq_len, batch_size=e.batch_size)
        if name == "knowledge_qa":
            from .knowledge_qa import knowledge_qa

            return knowledge_qa(model, tokenizer, self.questions(), self.chat(tokenizer),
                                max_new_tokens=e.qa_max_new_tokens, batch_size=e.batch_size)
        if name == "ifeval":
            from .ifeval import ifeval

            scores, rows = ifeval(model, tokenizer, self.if_prompts(), self.chat(tokenizer),
                                  max_new_tokens=e.max_new_tokens, batch_size=e.batch_size)
            self._if_responses = (round_id, rows)
            return scores, rows
        from .coherence import coherence

        if self._if_responses and self._if_responses[0] == round_id:  # reuse this round's IFEval responses
            rows = self._if_responses[1]
            return coherence([r["response"] for r in rows], [r["id"] for r in rows])
        from .generate import generate

        prompts = self.if_prompts()
        responses = generate(model, tokenizer, [p["prompt"] for p in prompts], chat=self.chat(tokenizer),
                             max_new_tokens=e.max_new_tokens, batch_size=e.batch_size)
        return coherence(responses, [p.get("key", i) for i, p in enumerate(prompts)])


def write_items(path: Path, rows: list[dict]) -> Path:
    """Per-item results as JSON lines (the dashboard shows examples and paired comparisons from them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, "".join(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, default=str)
                                      + "\n" for r in rows))


def items_path(out_dir: Path, evaluator: str, step: int) -> Path:
    return Path(out_dir) / f"{evaluator}-step{step:06d}.jsonl"
