"""Who the evaluate stage evaluates: the candidate, the base model, the model in production.

Each is a ``ModelRef`` verified against its card (file hashes) before anything reads it;
a production release from the BentoML model store is also checked against the tree hash
the registry recorded (``tunegate/serving/package.py``). Fine-tuned models must share the base
model: otherwise their answers are not comparable.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import read_json, verified_card
from tunegate.core.errors import ArtifactError, DataError
from tunegate.core.params import Params
from tunegate.core.prompt import PromptTemplate
from tunegate.evaluation.evidence import ModelIdentity
from tunegate.evaluation.predictors import ModelRef


def adapter_ref(folder: Path, role: str, base: ModelRef, mismatch: str) -> ModelRef:
    """A fine-tuned model on `base`; `mismatch` explains the error when its base differs."""
    card = verified_card(folder)
    if card["base_model"]["tree_sha256"] != base.tree_sha256:
        raise ArtifactError(mismatch.format(model=card["model_id"], its_base=card["base_model"]["model_id"]))
    return ModelRef(role, base.base_dir, folder, card["model_id"], card["tree_sha256"])


def base_ref(folder: Path) -> ModelRef:
    card = verified_card(folder)
    return ModelRef("base", folder, None, card["model_id"], card["tree_sha256"])


def candidate_ref(folder: Path, base: ModelRef) -> ModelRef:
    mismatch = f"{folder} was trained on base model {{its_base}}, but models/base is {base.model_id}"
    mismatch += "; run `dvc repro`"
    return adapter_ref(folder, "candidate", base, mismatch)


def production_ref(pointer: Path | None, base: ModelRef) -> tuple[ModelRef | None, dict[str, Any]]:
    """The production model named by the registry pointer, or None for a first release."""
    if pointer is None or not pointer.exists():
        return None, {}
    info = read_json(pointer)
    if not info.get("version"):
        return None, info
    mismatch = (
        f"production {info['version']} ({{model}}) is built on base model {{its_base}}, the candidate on "
        f"{base.model_id}: their answers are not comparable; retrain on the same base or release with "
        "`--force --reason`"
    )
    if info.get("bento_tag"):  # a release in the BentoML model store, verified against the registry
        from tunegate.serving.package import resolve

        folder = resolve(info["bento_tag"], info["tree_sha256"])
    else:  # a model folder; a relative one is relative to the project root (where dvc runs stages)
        folder = Path(info["model_dir"])
    return adapter_ref(folder, "production", base, mismatch), info


@dataclass(frozen=True)
class Models:
    """Who is evaluated: the candidate, against production (or the base model on a first release)."""

    base: ModelRef
    candidate: ModelRef
    production: ModelRef | None
    pointer: dict[str, Any]
    template: PromptTemplate
    baseline_template: PromptTemplate

    @property
    def baseline(self) -> ModelRef:
        return self.production or self.base


def resolve_models(args: argparse.Namespace, params: Params) -> Models:
    """The models, hash-verified, and their templates; the label sets must agree."""
    base = base_ref(args.base)
    production, pointer = production_ref(args.production, base)
    template = PromptTemplate.load(args.candidate)
    prepared = read_json(args.data / "labels.json")
    if list(template.labels) != list(prepared):
        raise DataError(
            f"{args.candidate} was trained on labels {list(template.labels)}, "
            f"data/prepared has {prepared}; run `dvc repro`"
        )
    oos_label = params.data.oos_label
    if oos_label is not None and oos_label in template.labels:
        raise DataError(
            f"data.oos_label {oos_label!r} is one of the candidate's trained labels: it was trained "
            "before the label was declared out of scope; run `dvc repro` to prepare and train again"
        )
    base_template = PromptTemplate.load(production.adapter_dir) if production else template
    return Models(base, candidate_ref(args.candidate, base), production, pointer, template, base_template)


def identities(m: Models, base_dir: Path) -> tuple[ModelIdentity, ModelIdentity, ModelIdentity]:
    """(candidate, baseline, base) as evidence.json records them."""
    license_ = read_json(base_dir / "card.json").get("license", "unknown")
    return (
        ModelIdentity(**m.candidate.identity()),
        ModelIdentity(**m.baseline.identity(), kind="production" if m.production else "base"),
        ModelIdentity(**m.base.identity(), license=license_),
    )
