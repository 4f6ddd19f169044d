"""Run evaluators by name on a model: the same code for `cpt eval` and for evaluations during training.

Eval data is read once per Suite; each evaluation set is a seeded sample stratified over what its items are
about (`stratified_sample`), the same in every evaluation and every run with the same eval settings, so
changes are paired. Asking for more items than the data has is an error naming the config key, never a
silently smaller eval set.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

from ..config import RunConfig, SourceConfig
from ..files import atomic_write
from .stats import Score


class EvalError(ValueError):
    """An evaluation cannot run as configured; the message names the config key or file."""


def stratum(row: dict) -> tuple:
    """What an item is about, for stratified sampling: entity type and attribute (bundled QA), entity type
    (documents), topic (general text), document (QA of a user's documents), IFEval instruction group."""
    key = []
    if row.get("entity_id") is not None:
        key.append(str(row["entity_id"]).rsplit("-", 1)[0])
    for f in ("attribute", "topic", "doc_id", "document_id"):
        if row.get(f) is not None:
            key.append(str(row[f]))
    ids = row.get("instruction_id_list")
    if isinstance(ids, list) and ids:
        key.append(str(ids[0]).split(":")[0])
    return tuple(key)


def stratified_sample(rows: list[dict], limit: int, seed: int = 0) -> list[dict]:
    """`limit` rows drawn round-robin over the strata (each stratum shuffled with `seed`), never the first N
    rows of a file ordered by entity. The same rows and seed give the same sample in every run, so scores of
    two evaluations or two runs are paired on the same items. Rows keep `_row`, their index in the source."""
    rng = random.Random(seed)
    groups: dict[tuple, list[dict]] = {}
    for i, r in enumerate(rows):
        groups.setdefault(stratum(r), []).append({**r, "_row": i})
    order = sorted(groups, key=str)
    rng.shuffle(order)
    for k in order:
        rng.shuffle(groups[k])
    out, depth = [], 0
    while len(out) < limit:
        layer = [groups[k][depth] for k in order if depth < len(groups[k])]
        if not layer:
            break
        out += layer[: limit - len(out)]
        depth += 1
    return out


def item_id(row: dict):
    """A stable id for pairing: the row's own id, else its index in the source."""
    for f in ("id", "key"):
        if row.get(f) is not None:
            return row[f]
    return row.get("_row")


class Suite:
    """Evaluators of one config; data is loaded lazily and kept for later evaluations.

    reference_path: where general_kl keeps the starting model's distributions (a run's eval/ folder), so a
    resumed run or `cpt eval RUN` compares with the same step-0 model.
    """

    def __init__(self, cfg: RunConfig, limit_keys: dict[str, str] | None = None, reference_path: Path | None = None,
                 compute_reference: bool = True):
        from ..data.heldout import resolve

        self._auto = {f for f in ("domain_heldout", "replay_heldout", "qa_source") if getattr(cfg.eval, f).path == "auto"}
        self.cfg = resolve(cfg)  # `auto` sources made concrete: the run's own held-out documents, or bundled
        self._data: dict[str, list] = {}
        self._limit_keys = limit_keys or {}  # config key -> how the user set it (e.g. --limit), for errors
        self._if_responses: tuple[int, list] | None = None  # (round, rows) reused by coherence
        self.reference_path, self.compute_reference = reference_path, compute_reference
        self._kl_ref: dict | None = None

    # --- data --------------------------------------------------------------------------------
    def _rows(self, name: str, source: SourceConfig) -> list[dict]:
        key = f"rows:{name}"
        if key not in self._data:
            from ..data.sources import read_records

            rows = read_records(source)
            if name == "knowledge_qa":  # any QA format (question/answers, prompt/completion, messages, SQuAD)
                from ..data.qa import qa_items

                rows = qa_items(rows, source.path)
            self._data[key] = rows
        return self._data[key]

    def _take(self, name: str, source: SourceConfig, limit: int, key: str, what: str,
              rows: list[dict] | None = None) -> list[dict]:
        if name not in self._data:
            rows = self._rows(name, source) if rows is None else rows
            if source.holdout == "heldout" or (name == "knowledge_qa" and "qa_source" in self._auto):
                limit = min(limit, len(rows))  # an automatic set (a split, the user's qa_test): what it holds
            if limit > len(rows):
                raise EvalError(f"{self._limit_keys.get(key, key)}={limit} but {source.path} has only "
                                f"{len(rows)} {what}")
            self._data[name] = stratified_sample(rows, limit, self.cfg.eval.seed)
        return self._data[name]

    def trained_entities(self) -> set[str]:
        """entity_id of every domain document the run trains on, or its document_key when it has none."""
        if "trained_entities" not in self._data:
            from ..data.sources import iter_records

            from ..data.heldout import document_key, row_text

            found = set()
            for src in self.cfg.data.domain:  # resolved: without the documents held out for domain_ppl
                if src.streaming:  # not read ahead of training
                    continue
                try:
                    for r in iter_records(src):  # one row at a time: a corpus may be larger than memory
                        if r.get("entity_id") is not None:
                            found.add(str(r["entity_id"]))
                        found.add(document_key(row_text(r, src.text_field)))  # `cpt synth` QA names them so
                except Exception:  # noqa: BLE001 - unreadable training data fails in training, not here
                    continue
            self._data["trained_entities"] = found
        return self._data["trained_entities"]

    def _about_trained(self, rows: list[dict]) -> list[dict]:
        """Only items about entities whose documents the run trains on (when both sides name entities): a
        question about a document never trained on measures nothing but noise."""
        trained = self.trained_entities()
        if not trained or not any(r.get("entity_id") is not None for r in rows):
            return rows
        return [r for r in rows if str(r.get("entity_id")) in trained]

    def docs(self, which: str) -> list[dict]:
        domain = which == "domain_ppl"
        source = self.cfg.eval.domain_heldout if domain else self.cfg.eval.replay_heldout
        rows = self._about_trained(self._rows(which, source)) if domain else None
        docs = self._take(which, source, self.cfg.eval.max_docs, "eval.max_docs", "documents", rows)
        bad = next((d for d in docs if not str(d.get(source.text_field) or "").strip()), None)
        if bad is not None:
            raise EvalError(f"{source.path}: row {bad['_row'] + 1} has no text in field {source.text_field!r} "
                            f"(set eval.{'domain' if domain else 'replay'}_heldout.text_field)")
        return docs

    def questions(self) -> list[dict]:
        e = self.cfg.eval
        every = self._rows("knowledge_qa", e.qa_source)
        rows = self._about_trained(every)
        what = "questions" if rows is every else "questions about entities of the trained documents"
        items = self._take("knowledge_qa", e.qa_source, e.qa_limit, "eval.qa_limit", what, rows)
        for it in items:
            missing = [f for f in ("question", "answer") if not str(it.get(f) or "").strip()]
            if missing:
                raise EvalError(f"{e.qa_source.path}: row {it['_row'] + 1} has no {missing[0]!r} field")
        return [{**it, "id": item_id(it)} for it in items]

    def if_prompts(self) -> list[dict]:
        if "ifeval" not in self._data:
            from .ifeval import load_prompts

            e = self.cfg.eval
            records = load_prompts(e.ifeval_source)
            if e.ifeval_limit > len(records):
                raise EvalError(f"{self._limit_keys.get('eval.ifeval_limit', 'eval.ifeval_limit')}={e.ifeval_limit} "
                                f"but the {e.ifeval_source} IFEval suite has {len(records)} prompts")
            self._data["ifeval"] = [{**r, "key": item_id(r)} for r in stratified_sample(records, e.ifeval_limit, e.seed)]
        return self._data["ifeval"]

    def kl_items(self, tokenizer) -> tuple[list[tuple], int]:
        """general_kl's items: the replay_ppl documents and as many held-out instruction conversations."""
        if "general_kl" not in self._data:
            from ..data.formats import to_messages
            from .general_kl import encode_items

            e = self.cfg.eval
            text_field = e.replay_heldout.text_field
            texts = [(f"text:{item_id(d)}", str(d[text_field])) for d in self.docs("replay_ppl")]
            convs = self._take("instruct_heldout", e.instruct_heldout, min(e.max_docs, len(self._rows(
                "instruct_heldout", e.instruct_heldout))), "eval.max_docs", "conversations")
            chats = [(f"chat:{item_id(c)}", to_messages(c, f"{e.instruct_heldout.path}: row {c['_row'] + 1}"))
                     for c in convs]
            items = encode_items(tokenizer, texts, chats, self.cfg.model.kind, self.cfg.data.seq_len)
            self._data["general_kl"] = (items, sum(1 for it in items if it[0].startswith("text:")))
        return self._data["general_kl"]

    def prefetch(self, names: list[str]) -> None:
        """Read and check the data of `names` now, so problems surface before a model loads."""
        for name in names:
            if name in ("domain_ppl", "replay_ppl"):
                self.docs(name)
            elif name in ("knowledge_qa", "knowledge_mc"):
                self.questions()
            elif name == "general_kl":
                self.docs("replay_ppl")
                self._rows("instruct_heldout", self.cfg.eval.instruct_heldout)
            else:
                self.if_prompts()

    def inputs(self, name: str, tokenizer) -> dict:
        """Everything of the eval data and config that run(name) reads, JSON-ready: the items it evaluates
        (the same selection run() makes) and its settings. The baseline cache hashes this (baseline.py)."""
        e = self.cfg.eval
        common = {"batch_size": e.batch_size, "kind": self.cfg.model.kind, "chat": self.chat(tokenizer)}
        if name in ("domain_ppl", "replay_ppl"):
            source = e.domain_heldout if name == "domain_ppl" else e.replay_heldout
            return common | {"docs": self.docs(name), "text_field": source.text_field, "window": self.cfg.data.seq_len}
        if name == "knowledge_qa":
            return common | {"questions": self.questions(), "max_new_tokens": e.qa_max_new_tokens}
        if name == "knowledge_mc":  # distractors come from the whole question file
            return common | {"questions": self.questions(), "pool": self._rows("knowledge_qa", e.qa_source),
                             "distractors": e.qa_mc_distractors, "seed": e.seed}
        if name == "general_kl":
            items, n_text = self.kl_items(tokenizer)
            return common | {"items": items, "n_text": n_text, "top_k": e.kl_top_k}
        return common | {"prompts": self.if_prompts(), "max_new_tokens": e.max_new_tokens}  # ifeval, coherence

    # --- evaluators --------------------------------------------------------------------------
    def chat(self, tokenizer) -> bool:
        return self.cfg.model.kind == "instruct" and bool(getattr(tokenizer, "chat_template", None))

    def run(self, name: str, model, tokenizer, round_id: int = 0, progress=None) -> tuple[list[Score], list[dict]]:
        """Scores and per-item rows of one evaluator. round_id groups evaluators of one evaluation.

        progress(done, total), if given, is passed to the evaluator's batch loop: items (documents, questions,
        prompts) done so far, called before the first batch and after each one. It never changes the result."""
        e = self.cfg.eval
        if name in ("domain_ppl", "replay_ppl"):
            from .perplexity import perplexity

            source = e.domain_heldout if name == "domain_ppl" else e.replay_heldout
            return perplexity(name, model, tokenizer, self.docs(name), source.text_field,
                              window=self.cfg.data.seq_len, batch_size=e.batch_size, progress=progress)
        if name == "knowledge_qa":
            from .knowledge_qa import knowledge_qa

            return knowledge_qa(model, tokenizer, self.questions(), self.chat(tokenizer),
                                max_new_tokens=e.qa_max_new_tokens, batch_size=e.batch_size, progress=progress)
        if name == "knowledge_mc":
            from .knowledge_qa import knowledge_mc

            return knowledge_mc(model, tokenizer, self.questions(), self._rows("knowledge_qa", e.qa_source),
                                self.chat(tokenizer), e.qa_mc_distractors, e.seed, e.batch_size, progress)
        if name == "general_kl":
            return self._general_kl(model, tokenizer, progress)
        if name == "ifeval":
            from .ifeval import ifeval

            scores, rows = ifeval(model, tokenizer, self.if_prompts(), self.chat(tokenizer),
                                  max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, progress=progress)
            self._if_responses = (round_id, rows)
            return scores, rows
        from .coherence import coherence

        if self._if_responses and self._if_responses[0] == round_id:  # reuse this round's IFEval responses
            rows = self._if_responses[1]
            if progress is not None:
                progress(len(rows), len(rows))
            return coherence([r["response"] for r in rows], [r["id"] for r in rows])
        from .generate import generate

        prompts = self.if_prompts()
        responses = generate(model, tokenizer, [p["prompt"] for p in prompts], chat=self.chat(tokenizer),
                             max_new_tokens=e.max_new_tokens, batch_size=e.batch_size, progress=progress)
        return coherence(responses, [p["key"] for p in prompts])

    def _general_kl(self, model, tokenizer, progress=None) -> tuple[list[Score], list[dict]]:
        """KL from the starting model: its reference is taken on the first call (step 0) and kept on disk.
        progress: items; when the reference is taken too, each item is half done after that pass."""
        from . import general_kl as gk

        items, n_text = self.kl_items(tokenizer)
        ref_progress = None
        if self._kl_ref is None and self.reference_path is not None and self.reference_path.is_file():
            self._kl_ref = gk.load_reference(self.reference_path)
        if self._kl_ref is None:
            if not self.compute_reference:
                raise EvalError(f"general_kl: no step-0 reference at {self.reference_path} (it is saved by "
                                "runs that evaluate general_kl at step 0)")
            if progress is not None:
                n, outer = len(items), progress
                ref_progress = lambda done, _total: outer(done // 2, n)  # noqa: E731
                progress = lambda done, _total: outer((n + done) // 2, n)  # noqa: E731
            self._kl_ref = gk.reference(model, tokenizer, items, self.cfg.eval.kl_top_k, self.cfg.eval.batch_size,
                                        ref_progress)
            if self.reference_path is not None:
                gk.save_reference(self._kl_ref, self.reference_path)
        return gk.general_kl(model, tokenizer, items, self._kl_ref, n_text, self.cfg.eval.batch_size, progress)


def write_items(path: Path, rows: list[dict]) -> Path:
    """Per-item results as JSON lines (the dashboard shows examples and paired comparisons from them)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, "".join(json.dumps({k: v for k, v in r.items() if not k.startswith("_")}, default=str)
                                      + "\n" for r in rows))


def items_path(out_dir: Path, evaluator: str, step: int) -> Path:
    return Path(out_dir) / f"{evaluator}-step{step:06d}.jsonl"


def scores_path(out_dir: Path, evaluator: str, step: int) -> Path:
    return Path(out_dir) / f"{evaluator}-step{step:06d}.scores.json"


def write_scores(path: Path, scores: list[Score]) -> Path:
    """Each score's per-item (numerator, denominator): what a later step or another run pairs with."""
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, json.dumps({s.name: s.items_record() for s in scores if s.items}, default=str))


def load_scores(out_dir: Path, step: int) -> dict[str, tuple[dict, str]]:
    """metric -> (items, kind) of every evaluator's scores at `step` (unreadable files are skipped)."""
    from .stats import items_from_record

    out = {}
    for path in sorted(Path(out_dir).glob(f"*-step{step:06d}.scores.json")):
        try:
            out.update({name: items_from_record(rec) for name, rec in json.loads(path.read_text()).items()})
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return out
