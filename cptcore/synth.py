"""Synthetic training data from documents: QA pairs and Knowledge-Instruct facts, with provenance.

    cpt synth builtin:knowledge_docs --kind qa --model smollm2-135m-instruct --out qa.jsonl --limit 50 \
        --skip-test-entities
    cpt synth builtin:knowledge_docs --kind facts --model rules --out facts.jsonl --allow-test-entities
        # no model: sentences; facts restate documents the knowledge_instruct recipe trains on anyway

QA (Jiang et al. 2024): the model reads each document and writes factual, reasoning and summary questions.
Facts (Ovadia et al. 2025): extract the facts naming the document's entity, paraphrase each a few times
(≈3-5 paraphrases is where accuracy plateaus), wrap them in instruction templates. Every kept record is
grounded (its answer's words appear in the source document), deduplicated, and says where it came from.
Documents about test entities (split "test", or an entity the evaluation QA asks about) are refused unless
--skip-test-entities leaves them out or --allow-test-entities keeps them: data written about them would train on
the evaluation's answers.
"""
from __future__ import annotations

import json
import re
import sys
import zlib
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
                    device: str = "auto") -> GenerateFn:
    """Batched greedy generation with a progress bar (cptcore.evaluate.generate does the batching)."""
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
        with tqdm(total=len(prompts), desc="generating", unit="prompt", file=sys.stderr) as bar:
            for start in range(0, len(prompts), chunk):
                part = prompts[start:start + chunk]
                out += generate(model, tokenizer, part, chat=chat, max_new_tokens=max_new_tokens,
                                batch_size=batch_size)
                bar.update(len(part))
        return out

    return run


def synth_qa(docs: list[dict], generate_fn: GenerateFn, generator: str, text_field: str = "text",
             per_doc: int = 3, kinds: tuple[str, ...] = ("factual", "reasoning", "summary"),
             min_grounding: float = 0.8) -> tuple[list[dict], dict]:
    """QA pairs about each document, grounded in it and deduplicated; returns (records, stats)."""
    jobs = []
    for i, rec in enumerate(docs):
        doc = str(rec.get(text_field) or "")
        for kind in kinds:
            jobs.append((i, kind, doc, QA_PROMPTS[kind].format(n=per_doc, doc=doc)))
    responses = generate_fn([j[3] for j in jobs])
    candidates = []
    for (i, kind, doc, prompt), response in zip(jobs, responses):
        for q, a in parse_qa(response):
            candidates.append({"question": q, "answer": a, "kind": kind, "source_index": i, "source_doc": doc,
                               "entity": docs[i].get("entity"), "generator": generator, "prompt": prompt})
    kept, dropped = filter_qa(candidates, min_grounding)
    return kept, {"documents": len(docs), "generations": len(jobs), "candidates": len(candidates),
                  "kept": len(kept), "dropped": dropped}


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


# --- `cpt synth` ---------------------------------------------------------------------------------
def cmd_synth(args) -> int:
    from .config import SourceConfig
    from .data.sources import DataError, read_records

    docs = read_records(SourceConfig(path=args.docs, text_field=args.text_field))
    docs = [d for d in docs if str(d.get(args.text_field) or "").strip()]
    if not docs:
        raise DataError(f"{args.docs}: no documents with text in field {args.text_field!r}")
    eval_qa = [] if args.eval_qa == "none" else read_records(SourceConfig(path=args.eval_qa))
    test = about_test_entities(docs, eval_qa)
    if args.skip_test_entities:
        docs = [d for d, t in zip(docs, test) if not t]
        test = [False] * len(docs)
        if not docs:
            raise DataError(f"{args.docs}: every document is about a test entity (--skip-test-entities)")
    docs, test = (docs[: args.limit], test[: args.limit]) if args.limit else (docs, test)
    if any(test) and not args.allow_test_entities:
        raise DataError(f"{args.docs}: refused {sum(test)} of {len(docs)} documents about test entities (split "
                        f"'test', or an entity asked in the evaluation QA {args.eval_qa}): synthetic data about them "
                        "would train on the evaluation's answers; pass --skip-test-entities to leave them out or "
                        "--allow-test-entities to use them anyway")
    rules = args.model in ("rules", "none")
    if rules and args.kind == "qa":
        raise DataError("--kind qa needs a --model that writes questions (rules only extract facts)")
    gen = None if rules else model_generator(args.model, args.batch_size, args.max_new_tokens, args.device)
    if args.kind == "qa":
        records, stats = synth_qa(docs, gen, args.model, args.text_field, args.per_doc, min_grounding=args.min_grounding)
    else:
        records, stats = synth_facts(docs, gen, "rules" if rules else args.model, args.text_field,
                                     args.paraphrases, args.min_grounding)
    for r in records:
        r["source_path"] = args.docs
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    print(json.dumps({"out": str(out), **stats}))
    if not records:
        raise DataError(f"{out}: no record passed the filters ({stats.get('dropped')}); try a larger --model "
                        "or a lower --min-grounding")
    return 0


def add_parser(sub) -> None:
    from .config import EvalConfig

    s = sub.add_parser("synth", help="generate QA pairs or Knowledge-Instruct facts from documents")
    s.add_argument("docs", help="documents: a file, folder or builtin:NAME")
    s.add_argument("--kind", choices=["qa", "facts"], required=True)
    s.add_argument("--model", default="smollm2-135m-instruct",
                   help="generator model (facts also accept 'rules': sentences naming the entity, no model)")
    s.add_argument("--out", required=True, help="output .jsonl (question/answer or prompt/response records)")
    s.add_argument("--limit", type=int, help="use the first N documents")
    s.add_argument("--per-doc", type=int, default=3, help="questions asked per document and kind (qa)")
    s.add_argument("--paraphrases", type=int, default=3, help="paraphrases per fact (facts; 3-5 is plenty)")
    s.add_argument("--min-grounding", type=float, default=0.8,
                   help="share of an answer's words that must appear in its document (default 0.8)")
    s.add_argument("--text-field", default="text")
    s.add_argument("--eval-qa", default=EvalConfig().qa_source.path,
                   help="evaluation QA whose entities get no synthetic data (default: %(default)s; 'none': only "
                        "documents with split 'test' are refused)")
    test = s.add_mutually_exclusive_group()
    test.add_argument("--skip-test-entities", action="store_true",
                      help="leave out documents about test entities (split 'test' or asked in --eval-qa)")
    test.add_argument("--allow-test-entities", action="store_true",
                      help="use documents about test entities anyway (their synthetic data leaks evaluation answers)")
    s.add_argument("--batch-size", type=int, default=8)
    s.add_argument("--max-new-tokens", type=int, default=160)
    s.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    s.set_defaults(func=cmd_synth)
