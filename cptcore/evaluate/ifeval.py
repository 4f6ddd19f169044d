"""ifeval: IFEval's 25 verifiable instruction types and its four scores, scored exactly like Google's reference.

The checker classes come from the maintained `if-verifiable` package (identical to Google's registry); the
procedure is Google's `evaluation_lib.py`: strict checks the response as given, loose passes if any of 8
variants passes (without the first line, the last line or both, each with and without `*`); prompt-level
= all of a prompt's instructions pass, instruction-level = passes / instructions. Unknown instruction ids
are an error rather than silently skipped. Offline: NLTK's punkt_tab is bundled, langdetect is seeded.

    cpt score-if responses.jsonl      # score responses from any engine
"""
from __future__ import annotations

from pathlib import Path

from .stats import Score, proportion, ratio_score

ASSETS = Path(__file__).resolve().parents[1] / "assets"
BUNDLED_PROMPTS = ASSETS / "ifeval" / "prompts.jsonl"
NLTK_DATA = ASSETS / "nltk_data"
REQUIRED = ("prompt", "instruction_id_list", "kwargs")
# A greedy response whose last LOOP_WINDOW words' 4-grams mostly repeat (numbers counted alike) is a loop: it
# never reaches EOS, so no cap ends it.
# Measured (experiments/measure_ifeval_truncation.py): 33 of the default model's 75 bundled responses never
# end within 512 tokens; every ending response ends within 437.
LOOP_REPETITION = 0.5
LOOP_WINDOW = 80


class IFEvalError(ValueError):
    """Bad IFEval input (unknown instruction id, malformed record); the message names where."""


def registry() -> dict:
    """Instruction id -> checker class, with the sentence splitter and language detector made offline and stable."""
    import nltk
    from langdetect import DetectorFactory

    if str(NLTK_DATA) not in nltk.data.path:
        nltk.data.path.insert(0, str(NLTK_DATA))  # punkt_tab for number_sentences / capital_word_frequency
    DetectorFactory.seed = 0  # langdetect is random unless seeded: verdicts would change between runs
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    return INSTRUCTION_DICT


def build_checkers(record: dict, where: str = "") -> list:
    """One configured checker per instruction of an IFEval record (Google's build_description procedure)."""
    known = registry()
    ids, kwargs_list = record["instruction_id_list"], record["kwargs"]
    if not isinstance(ids, list) or not isinstance(kwargs_list, list) or len(ids) != len(kwargs_list):
        raise IFEvalError(f"{where}instruction_id_list and kwargs must be lists of the same length")
    checkers = []
    for instruction_id, kwargs in zip(ids, kwargs_list):
        if instruction_id not in known:
            raise IFEvalError(f"{where}unknown instruction id {instruction_id!r} (IFEval has {len(known)}: "
                              f"{', '.join(sorted(known))})")
        # hub rows carry every kwarg of every type, unused ones as None
        kwargs = {k: v for k, v in (kwargs or {}).items() if v is not None}
        checker = known[instruction_id](instruction_id)
        missing = [k for k in checker.get_instruction_args_keys() if k not in kwargs and k != "prompt"]
        if missing:  # the checker would pick a random value instead: verdicts would not be reproducible
            raise IFEvalError(f"{where}{instruction_id} needs kwargs {', '.join(missing)}")
        try:
            checker.build_description(**kwargs)
        except (TypeError, ValueError) as e:
            raise IFEvalError(f"{where}{instruction_id}: bad kwargs {kwargs} ({e})") from None
        args = checker.get_instruction_args()
        if args and "prompt" in args:
            checker.build_description(prompt=record["prompt"])
        checkers.append(checker)
    return checkers


def loose_variants(response: str) -> list[str]:
    """Google's 8 loose variants: the response without its first/last/both lines, each also without '*'."""
    lines = response.split("\n")
    remove_first = "\n".join(lines[1:]).strip()
    remove_last = "\n".join(lines[:-1]).strip()
    remove_both = "\n".join(lines[1:-1]).strip()
    return [response, response.replace("*", ""), remove_first, remove_last, remove_both,
            remove_first.replace("*", ""), remove_last.replace("*", ""), remove_both.replace("*", "")]


def check_response(record: dict, response: str, where: str = "") -> dict:
    """Per-instruction strict and loose verdicts for one response, plus the prompt-level ones."""
    checkers = build_checkers(record, where)
    variants = loose_variants(response)
    strict = [bool(response.strip() and c.check_following(response)) for c in checkers]
    loose = [any(v.strip() and c.check_following(v) for v in variants) for c in checkers]
    return {"instruction_id_list": list(record["instruction_id_list"]), "strict": strict, "loose": loose,
            "prompt_strict": all(strict), "prompt_loose": all(loose)}


def aggregate(results: list[dict]) -> list[Score]:
    """The four IFEval scores in points (0-100), each with its n and a 95% CI.

    Prompt-level: Wilson over prompts. Instruction-level: bootstrap over prompts (a prompt's instructions
    are not independent), n = number of instructions.
    """
    ids = [r.get("id", r.get("key", i)) for i, r in enumerate(results)]
    extra = {"unit": "%"}
    for flag in ("truncated", "looping"):
        marks = [r[flag] for r in results if r.get(flag) is not None]
        if marks:
            extra[f"{flag}_frac"] = sum(marks) / len(marks)

    def inst_level(kind: str) -> Score:
        pairs = [(sum(r[kind]), len(r[kind])) for r in results]
        score = ratio_score(f"eval/if_inst_{kind}", pairs, "percent", ids=ids, prompts=len(results), **extra)
        score.n = sum(b for _, b in pairs)
        return score

    return [proportion("eval/if_prompt_strict", [r["prompt_strict"] for r in results], scale=100, ids=ids, **extra),
            proportion("eval/if_prompt_loose", [r["prompt_loose"] for r in results], scale=100, ids=ids, **extra),
            inst_level("strict"), inst_level("loose")]


# --- prompts ---------------------------------------------------------------------------------
def load_prompts(source: str = "bundled", limit: int | None = None, limit_key: str = "eval.ifeval_limit") -> list[dict]:
    """The bundled offline suite (first 25 prompts cover all 25 types) or google/IFEval from the hub."""
    if source == "bundled":
        records = read_jsonl(BUNDLED_PROMPTS, require=REQUIRED)
    elif source == "google":
        from ..config import SourceConfig
        from ..data.sources import read_records

        records = read_records(SourceConfig(path="google/IFEval", split="train"))
    else:
        raise IFEvalError(f"eval.ifeval_source: unknown source {source!r} (allowed: bundled, google)")
    if limit is not None:
        if limit > len(records):
            raise IFEvalError(f"{limit_key}={limit} but the {source} IFEval suite has {len(records)} prompts")
        records = records[:limit]
    for i, r in enumerate(records, 1):
        build_checkers(r, where=f"IFEval {source} prompt {r.get('key', i)}: ")  # fail before generating
    return records


def read_jsonl(path: Path, require: tuple[str, ...] = ()) -> list[dict]:
    """JSON lines with line-numbered errors for malformed lines and missing fields."""
    from ..data.sources import DataError, jsonl_lines

    path = Path(path)
    try:
        lines = jsonl_lines(path)
    except DataError as e:
        raise IFEvalError(str(e)) from None
    records = []
    for lineno, rec in lines:
        missing = [f for f in require if f not in rec]
        if missing:
            raise IFEvalError(f"{path}:{lineno}: missing field {', '.join(repr(m) for m in missing)}")
        rec["_line"] = lineno
        records.append(rec)
    if not records:
        raise IFEvalError(f"{path}: no records")
    return records


def score_responses(path: Path) -> tuple[list[dict], list[Score]]:
    """`cpt score-if`: verdicts for each line of a responses file (IFEval fields + response) and the 4 scores."""
    rows = read_jsonl(path, require=REQUIRED + ("response",))
    results = []
    for rec in rows:
        where = f"{path}:{rec['_line']}: "
        if not isinstance(rec["response"], str):
            raise IFEvalError(f"{where}field 'response' must be a string")
        res = check_response(rec, rec["response"], where)
        results.append({"line": rec["_line"], "key": rec.get("key"), **res})
    return results, aggregate(results)


# --- the evaluator ---------------------------------------------------------------------------
def ifeval(model, tokenizer, prompts: list[dict], chat: bool, max_new_tokens: int = 96,
           batch_size: int = 8, progress=None) -> tuple[list[Score], list[dict]]:
    """Generate greedy responses to the prompts and score them; per-item rows keep prompt, response, verdicts,
    whether the response was cut at max_new_tokens (`truncated`) and whether it ends in a loop (`looping`: at
    least LOOP_REPETITION of the word 4-grams of its last LOOP_WINDOW words repeat); scores carry both fractions.
    progress(done, total): prompts answered, after each generation batch (generate)."""
    from .coherence import repetition_rate, words
    from .generate import generate

    ended: list[bool] = []
    responses = generate(model, tokenizer, [p["prompt"] for p in prompts], chat=chat,
                         max_new_tokens=max_new_tokens, batch_size=batch_size, ended=ended, progress=progress)
    rows = []
    for i, (p, response, stop) in enumerate(zip(prompts, responses, ended)):
        res = check_response(p, response, where=f"IFEval prompt {p.get('key', i)}: ")
        tail = ["#" if w.isdigit() else w for w in words(response)][-LOOP_WINDOW:]  # "27. Prune..." "28. Prune..."
        rep = repetition_rate(tail)
        rows.append({"id": p.get("key", i), "prompt": p["prompt"], "response": response, "truncated": not stop,
                     "looping": rep is not None and rep >= LOOP_REPETITION, "kwargs": p["kwargs"], **res})
    return aggregate(rows), rows
