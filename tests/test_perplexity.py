"""Perplexity is exp of the mean next-token loss over every scored token, whatever the batching."""
import math

import pytest
import torch

from cptcore.config import ModelConfig, RunConfig
from cptcore.evaluate.perplexity import perplexity
from cptcore.evaluate.suite import EvalError, Suite
from cptcore.models import load_model

TEXTS = ["The harbour lantern was lit every night by the old engineer.",
         "Copper roofs shine.",
         "A festival of music and science filled the meadow near the bridge for three long days in summer.",
         "Archive.",
         "The orchard company was founded by people from the mountain city."]


@pytest.fixture(scope="module")
def tiny():
    return load_model(ModelConfig(name="tiny-random-llama"))


def independent_ppl(model, tok, texts, window=None):
    """exp(total loss / total predicted tokens), one document (or window) at a time via the model's own loss."""
    total, count = 0.0, 0
    for text in texts:
        ids = tok(text)["input_ids"] + [tok.eos_token_id]
        pieces = [ids[i:i + window] for i in range(0, len(ids), window)] if window else [ids]
        for piece in pieces:
            if len(piece) < 2:
                continue
            x = torch.tensor([piece])
            with torch.no_grad():
                loss = model(input_ids=x, labels=x).loss.item()
            total += loss * (len(piece) - 1)
            count += len(piece) - 1
    return math.exp(total / count), count


def test_perplexity_equals_exp_of_mean_token_loss(tiny):
    model, tok = tiny
    expected, count = independent_ppl(model, tok, TEXTS)
    scores, items = perplexity("domain_ppl", model, tok, [{"text": t} for t in TEXTS], batch_size=3)
    assert scores[0].name == "eval/domain_ppl"
    assert scores[0].value == pytest.approx(expected, rel=1e-5)
    assert scores[0].n == len(TEXTS) and scores[0].extra["scored_tokens"] == count
    assert scores[0].ci_low <= scores[0].value <= scores[0].ci_high
    assert len(items) == len(TEXTS) and all(r["tokens"] > 0 for r in items)


def test_long_documents_are_scored_in_windows(tiny):
    model, tok = tiny
    expected, _ = independent_ppl(model, tok, TEXTS, window=8)
    scores, _ = perplexity("replay_ppl", model, tok, [{"text": t} for t in TEXTS], window=8, batch_size=4)
    assert scores[0].value == pytest.approx(expected, rel=1e-5)


def test_batch_size_and_padding_do_not_change_perplexity(tiny):
    model, tok = tiny
    one = perplexity("domain_ppl", model, tok, [{"text": t} for t in TEXTS], batch_size=1)[0][0].value
    many = perplexity("domain_ppl", model, tok, [{"text": t} for t in TEXTS], batch_size=5)[0][0].value
    assert one == pytest.approx(many, rel=1e-5)


def test_evaluation_restores_train_mode(tiny):
    model, tok = tiny
    model.train()
    perplexity("domain_ppl", model, tok, [{"text": TEXTS[0]}])
    assert model.training
    model.eval()


def write_jsonl(path, rows):
    import json

    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_suite_reads_the_configured_heldout_file(tmp_path, tiny):
    model, tok = tiny
    f = write_jsonl(tmp_path / "held.jsonl", [{"body": t} for t in TEXTS])
    cfg = RunConfig().with_overrides({"model.name": "tiny-random-llama", "eval.max_docs": 3,
                                      "eval.domain_heldout": {"path": str(f), "text_field": "body"}})
    scores, items = Suite(cfg).run("domain_ppl", model, tok)
    assert scores[0].n == 3
    expected, _ = independent_ppl(model, tok, TEXTS[:3], window=cfg.data.seq_len)
    assert scores[0].value == pytest.approx(expected, rel=1e-5)


def test_eval_set_larger_than_the_data_is_an_error_naming_the_key(tmp_path):
    f = write_jsonl(tmp_path / "held.jsonl", [{"text": t} for t in TEXTS])
    cfg = RunConfig().with_overrides({"eval.max_docs": 50, "eval.replay_heldout": str(f)})
    with pytest.raises(EvalError, match=r"eval.max_docs=50 but .*held.jsonl has only 5 documents"):
        Suite(cfg).docs("replay_ppl")
