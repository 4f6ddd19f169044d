"""Synthetic training data from documents: QA pairs and Knowledge-Instruct facts, with provenance.

    cpt synth builtin:knowledge_docs --kind qa --model smollm2-135m-instruct --out qa.jsonl --limit 50 \
        --skip-test-entities   # writes qa.qa_train.jsonl and qa.qa_test.jsonl
    cpt synth builtin:knowledge_docs --kind facts --model rules --out facts.jsonl --allow-test-entities
        # no model: sentences; facts restate documents the knowledge_instruct recipe trains on anyway

QA (Jiang et al. 2024): the model reads each document and writes factual, reasoning and summary questions.
Facts (Ovadia et al. 2025): extract the facts naming the document's entity, paraphrase each a few times
(≈3-5 paraphrases is where accuracy plateaus), wrap them in instruction templates. Every kept record is
grounded (its answer's words appear in the source document), deduplicated, and says where it came from.
Documents about test entities (split "test", or an entity the evaluation QA asks about) are refused unless
--skip-test-entities leaves them out or --allow-test-entities keeps them: data written about them would train on
the evaluation's answers.

QA output is split by document (Jiang et al. 2024, pre-instruction-tuning): every pair of one document (one
entity_id) lands in NAME.qa_train.jsonl or NAME.qa_test.jsonl, never both. All documents are trained on; the
qa_train questions may be trained on (pit, pit_plus, knowledge_instruct); the qa_test questions only measure
(a run with data.qa = NAME.qa_train.jsonl evaluates on the qa_test file beside it). Each row says where it came
from (doc_row, passage and evidence offsets), its split, entity_id, attribute (question type) and, for qa_test,
up to MC_DISTRACTORS same-type answers from other documents for the multiple-choice score.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sys
import tempfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

QA_PROMPTS = {  # kind of question -> instruction; the document always goes in the prompt (EntiGraph)
    "factual": "Read the text and write {n} questions that can be answered with a short phrase from the text, "
               "each followed by its answer.\nFormat every pair exactly as:\nQ: <question>\nA: <answer>\n\n"
               "Text: {doc}",
    "reasoning": "Read the text and write {n} questions whose answer needs two facts from the text combined, "
                 "each followed by a short answer.\nFormat every pair exactly as:\nQ: <question>\nA: <answer>\n\n"
                 "Text: {doc}",
    "summary": "Read the text and write 1 question asking what the text says about its subject, followed by "
               "a one-sentence answer using words from the text.\nFormat:\nQ: <question>\nA: <answer>\n\n"
               "Text: {doc}",
}
FACTS_PROMPT = ("List the facts this text states about {entity}, one short sentence per line, each sentence "
                "naming {entity}.\n\nText: {doc}")
PARAPHRASE_PROMPTS = (
    "Rewrite this sentence in different words, keeping every name and number: {fact}",
    "Say the same thing as this sentence in another way, keeping names and numbers: {fact}",
    "Paraphrase: {fact}",
    "Restate this fact as a complete sentence that starts differently: {fact}",
    "Express this fact in simple words, keeping names and numbers: {fact}",
)
FACT_TEMPLATES = (  # instruction templates (Knowledge-Instruct uses 25)
    "Tell me a fact about {entity}.", "What do you know about {entity}?", "Share something about {entity}.",
    "Give me one piece of information about {entity}.", "What is one thing that is true of {entity}?",
    "State a fact concerning {entity}.", "I'd like to learn about {entity}. Tell me something.",
    "What can you tell me about {entity}?", "Mention a detail about {entity}.", "Describe {entity} in one sentence.",
    "Tell me something true about {entity}.", "What is a known fact about {entity}?",
    "Give a fact related to {entity}.", "Teach me one fact about {entity}.", "Say something factual about {entity}.",
    "Provide a detail regarding {entity}.", "Recall a fact about {entity}.", "Name one fact about {entity}.",
    "What should I know about {entity}?", "Inform me about {entity}.", "Fill me in on {entity}.",
    "Tell me one thing about {entity}.", "What is a detail worth knowing about {entity}?",
    "Give me a quick fact about {entity}.", "What does the record say about {entity}?",
)
ARTICLES = {"a", "an", "the"}
MIN_DOC_WORDS = 20         # shorter documents hold too little to ask about: skipped and counted
MAX_PASSAGE_WORDS = 350    # longer documents are read in passages: ~500 prompt tokens, well inside a 2k context
TEST_SHARE = 0.2
MC_DISTRACTORS = 8         # stored per qa_test row; eval.qa_mc_distractors (default 4) draws from them
LOW_YIELD = 1.0            # pairs per document below which the yield is called low
QUESTION_TYPES = ("who", "when", "where", "how many", "which", "what", "how", "other")


# --- text checks (no model) --------------------------------------------------------------------
def words(text: str) -> list[str]:
    """Lower-cased word tokens without punctuation or articles (SQuAD-style normalization)."""
    return [w for w in re.findall(r"[\w']+", text.lower()) if w not in ARTICLES]


def grounding(answer: str, document: str) -> float:
    """Share of the answer's words that occur in the document (1.0: every word is there)."""
    ans, doc = words(answer), set(words(document))
    return sum(w in doc for w in ans) / len(ans) if ans else 0.0


def norm_key(text: str) -> str:
    return " ".join(words(text))


def sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text.strip()) if len(s.strip()) > 3]


def sentence_spans(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """(start, end) character offsets of the sentences of text[start:end], whitespace trimmed."""
    end = len(text) if end is None else end
    spans, at = [], start
    for m in re.finditer(r"(?<=[.!?])\s+", text[start:end]):
        spans.append((at, start + m.start()))
        at = start + m.end()
    spans.append((at, end))
    out = []
    for a, b in spans:
        piece = text[a:b]
        if piece.strip():
            out.append((a + len(piece) - len(piece.lstrip()), b - (len(piece) - len(piece.rstrip()))))
    return out


def passages(text: str, max_words: int = MAX_PASSAGE_WORDS) -> list[tuple[int, int]]:
    """Offsets of consecutive passages of at most max_words words, cut at sentence ends (a longer sentence is
    cut at a word): a long document is read part by part instead of overflowing the generator's context."""
    pieces = []
    for a, b in sentence_spans(text):
        ws = [m.span() for m in re.finditer(r"\S+", text[a:b])]
        for k in range(0, len(ws), max_words):
            part = ws[k:k + max_words]
            pieces.append((a + part[0][0], a + part[-1][1], len(part)))
    out, cur, n = [], None, 0
    for a, b, k in pieces:
        if cur and n + k > max_words:
            out.append(cur)
            cur, n = None, 0
        cur, n = ((cur[0], b) if cur else (a, b)), n + k
    return out + ([cur] if cur else [])


def question_type(question: str) -> str:
    """who / when / where / how many / which / what / how / other, from the question's wording: multiple-choice
    distractors of the same type are plausible (a year against years, a place against places)."""
    q = " ".join(re.findall(r"[\w']+", question.lower()))
    if re.search(r"\bhow (many|much)\b", q):
        return "how many"
    if re.search(r"\b(what|which) (year|date|day|month|century|decade)\b", q):
        return "when"
    found = [(m.start(), m.group(1)) for m in re.finditer(r"\b(who|whom|whose|when|where|which|what|how)\b", q)]
    if not found:
        return "other"
    word = min(found)[1]
    return "who" if word in ("whom", "whose") else word


def evidence_span(question: str, answer: str, document: str, start: int, end: int) -> tuple[int, int]:
    """The sentence of document[start:end] that grounds the answer best (ties: the most question words)."""
    q = set(words(question))
    best = max(sentence_spans(document, start, end) or [(start, end)],
               key=lambda ab: (grounding(answer, document[ab[0]:ab[1]]), len(q & set(words(document[ab[0]:ab[1]])))))
    return best


def entity_of(rec: dict, text: str, entity_field: str = "entity") -> str | None:
    """The document's subject: its entity/title field, else its first capitalised name."""
    for key in (entity_field, "title", "name"):
        if isinstance(rec.get(key), str) and rec[key].strip():
            return rec[key].strip()
    m = re.search(r"\b([A-Z][\w'-]+(?:\s+[A-Z][\w'-]+)*)", text)
    return m.group(1) if m else None


def template_for(text: str) -> str:
    return FACT_TEMPLATES[zlib.crc32(text.encode()) % len(FACT_TEMPLATES)]  # stable across runs


def parse_qa(response: str) -> list[tuple[str, str]]:
    """Q:/A: pairs from a generation; lines that are not part of a pair are ignored."""
    pairs, question = [], None
    for line in response.splitlines():
        line = line.strip().lstrip("-*0123456789. )").strip()
        m = re.match(r"^(Q|Question)\s*[:.]\s*(.+)$", line, re.I)
        if m:
            question = m.group(2).strip()
            continue
        m = re.match(r"^(A|Answer)\s*[:.]\s*(.+)$", line, re.I)
        if m and question:
            pairs.append((question, m.group(2).strip()))
            question = None
    return pairs


def parse_lines(response: str) -> list[str]:
    return [l.strip().lstrip("-*0123456789. )").strip() for l in response.splitlines()
            if len(l.strip().lstrip("-*0123456789. )").strip()) > 3]


def filter_qa(candidates: list[dict], min_grounding: float) -> tuple[list[dict], dict[str, int]]:
    """Keep grounded, non-trivial, first-seen QA pairs; count why the others were dropped."""
    kept, seen, dropped = [], set(), {"ungrounded": 0, "duplicate": 0, "trivial": 0}
    for c in candidates:
        c["grounding"] = round(grounding(c["answer"], c["source_doc"]), 3)
        key = norm_key(c["question"])
        if not key or not norm_key(c["answer"]) or norm_key(c["answer"]) in key:
            dropped["trivial"] += 1  # empty, or the answer is already in the question
        elif c["grounding"] < min_grounding:
            dropped["ungrounded"] += 1
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            kept.append(c)
    return kept, dropped


def about_test_entities(docs: list[dict], eval_qa: list[dict]) -> list[bool]:
    """Per document: is it about a test entity (split "test", or an entity_id / entity the evaluation QA asks
    about)? Synthetic QA or facts about those would put the evaluation's answers into training data."""
    ids = {str(q["entity_id"]) for q in eval_qa if q.get("entity_id") is not None}
    names = {str(q["entity"]) for q in eval_qa if q.get("entity")}
    return [d.get("split") == "test" or (d.get("entity_id") is not None and str(d["entity_id"]) in ids)
            or (bool(d.get("entity")) and str(d["entity"]) in names) for d in docs]


def facts_from_documents(rows: list[dict], text_field: str = "text", entity_field: str = "entity") -> list[dict]:
    """Knowledge-Instruct without a model: each distinct sentence that names its document's entity becomes
    a 'Tell me a fact about X' instruction (paraphrased documents give paraphrased facts)."""
    out, seen = [], set()
    for i, rec in enumerate(rows):
        text = str(rec.get(text_field) or "")
        entity = entity_of(rec, text, entity_field)
        if not entity:
            continue
        for sent in sentences(text):
            key = (entity, norm_key(sent))
            if entity.lower() not in sent.lower() or key in seen:
                continue
            seen.add(key)
            template = template_for(sent)
            out.append({"prompt": template.format(entity=entity), "response": sent, "entity": entity, "fact": sent,
                        "kind": "fact", "source_index": i, "generator": "rules", "template": template})
    return out


# --- generation ----------------------------------------------------------------------------------
GenerateFn = Callable[[list[str]], list[str]]


def model_generator(model_name: str, batch_size: int = 8, max_new_tokens: int = 160,
                    device: str = "auto", bar: bool = True) -> GenerateFn:
    """Batched greedy generation (cptcore.evaluate.generate does the batching); bar: a tqdm bar on stderr."""
    from tqdm import tqdm

    from .config import ModelConfig
    from .evaluate.generate import generate
    from .models import load_model, pick_device

    device = pick_device(device)
    model, tokenizer = load_model(ModelConfig(name=model_name), device=device)
    chat = bool(getattr(tokenizer, "chat_template", None))

    def run(prompts: list[str]) -> list[str]:
        out: list[str] = []
        chunk = batch_size  # one batch per update: the bar moves as batches finish
        with tqdm(total=len(prompts), desc="generating", unit="prompt", file=sys.stderr, disable=not bar) as b:
            for start in range(0, len(prompts), chunk):
                part = prompts[start:start + chunk]
                out += generate(model, tokenizer, part, chat=chat, max_new_tokens=max_new_tokens,
                                batch_size=batch_size)
                b.update(len(part))
        return out

    return run


Progress = Callable[[int, int], None]  # (passages done, passages in all)


def synth_qa(docs: list[dict], generate_fn: GenerateFn, generator: str, text_field: str = "text",
             per_doc: int = 3, kinds: tuple[str, ...] = ("factual", "reasoning", "summary"),
             min_grounding: float = 0.8, progress: Progress | None = None, per_call: int | None = None,
             max_passage_words: int = MAX_PASSAGE_WORDS) -> tuple[list[dict], dict]:
    """QA pairs about each document (long ones passage by passage), grounded in the passage the model read and
    deduplicated; returns (records, stats). per_call: passages per generate_fn call (None: one call), so
    progress(done, total) can move between calls."""
    units = []  # (document index, passage start, passage end)
    for i, rec in enumerate(docs):
        doc = str(rec.get(text_field) or "")
        units += [(i, a, b) for a, b in passages(doc, max_passage_words)]
    step = per_call or max(1, len(units))
    candidates, generations = [], 0
    for at in range(0, len(units), step):
        jobs = []
        for i, a, b in units[at:at + step]:
            doc = str(docs[i].get(text_field) or "")
            jobs += [(i, a, b, kind, QA_PROMPTS[kind].format(n=per_doc, doc=doc[a:b])) for kind in kinds]
        responses = generate_fn([j[4] for j in jobs])
        generations += len(jobs)
        for (i, a, b, kind, prompt), response in zip(jobs, responses):
            doc = str(docs[i].get(text_field) or "")
            for q, ans in parse_qa(response):
                candidates.append({"question": q, "answer": ans, "kind": kind, "source_index": i,
                                   "source_doc": doc[a:b], "passage_start": a, "passage_end": b,
                                   "entity": docs[i].get("entity"), "generator": generator, "prompt": prompt})
        if progress:
            progress(min(at + step, len(units)), len(units))
    kept, dropped = filter_qa(candidates, min_grounding)
    for r in kept:
        doc = str(docs[r["source_index"]].get(text_field) or "")
        a, b = evidence_span(r["question"], r["answer"], doc, r["passage_start"], r["passage_end"])
        found = doc.lower().find(r["answer"].lower(), r["passage_start"], r["passage_end"])
        r.update(evidence=doc[a:b], evidence_start=a, evidence_end=b, answer_start=found if found >= 0 else None)
    grounded = sum(c["grounding"] >= min_grounding for c in candidates)
    return kept, {"documents": len(docs), "passages": len(units), "generations": generations,
                  "candidates": len(candidates), "grounded": grounded, "kept": len(kept), "dropped": dropped}


def synth_facts(docs: list[dict], generate_fn: GenerateFn | None, generator: str, text_field: str = "text",
                paraphrases: int = 3, min_grounding: float = 0.8) -> tuple[list[dict], dict]:
    """Knowledge-Instruct records: facts (model-extracted, or sentences with generate_fn=None), paraphrased,
    grounded, deduplicated, wrapped in instruction templates."""
    if generate_fn is None:
        recs = facts_from_documents(docs, text_field)
        for r in recs:
            r["source_doc"] = str(docs[r["source_index"]].get(text_field) or "")
        return recs, {"documents": len(docs), "kept": len(recs)}
    jobs = []
    for i, rec in enumerate(docs):
        doc = str(rec.get(text_field) or "")
        entity = entity_of(rec, doc)
        if entity:
            jobs.append((i, entity, doc, FACTS_PROMPT.format(entity=entity, doc=doc)))
    extracted = generate_fn([j[3] for j in jobs])
    facts, dropped = [], {"ungrounded": 0, "no_entity": 0, "duplicate": 0}
    for (i, entity, doc, prompt), response in zip(jobs, extracted):
        for fact in parse_lines(response):
            if entity.lower() not in fact.lower():
                dropped["no_entity"] += 1
            elif grounding(fact, doc) < min_grounding:
                dropped["ungrounded"] += 1
            else:
                facts.append({"fact": fact, "entity": entity, "source_index": i, "source_doc": doc, "prompt": prompt})
    para_jobs = [(f, PARAPHRASE_PROMPTS[k % len(PARAPHRASE_PROMPTS)].format(fact=f["fact"]))
                 for f in facts for k in range(paraphrases)]
    rewritten = generate_fn([p for _, p in para_jobs]) if para_jobs else []
    variants = [(f, f["fact"], f["prompt"]) for f in facts]
    variants += [(f, (parse_lines(r) or [""])[0], p) for (f, p), r in zip(para_jobs, rewritten)]
    out, seen = [], set()
    for f, text, prompt in variants:
        key = (f["entity"], norm_key(text))
        if not key[1] or f["entity"].lower() not in text.lower():
            dropped["no_entity"] += 1
        elif grounding(text, f["source_doc"]) < min_grounding:
            dropped["ungrounded"] += 1  # a paraphrase that invents words the document does not support
        elif key in seen:
            dropped["duplicate"] += 1
        else:
            seen.add(key)
            template = template_for(text)
            out.append({"prompt": template.format(entity=f["entity"]), "response": text, "entity": f["entity"],
                        "fact": f["fact"], "kind": "fact" if text == f["fact"] else "paraphrase",
                        "source_index": f["source_index"], "source_doc": f["source_doc"], "generator": generator,
                        "generation_prompt": prompt, "template": template,
                        "grounding": round(grounding(text, f["source_doc"]), 3)})
    return out, {"documents": len(docs), "facts": len(facts), "paraphrases_asked": len(para_jobs),
                 "kept": len(out), "dropped": dropped}


# --- QA from a user's documents: split by document, distractors, atomic files ------------------------
@dataclass
class QAResult:
    """Labelled QA rows and the numbers behind them; problem says why there is nothing to save."""
    records: list[dict]
    stats: dict
    problem: str | None = None
    notes: list[str] = field(default_factory=list)  # warnings worth a line (skipped short documents)


def doc_entity_id(row: dict, text: str) -> str:
    """The document's own entity_id when it has one (the recipes and the evaluation match on it), else its
    document_key: documents with the same normalized text share an id and land on the same side."""
    from .data.heldout import document_key

    own = row.get("entity_id")
    return str(own) if own is not None and str(own).strip() else document_key(text)


def qa_paths(out: str | Path) -> tuple[Path, Path]:
    """NAME.jsonl (or NAME, or NAME.qa_train.jsonl) -> (NAME.qa_train.jsonl, NAME.qa_test.jsonl)."""
    out = Path(out)
    stem = out.name[:-len(".jsonl")] if out.name.endswith(".jsonl") else out.name
    for tail in (".qa_train", ".qa_test"):
        stem = stem[:-len(tail)] if stem.endswith(tail) else stem
    return out.with_name(f"{stem}.qa_train.jsonl"), out.with_name(f"{stem}.qa_test.jsonl")


def split_by_document(records: list[dict], test_share: float = TEST_SHARE, seed: int = 0) -> None:
    """Set `split` on every row: the entity_ids ranked by sha256(f"{seed}:{id}") (independent of row order, so a
    document keeps its side when others are added), the first round(share x n) test, at least 1 on each side."""
    ids = sorted({r["entity_id"] for r in records})
    k = min(len(ids) - 1, max(1, round(test_share * len(ids)))) if len(ids) >= 2 else 0
    rank = sorted(ids, key=lambda e: hashlib.sha256(f"{seed}:{e}".encode()).hexdigest())
    test = set(rank[:k])
    for r in records:
        r["split"] = "test" if r["entity_id"] in test else "train"


def add_distractors(records: list[dict], seed: int = 0, n: int = MC_DISTRACTORS) -> None:
    """Each qa_test row gets up to n answers of its attribute from other documents (both splits), none equal
    to its own answer after SQuAD normalization, the closest in word count first (a one-word gold among
    sentences is found by its form, not by knowing it), ties in a seeded order per row id; qa_train rows get
    none."""
    from .evaluate.knowledge_qa import normalize_answer

    for r in records:
        if r.get("split") != "test":
            r.pop("distractors", None)
            continue
        seen, cands = {normalize_answer(r["answer"])}, []
        for o in records:
            norm = normalize_answer(o["answer"])
            if o["attribute"] == r["attribute"] and o["entity_id"] != r["entity_id"] and norm and norm not in seen:
                seen.add(norm)
                cands.append(o["answer"])
        random.Random(f"{seed}:{r['id']}").shuffle(cands)
        size = len(r["answer"].split())
        r["distractors"] = sorted(cands, key=lambda c: abs(len(c.split()) - size))[:n]


def split_counts(records: list[dict]) -> dict:
    return {side: {"pairs": sum(r["split"] == side for r in records),
                   "documents": len({r["doc_row"] for r in records if r["split"] == side}),
                   "entities": len({r["entity_id"] for r in records if r["split"] == side})}
            for side in ("train", "test")}


def qa_from_documents(rows: list[dict], generate_fn: GenerateFn, generator: str, source: str = "documents",
                      text_field: str = "text", per_doc: int = 3, min_grounding: float = 0.8,
                      test_share: float = TEST_SHARE, seed: int = 0, min_words: int = MIN_DOC_WORDS,
                      row_numbers: list[int] | None = None, progress: Progress | None = None,
                      per_call: int | None = None) -> QAResult:
    """The QA dataset of a user's documents: generate, filter, label (entity_id, attribute, id, doc_row),
    split by document and draw distractors. Never raises for a poor yield: `problem` says what went wrong."""
    from .data.heldout import document_key

    numbers = row_numbers or list(range(1, len(rows) + 1))
    docs, doc_rows, short = [], [], 0
    for n, row in zip(numbers, rows):
        text = str(row.get(text_field) or "")
        if len(text.split()) < min_words:
            short += 1
            continue
        docs.append(row)
        doc_rows.append(n)
    stats = {"source": source, "generator": generator, "documents": len(rows), "documents_used": len(docs),
             "skipped_short": short, "min_words": min_words, "test_share": test_share, "seed": seed}
    notes = [f"{source}: skipped {short} of {len(rows)} documents under {min_words} words (too short to ask "
             "about)"] if short else []
    if not docs:
        return QAResult([], stats, f"{source}: all {len(rows)} documents are under {min_words} words: too short "
                        "to generate questions from", notes)
    records, gen_stats = synth_qa(docs, generate_fn, generator, text_field, per_doc, min_grounding=min_grounding,
                                  progress=progress, per_call=per_call)
    for r in records:
        row = docs[r["source_index"]]
        text = str(row.get(text_field) or "")
        r["doc_row"] = doc_rows[r["source_index"]]
        r["document_key"] = document_key(text)
        r["entity_id"] = doc_entity_id(row, text)
        r["attribute"] = question_type(r["question"])
        r["id"] = "qa-" + hashlib.sha1(f"{r['entity_id']}\n{r['question']}".encode()).hexdigest()[:12]
    n_with = len({r["doc_row"] for r in records})
    stats.update(passages=gen_stats["passages"], generations=gen_stats["generations"],
                 candidates=gen_stats["candidates"], pairs=len(records), documents_with_pairs=n_with,
                 pairs_per_document=round(len(records) / len(docs), 3),
                 grounded_share=round(gen_stats["grounded"] / gen_stats["candidates"], 3)
                 if gen_stats["candidates"] else 0.0,
                 dropped=gen_stats["dropped"])
    if not gen_stats["candidates"]:
        return QAResult([], stats, f"{source}: the model {generator} wrote no parsable Q:/A: pair for any of "
                        f"{len(docs)} documents ({gen_stats['generations']} generations)", notes)
    if not records:
        return QAResult([], stats, f"{source}: 0 of {gen_stats['candidates']} generated pairs passed the filters "
                        f"({gen_stats['dropped']}); try a larger model or a lower --min-grounding", notes)
    if len({r["entity_id"] for r in records}) < 2:
        return QAResult(records, stats, f"{source}: only 1 document yielded QA pairs ({len(records)}): a split "
                        "into qa_train and qa_test needs pairs from at least 2 documents", notes)
    split_by_document(records, test_share, seed)
    add_distractors(records, seed)
    stats.update(split_counts(records))
    return QAResult(records, stats, None, notes)


def finish_qa(records: list[dict], seed: int = 0) -> dict:
    """After the user dropped pairs (the Data page's keep column): redraw the distractors from the pairs left
    and count the sides; a ValueError when one side is empty. The split itself is kept as shown."""
    counts = split_counts(records) if records else {"train": {"pairs": 0}, "test": {"pairs": 0}}
    empty = [side for side in ("train", "test") if not counts[side]["pairs"]]
    if empty:
        raise ValueError(f"no {' or '.join('qa_' + s for s in empty)} pairs left to save: keep pairs from "
                         "documents on both sides")
    add_distractors(records, seed)
    return counts


def write_jsonl_atomic(files: dict[Path, list[dict]]) -> list[Path]:
    """Write every file to a fresh temporary name in its folder, and rename them into place only once all are
    written: an error while writing leaves the old files (or none), never a half-written one."""
    temps = []
    try:
        for path, rows in files.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
            temps.append((tmp, path))
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
        for tmp, path in temps:
            os.replace(tmp, path)
    except BaseException:
        for tmp, _ in temps:
            Path(tmp).unlink(missing_ok=True)
        raise
    return [p for _, p in temps]


def write_qa(records: list[dict], out: str | Path) -> tuple[Path, Path]:
    """NAME.qa_train.jsonl and NAME.qa_test.jsonl from split rows, both or neither."""
    train, test = qa_paths(out)
    write_jsonl_atomic({train: [r for r in records if r["split"] == "train"],
                        test: [r for r in records if r["split"] == "test"]})
    return train, test


def yield_note(stats: dict) -> str | None:
    """A plain sentence when the yield is low (None when it is fine): the 135M default is the usual cause."""
    from .models import DEFAULT_MODEL

    per_doc = stats.get("pairs_per_document", 0.0)
    if per_doc >= LOW_YIELD:
        return None
    grounded = (f"{100 * stats.get('grounded_share', 0.0):.0f}% of the parsed pairs grounded" if stats.get("candidates")
                else "no parsable Q:/A: pair")
    line = (f"Low yield: {stats.get('pairs', 0)} pairs from {stats.get('documents_used', 0)} documents "
            f"({per_doc:.2f} per document, {grounded}); ")
    if stats.get("generator") == DEFAULT_MODEL:
        return line + ("the 135M default writes few usable questions; a larger local model gives more: set the "
                       "generator model (a local folder or a hub id).")
    return line + "a larger generator model gives more."


# --- `cpt synth` ---------------------------------------------------------------------------------
def cmd_synth(args) -> int:
    from .config import SourceConfig
    from .data.sources import DataError, read_records

    if args.kind == "facts" and not args.out:
        raise DataError("--kind facts needs --out FILE.jsonl")
    if args.kind == "qa" and not (args.out or args.out_prefix):
        raise DataError("--kind qa needs --out NAME.jsonl or --out-prefix NAME (writes NAME.qa_train.jsonl and "
                        "NAME.qa_test.jsonl)")
    if not 0 < args.test_share < 1:
        raise DataError(f"--test-share {args.test_share:g}: must be between 0 and 1")
    rows = read_records(SourceConfig(path=args.docs, text_field=args.text_field))
    numbered = [(n, d) for n, d in enumerate(rows, 1) if str(d.get(args.text_field) or "").strip()]
    if not numbered:
        raise DataError(f"{args.docs}: no documents with text in field {args.text_field!r}")
    from .data.heldout import BUNDLED

    eval_path = BUNDLED["qa"] if args.eval_qa == "auto" else args.eval_qa  # auto: the bundled test questions
    eval_qa = [] if eval_path == "none" else read_records(SourceConfig(path=eval_path))
    test = about_test_entities([d for _, d in numbered], eval_qa)
    if args.skip_test_entities:
        numbered = [nd for nd, t in zip(numbered, test) if not t]
        test = [False] * len(numbered)
        if not numbered:
            raise DataError(f"{args.docs}: every document is about a test entity (--skip-test-entities)")
    numbered, test = (numbered[: args.limit], test[: args.limit]) if args.limit else (numbered, test)
    docs = [d for _, d in numbered]
    if any(test) and not args.allow_test_entities:
        raise DataError(f"{args.docs}: refused {sum(test)} of {len(docs)} documents about test entities (split "
                        f"'test', or an entity asked in the evaluation QA {eval_path}): synthetic data about them "
                        "would train on the evaluation's answers; pass --skip-test-entities to leave them out or "
                        "--allow-test-entities to use them anyway")
    rules = args.model in ("rules", "none")
    if rules and args.kind == "qa":
        raise DataError("--kind qa needs a --model that writes questions (rules only extract facts)")
    gen = None if rules else model_generator(args.model, args.batch_size, args.max_new_tokens, args.device)
    if args.kind == "qa":
        return _write_qa_cli(args, docs, [n for n, _ in numbered], gen)
    records, stats = synth_facts(docs, gen, "rules" if rules else args.model, args.text_field,
                                 args.paraphrases, args.min_grounding)
    if not records:
        raise DataError(f"{args.docs}: no fact of {len(docs)} documents passed the filters ({stats.get('dropped')});"
                        " try a larger --model or a lower --min-grounding")
    for r in records:
        r["source_path"] = args.docs
    out = Path(args.out)
    write_jsonl_atomic({out: records})
    print(json.dumps({"out": str(out), **stats}))
    return 0


def _write_qa_cli(args, docs: list[dict], row_numbers: list[int], gen: GenerateFn) -> int:
    from .data.sources import DataError

    result = qa_from_documents(docs, gen, args.model, args.docs, args.text_field, args.per_doc, args.min_grounding,
                               args.test_share, args.seed, row_numbers=row_numbers)
    low = yield_note(result.stats) if "pairs" in result.stats else None
    for note in result.notes + ([low] if low else []):
        print(f"warning: {note}", file=sys.stderr)
    if result.problem:
        raise DataError(result.problem)
    for r in result.records:
        r["source_path"] = args.docs
    train, test = write_qa(result.records, args.out_prefix or args.out)
    print(json.dumps({**result.stats, "out": {"train": str(train), "test": str(test)}}))
    return 0


def add_parser(sub) -> None:
    s = sub.add_parser("synth", help="generate QA pairs or Knowledge-Instruct facts from documents")
    s.add_argument("docs", help="documents: a file, folder or builtin:NAME")
    s.add_argument("--kind", choices=["qa", "facts"], required=True)
    s.add_argument("--model", default="smollm2-135m-instruct",
                   help="generator model (facts also accept 'rules': sentences naming the entity, no model)")
    out = s.add_mutually_exclusive_group()
    out.add_argument("--out", help="facts: the output .jsonl; qa: NAME.jsonl writes NAME.qa_train.jsonl and "
                     "NAME.qa_test.jsonl")
    out.add_argument("--out-prefix", help="qa: NAME writes NAME.qa_train.jsonl and NAME.qa_test.jsonl")
    s.add_argument("--test-share", type=float, default=TEST_SHARE,
                   help="qa: share of the documents whose questions go to qa_test (at least 1 document on each "
                        "side). Default 0.2: 80%% of the questions stay trainable for pit/pit_plus, while 50 documents "
                        "already give 10 test documents to score over (a smaller share leaves too few for a readable "
                        "interval); all documents are trained on either way")
    s.add_argument("--seed", type=int, default=0, help="qa: seed of the document split and the distractors")
    s.add_argument("--limit", type=int, help="use the first N documents")
    s.add_argument("--per-doc", type=int, default=3, help="questions asked per document and kind (qa)")
    s.add_argument("--paraphrases", type=int, default=3, help="paraphrases per fact (facts; 3-5 is plenty)")
    s.add_argument("--min-grounding", type=float, default=0.8,
                   help="share of an answer's words that must appear in its document (default 0.8)")
    s.add_argument("--text-field", default="text")
    s.add_argument("--eval-qa", default="auto",
                   help="evaluation QA whose entities get no synthetic data (default auto: the bundled test "
                        "questions, builtin:knowledge_qa_test; 'none': only documents with split 'test' are refused)")
    test = s.add_mutually_exclusive_group()
    test.add_argument("--skip-test-entities", action="store_true",
                      help="leave out documents about test entities (split 'test' or asked in --eval-qa)")
    test.add_argument("--allow-test-entities", action="store_true",
                      help="use documents about test entities anyway (their synthetic data leaks evaluation answers)")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--max-new-tokens", type=int, default=160)
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    s.set_defaults(func=cmd_synth)
