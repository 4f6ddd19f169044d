"""IFEval scoring: every instruction type with hand-checked passing and failing responses, Google's loose
procedure, offline sentence splitting, the bundled suite and `cpt score-if`."""
import json

import pytest

from cptcore.cli import main
from cptcore.evaluate.ifeval import (IFEvalError, aggregate, check_response, load_prompts, loose_variants,
                                     registry)


def rec(instruction_id, kwargs=None, prompt="Do the task."):
    return {"prompt": prompt, "instruction_id_list": [instruction_id], "kwargs": [kwargs or {}]}


# (instruction id, kwargs, a response that follows it, a response that does not) — checked by hand
CASES = [
    ("keywords:existence", {"keywords": ["insulated", "leak-proof"]},
     "This insulated bottle is leak-proof.", "This bottle keeps drinks cold."),
    ("keywords:frequency", {"keyword": "light", "frequency": 3, "relation": "at least"},
     "Light here, light there, light everywhere.", "The light was dim."),
    ("keywords:forbidden_words", {"forbidden_words": ["rain", "wet"]},
     "Grey clouds hung over the draining streets.", "The rain fell all day."),
    ("keywords:letter_frequency", {"letter": "z", "let_frequency": 3, "let_relation": "less than"},
     "A lazy cat sleeps.", "Zebras zigzag on the zoo lawn."),
    ("language:response_language", {"language": "fr"},
     "Un arc-en-ciel est un phénomène optique qui apparaît dans le ciel quand le soleil éclaire la pluie.",
     "A rainbow is an optical phenomenon that appears in the sky when sunlight shines through the rain."),
    ("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"},
     "Exercise helps the heart. It is also fun.", "Exercise helps. It is fun. Do it daily. Mr. Smith agrees."),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "First part.\n***\nSecond part.\n***\nThird part.", "First part.\n***\nSecond part."),
    ("length_constraints:number_words", {"num_words": 10, "relation": "at least"},
     "one two three four five six seven eight nine ten", "far too short"),
    ("length_constraints:nth_paragraph_first_word", {"num_paragraphs": 2, "nth_paragraph": 2, "first_word": "however"},
     "Working from home saves time.\n\nHowever, it can be lonely.",
     "Working from home saves time.\n\nBut it can be lonely."),
    ("detectable_content:number_placeholders", {"num_placeholders": 2},
     "Dear [name], your job starts on [date].", "Dear [name], welcome aboard."),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "Come to the party!\nP.S. Bring a chair.", "Come to the party and bring a chair."),
    ("detectable_format:number_bullet_lists", {"num_bullets": 3},
     "* Sleep early.\n* Avoid coffee.\n* Keep the room dark.", "* Sleep early.\n* Avoid coffee."),
    ("detectable_format:constrained_response", {}, "My answer is yes.", "Yes, it is."),
    ("detectable_format:number_highlighted_sections", {"num_highlights": 2},
     "This is *important* and *urgent*.", "This is *important* only."),
    ("detectable_format:multiple_sections", {"section_spliter": "Section", "num_sections": 2},
     "Section 1\nPack the bags.\nSection 2\nDrive up the hill.", "Section 1\nPack the bags and drive."),
    ("detectable_format:json_format", {}, '```json\n{"planet": "Mars"}\n```', "planet: Mars"),
    ("detectable_format:title", {}, "<<Autumn>>\nLeaves fall softly.", "Autumn\nLeaves fall softly."),
    ("combination:two_responses", {}, "Bean There\n******\nDaily Grind", "Bean There\n******\nBean There"),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Write a riddle about the moon."},
     "Write a riddle about the moon. I shine at night but have no light of my own.",
     "Here is a riddle: I shine at night but have no light of my own."),
    ("startend:end_checker", {"end_phrase": "Good luck!"},
     "You studied hard. Good luck!", "Good luck! You studied hard."),
    ("change_case:capital_word_frequency", {"capital_frequency": 2, "capital_relation": "at least"},
     "HUGE savings and BIG deals today.", "Huge savings and BIG deals today."),
    ("change_case:english_capital", {},
     "WARNING: THIS IS A CONSTRUCTION SITE. HARD HATS MUST BE WORN AT ALL TIMES.",
     "Warning: this is a construction site. Hard hats must be worn at all times."),
    ("change_case:english_lowercase", {},
     "i like toast with butter and a cup of tea in the morning.",
     "I like toast with butter and a cup of tea in the morning."),
    ("punctuation:no_comma", {}, "Dig a hole. Place the tree. Water it well.", "Dig a hole, place the tree."),
    ("startend:quotation", {}, '"Patience is bitter but its fruit is sweet."',
     "Patience is bitter but its fruit is sweet."),
]

# responses that fail strict but pass loose: the instruction is followed once a chatty first/last line or
# markdown asterisks are removed (Google's 8 loose variants)
LOOSE_ONLY = [
    ("startend:quotation", {}, 'Sure, here it is:\n"Patience is a virtue."'),
    ("startend:end_checker", {"end_phrase": "Good luck!"}, "You studied hard. Good luck!\nTell me if you need more."),
    ("punctuation:no_comma", {}, "Sure, here are the steps:\nDig a hole. Water it."),
    ("detectable_format:json_format", {}, 'Here is the JSON:\n{"planet": "Mars"}'),
    ("keywords:forbidden_words", {"forbidden_words": ["rain"]}, "Rain check!\nGrey clouds hung low over the city."),
    ("combination:repeat_prompt", {"prompt_to_repeat": "Name a colour."}, "**Name a colour.** Blue."),
]


# verdicts published in Google's instruction_following_eval/instructions_test.py (Apache-2.0), restated as data:
# the sentence counts depend on the trained punkt model, the others on Google's exact regexes
GOOGLE_VECTORS = [
    ("length_constraints:number_sentences", {"num_sentences": 4, "relation": "less than"},
     "xx,x. xx,x! xx/x. x{x}x?", False),
    ("length_constraints:number_sentences", {"num_sentences": 5, "relation": "less than"},
     "xxxx. xx,x! xxxx. x(x)x?", True),
    ("length_constraints:number_sentences", {"num_sentences": 4, "relation": "at least"},
     "xxxx. xx,x! xx|x. x&x x?", True),
    ("length_constraints:number_sentences", {"num_sentences": 5, "relation": "at least"},
     "xx-x. xx,x! xx}x. x,xx?", False),
    ("detectable_content:postscript", {"postscript_marker": "P.S."},
     "\n  The mysteries of space and time are mysterious.\n"
     "  P. S. Sometimes there are even spaces between P. and S..\n",
     True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 3},
     "\n          ***\n  paragraph 1\n          ***\n      paragraph 2\n          ***\n      paragraph 3", True),
    ("length_constraints:number_paragraphs", {"num_paragraphs": 2},
     "\n  paragraph 1\n          ***\n      paragraph 2\n          ***\n          ***", False),
    ("keywords:frequency", {"keyword": "  keyword ", "frequency": 4, "relation": "less than"},
     "\n  keyword, Keyword, KEYWORD\n  ", True),
    ("length_constraints:number_words", {"num_words": 8, "relation": "less than"},
     "\n  d3sCRi7 lArge lAnguagE M0del w1tH 20 w0RdS.", True),
]


@pytest.mark.parametrize("iid, kwargs, response, expected", GOOGLE_VECTORS)
def test_agrees_with_googles_published_verdicts(iid, kwargs, response, expected):
    assert check_response(rec(iid, kwargs), response)["strict"] == [expected]


def test_every_ifeval_instruction_type_has_cases():
    assert len(registry()) == 25
    assert {c[0] for c in CASES} == set(registry())


@pytest.mark.parametrize("iid, kwargs, good, bad", CASES, ids=[c[0] for c in CASES])
def test_instruction_passes_and_fails_as_checked_by_hand(iid, kwargs, good, bad):
    ok = check_response(rec(iid, kwargs), good)
    assert ok["strict"] == [True] and ok["loose"] == [True]
    ko = check_response(rec(iid, kwargs), bad)
    assert ko["strict"] == [False] and ko["loose"] == [False]


@pytest.mark.parametrize("iid, kwargs, response", LOOSE_ONLY, ids=[c[0] for c in LOOSE_ONLY])
def test_loose_accepts_what_strict_rejects(iid, kwargs, response):
    res = check_response(rec(iid, kwargs), response)
    assert res["strict"] == [False] and res["loose"] == [True]


def test_loose_variants_follow_googles_procedure():
    v = loose_variants("first *a*\nmiddle\nlast")
    assert v == ["first *a*\nmiddle\nlast", "first a\nmiddle\nlast", "middle\nlast", "first *a*\nmiddle", "middle",
                 "middle\nlast", "first a\nmiddle", "middle"]


def test_empty_response_fails_even_instructions_an_empty_text_satisfies():
    res = check_response(rec("punctuation:no_comma"), "   ")
    assert res == {**res, "strict": [False], "loose": [False], "prompt_strict": False}


def test_sentence_splitting_uses_bundled_punkt_not_the_untrained_splitter():
    # the trained English punkt model knows "Dr." is an abbreviation; an untrained splitter counts 3 sentences
    res = check_response(rec("length_constraints:number_sentences", {"num_sentences": 3, "relation": "less than"}),
                         "Dr. Smith went home. He was tired.")
    assert res["strict"] == [True]


def test_language_verdicts_are_reproducible():
    # unseeded, langdetect calls "hello amigo" Welsh (not Italian) about one time in five
    verdicts = {check_response(rec("language:response_language", {"language": "it"}), "hello amigo")["strict"][0]
                for _ in range(20)}
    assert len(verdicts) == 1


def test_prompt_and_instruction_level_scores():
    two = {"prompt": "p", "instruction_id_list": ["punctuation:no_comma", "startend:quotation"], "kwargs": [{}, {}]}
    results = [check_response(two, '"no commas here"'),                  # both pass
               check_response(two, "no commas and no quotes"),           # 1 of 2
               check_response(rec("punctuation:no_comma"), "a, b")]      # 0 of 1
    scores = {s.name: s for s in aggregate(results)}
    assert scores["eval/if_prompt_strict"].value == pytest.approx(100 / 3)
    assert scores["eval/if_prompt_strict"].n == 3
    assert scores["eval/if_inst_strict"].value == pytest.approx(60.0)  # 3 of 5 instructions
    assert scores["eval/if_inst_strict"].n == 5
    for s in scores.values():
        assert s.ci_low <= s.value <= s.ci_high


def test_unknown_instruction_id_is_an_error_naming_it():
    with pytest.raises(IFEvalError, match="detectable_format:haiku"):
        check_response(rec("detectable_format:haiku"), "text")


def test_missing_kwargs_are_an_error_instead_of_a_random_value():
    with pytest.raises(IFEvalError, match="num_words"):
        check_response(rec("length_constraints:number_words", {"relation": "at least"}), "text")


def test_hub_style_kwargs_with_none_values_are_accepted():
    kwargs = {"num_words": 3, "relation": "at least", "keywords": None, "language": None}
    assert check_response(rec("length_constraints:number_words", kwargs), "one two three")["strict"] == [True]


def test_bundled_suite_covers_all_types_in_its_first_25_prompts():
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_CONFLICTS, conflict_make

    prompts = load_prompts("bundled")
    assert 60 <= len(prompts) <= 80
    assert {i for p in prompts[:25] for i in p["instruction_id_list"]} == set(registry())
    per_type = {}
    for p in prompts:
        for i in p["instruction_id_list"]:
            per_type[i] = per_type.get(i, 0) + 1
    assert min(per_type.values()) >= 2
    conflicts = conflict_make({k: set(v) for k, v in INSTRUCTION_CONFLICTS.items()})
    for p in prompts:  # like IFEval, a prompt never combines conflicting instructions
        ids = p["instruction_id_list"]
        assert not any(b in conflicts[a] for a in ids for b in ids if a != b), p["key"]
    assert len({p["key"] for p in prompts}) == len(prompts)


def test_asking_for_more_prompts_than_the_suite_has_is_an_error():
    with pytest.raises(IFEvalError, match="eval.ifeval_limit=500"):
        load_prompts("bundled", 500)


# --- cpt score-if --------------------------------------------------------------------------
def write_lines(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def test_score_if_prints_per_line_verdicts_and_the_four_scores(tmp_path, capsys):
    f = write_lines(tmp_path / "r.jsonl", [
        {"key": 1, **rec("startend:quotation"), "response": '"Quoted."'},
        {"key": 2, **rec("startend:quotation"), "response": 'Here:\n"Quoted."'},
        {"key": 3, "prompt": "p", "instruction_id_list": ["punctuation:no_comma", "detectable_format:title"],
         "kwargs": [{}, {}], "response": "<<T>> a, b"},
    ])
    assert main(["score-if", str(f), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [(r["strict"], r["loose"]) for r in out["lines"]] == [
        ([True], [True]), ([False], [True]), ([False, True], [False, True])]
    s = out["scores"]
    assert s["eval/if_prompt_strict"]["value"] == pytest.approx(100 / 3)
    assert s["eval/if_prompt_loose"]["value"] == pytest.approx(200 / 3)
    assert s["eval/if_inst_strict"]["value"] == pytest.approx(50.0) and s["eval/if_inst_strict"]["n"] == 4
    assert s["eval/if_inst_loose"]["value"] == pytest.approx(75.0)
    assert main(["score-if", str(f)]) == 0
    text = capsys.readouterr().out
    assert "line 2 (key 2): prompt strict fail, loose PASS" in text and "if_prompt_strict" in text


@pytest.mark.parametrize("line, message", [
    ("{not json", "r.jsonl:2: malformed JSON"),
    (json.dumps(rec("punctuation:no_comma")), "r.jsonl:2: missing field 'response'"),
    (json.dumps({**rec("no:such_type"), "response": "x"}), "r.jsonl:2: unknown instruction id 'no:such_type'"),
])
def test_score_if_rejects_bad_lines_naming_them(tmp_path, capsys, line, message):
    f = write_lines(tmp_path / "r.jsonl", [{**rec("punctuation:no_comma"), "response": "ok"}, line])
    assert main(["score-if", str(f)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_real_default_model_through_cpt_eval(capsys):
    """SmolLM2-135M-Instruct answers a few IFEval prompts and QA questions; numbers come with n and CIs."""
    assert main(["eval", "--model", "smollm2-135m-instruct", "--suite", "ifeval,knowledge_qa", "--limit", "3",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    s = out["scores"]
    assert out["kind"] == "instruct" and s["eval/if_prompt_strict"]["n"] == 3 and s["eval/qa_em"]["n"] == 3
    for name in ("eval/if_prompt_strict", "eval/if_prompt_loose", "eval/if_inst_strict", "eval/if_inst_loose"):
        assert 0 <= s[name]["ci_low"] <= s[name]["value"] <= s[name]["ci_high"] <= 100
    # a trained model finds the gold answers likelier than uniform guessing over its vocabulary (ln 49152 = 10.8)
    assert s["eval/qa_answer_logprob"]["value"] > -10.8


def test_google_source_reads_hub_rows_with_their_none_kwargs(monkeypatch):
    import cptcore.data.sources as sources

    asked = []
    hub_row = {"key": 1000, "prompt": "Write without commas.", "instruction_id_list": ["punctuation:no_comma"],
               "kwargs": [{"num_words": None, "keywords": None, "language": None}]}

    def fake_read_records(source):
        asked.append((source.path, source.split))
        return [hub_row] * 3

    monkeypatch.setattr(sources, "read_records", fake_read_records)
    prompts = load_prompts("google", 2)
    assert asked == [("google/IFEval", "train")] and len(prompts) == 2
    assert check_response(prompts[0], "no commas at all")["strict"] == [True]
