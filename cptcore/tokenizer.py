"""A torch-free tokenizer for counting tokens: the model folder's tokenizer.json (Rust `tokenizers`) and its chat
template (jinja2), so the Launch and Data pages and `cpt plan` count tokens without importing transformers
(which imports torch: 6-10 s in a dashboard thread).

It implements the part of the transformers tokenizer API that cptcore.data.formats uses, and yields the same
token ids (tests/test_tokenizer.py compares them on the bundled data); training keeps the transformers
tokenizer that comes with the model.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime
from pathlib import Path

from .config import ModelConfig

_CACHE: dict[str, "TextTokenizer"] = {}
_LOCK = threading.Lock()


class TextTokenizer:
    """tokenizer.json + tokenizer_config.json (+ chat_template.jinja) of a local model folder."""

    def __init__(self, folder: Path):
        from tokenizers import Tokenizer

        self.folder = Path(folder)
        self._tok = Tokenizer.from_file(str(self.folder / "tokenizer.json"))
        conf = json.loads((self.folder / "tokenizer_config.json").read_text(encoding="utf-8"))
        self.special = {k: _token_text(conf.get(k)) for k in ("bos_token", "eos_token", "unk_token", "pad_token")}
        self.eos_token = self.special["eos_token"]
        self.bos_token = self.special["bos_token"]
        self.eos_token_id = self._tok.token_to_id(self.eos_token) if self.eos_token else None
        template = self.folder / "chat_template.jinja"
        self.chat_template = (template.read_text(encoding="utf-8") if template.is_file()
                              else conf.get("chat_template"))
        self._template = None

    def __call__(self, text, add_special_tokens: bool = False, return_offsets_mapping: bool = False) -> dict:
        if isinstance(text, str):
            enc = self._tok.encode(text, add_special_tokens=add_special_tokens)
            out = {"input_ids": enc.ids}
            if return_offsets_mapping:
                out["offset_mapping"] = enc.offsets
            return out
        encs = self._tok.encode_batch(list(text), add_special_tokens=add_special_tokens)
        out = {"input_ids": [e.ids for e in encs]}
        if return_offsets_mapping:
            out["offset_mapping"] = [e.offsets for e in encs]
        return out

    def apply_chat_template(self, messages: list[dict], tokenize: bool = False,
                            add_generation_prompt: bool = False) -> str:
        """Render like transformers does (sandboxed jinja2, trim_blocks, lstrip_blocks, loop controls)."""
        if tokenize:
            raise ValueError("TextTokenizer renders chat templates as text only")
        if self._template is None:
            from jinja2.ext import loopcontrols
            from jinja2.sandbox import ImmutableSandboxedEnvironment

            env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])
            env.filters["tojson"] = lambda x, indent=None, separators=None, sort_keys=False, ensure_ascii=False: \
                json.dumps(x, indent=indent, separators=separators, sort_keys=sort_keys, ensure_ascii=ensure_ascii)
            env.globals["raise_exception"] = _raise
            env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
            self._template = env.from_string(self.chat_template)
        return self._template.render(messages=messages, add_generation_prompt=add_generation_prompt,
                                     tools=None, documents=None,
                                     **{k: v for k, v in self.special.items() if v is not None})


def _token_text(value) -> str | None:
    return value.get("content") if isinstance(value, dict) else value


def _raise(message: str):
    raise ValueError(message)


def tokenizer_folder(model: ModelConfig) -> Path | None:
    """The local folder holding the model's tokenizer.json, or None (a hub id not yet on disk, a GGUF file
    not yet converted, a template with features only transformers renders)."""
    from .models import ASSETS, BUILTIN_GGUF, TINY_MODEL, cache_dir

    if model.name == TINY_MODEL:
        folder = ASSETS / "tiny_tokenizer"
    elif model.name in BUILTIN_GGUF:
        folder = cache_dir() / model.name
    elif Path(model.name).expanduser().exists() or model.name.count("/") != 1:
        folder = Path(model.name).expanduser()
    else:  # a hub id: its tokenizer files, if they are in the local hub cache
        folder = download_tokenizer(model, local_only=True)
        if folder is None:
            return None
    if not (folder / "tokenizer.json").is_file() or not (folder / "tokenizer_config.json").is_file():
        return None
    return folder


TOKENIZER_FILES = ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"]


def download_tokenizer(model: ModelConfig, local_only: bool = False) -> Path | None:
    """A hub model's tokenizer files only (a few MB, no weights, no torch); None when they cannot be had."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model.name, revision=model.revision, allow_patterns=TOKENIZER_FILES,
                                      local_files_only=local_only))
    except Exception:  # noqa: BLE001 - offline, unknown repo, gated: the caller says tokens are not counted
        return None


def load_text_tokenizer(model: ModelConfig) -> TextTokenizer | None:
    """The counting tokenizer of a model (cached per folder), or None when only transformers can load it."""
    folder = tokenizer_folder(model)
    if folder is None:
        return None
    key = str(folder.resolve())
    with _LOCK:
        if key not in _CACHE:
            tok = TextTokenizer(folder)
            if tok.chat_template and "{% generation" in tok.chat_template:
                return None  # transformers' own template extension: count with transformers instead
            _CACHE[key] = tok
        return _CACHE[key]
