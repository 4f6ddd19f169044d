"""Train the small byte-level BPE tokenizer used by the `tiny-random-llama` test model.

Run: python experiments/data/make_tiny_tokenizer.py
Trained on the bundled text assets (English prose), so the tiny model sees realistic token statistics.
"""
from pathlib import Path
import json

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

ASSETS = Path(__file__).resolve().parents[2] / "cptcore" / "assets"
CHATML = ("{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + "
          "'<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")


def texts():
    for path in sorted(ASSETS.rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            for key in ("text", "question", "answer", "prompt"):
                if isinstance(rec.get(key), str):
                    yield rec[key]
            for m in rec.get("messages", []):
                yield m["content"]
    if not any(ASSETS.rglob("*.jsonl")):  # bootstrap before the corpus exists: Python's own docstrings
        import pydoc, inspect, collections, json as j, pathlib, re as r
        for mod in (collections, j, pathlib, r, inspect, pydoc):
            for _, obj in inspect.getmembers(mod):
                if isinstance(getattr(obj, "__doc__", None), str):
                    yield obj.__doc__


def main():
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=2048, special_tokens=special,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts(), trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None)
    fast.chat_template = CHATML
    out = ASSETS / "tiny_tokenizer"
    fast.save_pretrained(out)
    print(f"saved {len(fast)} tokens to {out}")


if __name__ == "__main__":
    main()
