"""The package stage: an approved candidate becomes a release.

It copies the adapter, its card, its gate record, its monitoring reference and its
calibration (the confidence map and abstention threshold the gate judged) into the BentoML model store
(``bentoml models list`` shows it) and registers the release with GTO at the current
commit (``gto show``). A rejected candidate is not packaged: the stage says why and exits
0, so the pipeline's metrics are kept either way.

Usage: ``python -m tunegate.serving.package --params params.yaml --candidate models/candidate
--gate eval/gate.json --reference eval/results/monitor_reference.json
--calibration eval/results/calibration.json --out registry/candidate.json``
"""

from __future__ import annotations

import argparse
import logging
import shutil
from pathlib import Path
from typing import Any

from tunegate.core import calibration, model_card, monitor_reference
from tunegate.core.artifacts import (
    read_json,
    refuse_pickle,
    sha256_file,
    tree_hash,
    verified_card,
    write_json,
)
from tunegate.core.calibration import Calibration
from tunegate.core.errors import ArtifactError, RegistryError
from tunegate.core.params import load_params
from tunegate.core.release_params import UNDECIDED
from tunegate.core.stage import configure_logging

log = logging.getLogger(__name__)
REPORT = "report.md"
"""The release report's name in a store entry (eval/report.md when packaged)."""


def bento_tag(name: str, card: dict[str, Any]) -> str:
    """One BentoML model per adapter: the version is the adapter's content hash."""
    return f"{name}:{card['tree_sha256'][:20]}"


def write_model_card(folder: Path, card: dict[str, Any], gate: dict[str, Any], tag: str) -> None:
    """The Hugging Face card with the gate's results (tunegate/core/model_card.py), also into an
    entry packaged before cards existed; not when the adapter's own README.md is one of its
    hashed files (made by another tool)."""
    if "README.md" in card["files"]:
        log.warning("%s: README.md is one of the adapter's hashed files; no model card written", tag)
        return
    (folder / "README.md").write_text(model_card.render(card, gate), encoding="utf-8")


def save_to_store(
    candidate: Path,
    gate_file: Path,
    tag: str,
    card: dict[str, Any],
    gate: dict[str, Any],
    extras: dict[str, Path] | None = None,
    report: Path | None = None,
) -> Path:
    """Copy the candidate into the BentoML model store (once per adapter); returns its folder.

    `extras` (store file name -> file: the monitoring reference, the calibration) are copied
    beside it, each with its sha256 in the model's metadata (``<stem>_sha256``). An existing
    entry for the same adapter with other extras is an error: its calibration decides
    what the service answers, so it is not silently kept or replaced. The release report
    (`report`, eval/report.md) is copied beside it as ``report.md`` for the dashboard, like
    the model card outside the hashed files (a document, not what is served)."""
    import bentoml

    hashes = {f"{Path(name).stem}_sha256": sha256_file(path) for name, path in (extras or {}).items()}
    try:
        existing = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        existing = None
    if existing is not None:
        meta = existing.info.metadata
        if meta.get("tree_sha256") != card["tree_sha256"]:
            raise ArtifactError(
                f"BentoML model {tag} exists with other contents; delete it: bentoml models delete {tag}"
            )
        differs = sorted(k for k, v in hashes.items() if meta.get(k) != v)
        if differs:
            raise ArtifactError(
                f"BentoML model {tag} holds this adapter with another {', '.join(differs)} (evaluated again "
                f"with other settings?); delete it to package the new one: bentoml models delete {tag}"
            )
        verified_card(existing.path)
        write_model_card(Path(existing.path), card, read_json(Path(existing.path) / "gate.json"), tag)
        copy_report(report, Path(existing.path))
        return Path(existing.path)
    metadata = {
        "tree_sha256": card["tree_sha256"],
        "model_id": card["model_id"],
        "base_model_id": card["base_model"]["model_id"],
        "base_tree_sha256": card["base_model"]["tree_sha256"],
        "verdict": gate["verdict"],
        "gate_baseline": gate["baseline"]["kind"],
    } | hashes
    with bentoml.models.create(
        tag, labels={"stage": "packaged", "verdict": gate["verdict"]}, metadata=metadata, module="tunegate"
    ) as model:
        dest = Path(model.path)
        for rel in [*card["files"], "card.json"]:
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(candidate / rel, dest / rel)
        shutil.copy2(gate_file, dest / "gate.json")
        write_model_card(dest, card, gate, tag)
        copy_report(report, dest)
        for name, path in (extras or {}).items():
            shutil.copy2(path, dest / name)
    verified_card(dest)
    return dest


def copy_report(report: Path | None, dest: Path) -> None:
    if report is not None and report.exists():
        shutil.copy2(report, dest / REPORT)
    elif report is not None:
        log.warning("no release report at %s: the dashboard will show no regressions", report)


def resolve(tag: str, tree_sha256: str) -> Path:
    """The store folder of a release, verified against the registry's record: the files the
    card lists are hashed now and must make the registered `tree_sha256`, and the card must
    name that hash too. An adapter edited in the store, with or without its card, is refused
    here, before any engine sees it."""
    import bentoml

    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise ArtifactError(
            f"BentoML model {tag} is not in this machine's model store ({bentoml_home()}); "
            "rebuild it with `dvc repro -f package` on the commit that registered it"
        ) from None
    folder = Path(model.path)
    check_against_registry(folder, tree_sha256, tag)
    return folder


def check_against_registry(folder: Path, tree_sha256: str, what: str) -> dict[str, Any]:
    """Hash the files `folder`'s card lists, once; they must match the card and make the
    registered tree sha256, which the card must name too. Returns the card."""
    if not (folder / "card.json").exists():
        raise ArtifactError(f"{folder} has no card.json; it is not a tunegate model folder")
    card = read_json(folder / "card.json")
    missing = sorted(n for n in card["files"] if not (folder / n).is_file())
    if missing:
        raise ArtifactError(f"{folder}: artifact failed verification: missing {', '.join(missing)}")
    actual = {n: sha256_file(folder / n) for n in card["files"]}
    differs = [f"{n}: sha256 differs from the card" for n in actual if actual[n] != card["files"][n]]
    if differs:
        raise ArtifactError(f"{folder}: artifact failed verification: " + "; ".join(differs))
    if card["tree_sha256"] != tree_sha256:
        raise ArtifactError(
            f"{what}: its card names tree sha256 {card['tree_sha256'][:12]}, "
            f"not the registered {tree_sha256[:12]}"
        )
    if tree_hash(actual) != tree_sha256:
        raise ArtifactError(
            f"{folder}: its files hash to {tree_hash(actual)[:12]}, not the recorded {tree_sha256[:12]}: "
            "the artifact was changed after it was recorded"
        )
    return card


def release_reference(tag: str, tree_sha256: str) -> tuple[Path, str]:
    """A release's monitoring reference in the store and the sha256 recorded when it was
    packaged (the release itself verified against the registry). The caller reads it with
    that hash (``monitor_reference.read(path, sha256=...)``), which checks the very bytes
    it parses."""
    import bentoml

    folder = resolve(tag, tree_sha256)
    path = folder / monitor_reference.FILE
    recorded = bentoml.models.get(tag).info.metadata.get("monitor_reference_sha256")
    if recorded is None or not path.exists():
        raise ArtifactError(
            f"{tag} was packaged without a monitoring reference (its evaluate stage said why in "
            "results/evidence.json: eval.reference_rows 0, vLLM missing, or a hold-out under 50 "
            "records); pass one with --reference"
        )
    return path, recorded


def release_calibration(tag: str, tree_sha256: str) -> Calibration:
    """A release's calibration from the store, checked against the sha256 recorded when it was
    packaged. A release packaged before calibration existed has none: it is served with its
    raw confidence and never abstains (``Calibration()``), and the caller is told so."""
    import bentoml

    folder = resolve(tag, tree_sha256)
    recorded = bentoml.models.get(tag).info.metadata.get("calibration_sha256")
    if recorded is None:
        return Calibration(chosen_by="none: packaged without a calibration")
    return calibration.read(folder / calibration.FILE, sha256=recorded)


def verified_copy(tag: str, tree_sha256: str, dest: Path) -> Path:
    """Copy a release's files (those its card lists) into `dest` and verify the copy against
    the registered hash: what is loaded from `dest` is what was verified, whatever happens
    to the store afterwards. Reuses `dest` when it already holds that exact tree."""
    folder = resolve(tag, tree_sha256)
    card = read_json(folder / "card.json")
    if dest.exists():
        try:
            check_against_registry(dest, tree_sha256, tag)
            refuse_pickle(dest)
            return dest
        except ArtifactError:
            shutil.rmtree(dest)
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    for rel in [*card["files"], "card.json"]:
        (partial / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(folder / rel, partial / rel)
    check_against_registry(partial, tree_sha256, tag)
    refuse_pickle(partial)
    partial.rename(dest)
    return dest


def verify_registration(record: dict[str, Any]) -> dict[str, Any]:
    """What `tunegate register` may register: taken from the model store, not from the record.

    The BentoML model named by the record must exist, its files must hash to the record's
    tree_sha256, and its stored gate record must have approved that very adapter. Returns the
    registration info built from the verified store entry."""
    for key in ("bento_tag", "tree_sha256"):
        if not isinstance(record.get(key), str):
            raise ArtifactError(f"the candidate record has no {key}; run `dvc repro` to package again")
    folder = resolve(record["bento_tag"], record["tree_sha256"])
    card = read_json(folder / "card.json")
    gate_file = folder / "gate.json"
    gate = read_json(gate_file) if gate_file.exists() else {}
    judged = gate.get("candidate", {}).get("tree_sha256")
    if judged != record["tree_sha256"]:
        raise ArtifactError(f"{record['bento_tag']}: its gate record judged another adapter ({judged})")
    if gate.get("verdict") not in ("approved", UNDECIDED):
        raise ArtifactError(
            f"{record['bento_tag']}: the gate did not approve it ({gate.get('verdict')}); only approved "
            "candidates (and, with release.admit_undecided, ones with not enough evidence) are registered"
        )
    return {
        "bento_tag": record["bento_tag"],
        "tree_sha256": card["tree_sha256"],
        "model_id": card["model_id"],
        "verdict": gate["verdict"],
    }


def not_packaged(gate: dict[str, Any]) -> str:
    """Why the package stage stopped, in the gate's words."""
    if gate["verdict"] == UNDECIDED:
        open_ = [c["name"] for c in gate["checks"] if c.get("outcome") == "undecided"]
        return (
            f"not enough evidence ({', '.join(open_)}); see eval/report.md for the items that would settle "
            "each, or declare release.admit_undecided to release it to canary only"
        )
    failed = [
        c["name"] for c in gate["checks"] if c.get("outcome", "failed" if not c["passed"] else "") == "failed"
    ]
    return f"rejected by the gate ({', '.join(failed)}); see eval/report.md"


def bentoml_home() -> str:
    from bentoml._internal.configuration.containers import BentoMLContainer

    return str(BentoMLContainer.bentoml_home.get())


def package(
    params_path: Path,
    candidate: Path,
    gate_file: Path,
    out: Path,
    repo: Path,
    reference: Path | None = None,
    calibration_file: Path | None = None,
    report: Path | None = None,
) -> dict[str, Any]:
    params = load_params(params_path)
    gate = read_json(gate_file)
    card = verified_card(candidate)
    if gate["candidate"]["tree_sha256"] != card["tree_sha256"]:
        raise ArtifactError(f"{gate_file} judged another candidate than {candidate}; run `dvc repro`")
    if reference is not None and monitor_reference.missing(reference):
        log.warning("packaged without a monitoring reference: %s", monitor_reference.missing(reference))
        reference = None
    if reference is not None and monitor_reference.read(reference).model_id != card["model_id"]:
        raise ArtifactError(f"{reference} was recorded for another model than {card['model_id']}")
    if calibration_file is not None:
        calibration.read(calibration_file)  # a malformed one is refused before anything is stored
        if sha256_file(calibration_file) != gate.get("calibration_sha256"):
            raise ArtifactError(
                f"{calibration_file} is not the calibration {gate_file} judged (sha256 differs); "
                "run `dvc repro`"
            )
    record: dict[str, Any] = {
        "verdict": gate["verdict"],
        "model_id": card["model_id"],
        "tree_sha256": card["tree_sha256"],
    }
    admitted = gate["verdict"] == UNDECIDED and params.release.admit_undecided
    if gate["verdict"] != "approved" and not admitted:
        record |= {"packaged": False, "reason": not_packaged(gate)}
        write_json(out, record)
        log.warning("not packaged: %s", record["reason"])
        return record
    tag = bento_tag(params.release.name, card)
    extras = {monitor_reference.FILE: reference, calibration.FILE: calibration_file}
    extras = {k: v for k, v in extras.items() if v is not None}
    save_to_store(candidate, gate_file, tag, card, gate, extras, report)
    record |= {"packaged": True, "bento_tag": tag, "version": None}
    try:
        from tunegate.serving.registry import Registry

        record["version"] = Registry.from_params(repo, params).register(record)
        log.info("packaged %s as %s %s", tag, params.release.name, record["version"])
    except RegistryError as err:  # packaged, but not registered: say how to finish
        record["registration"] = str(err)
        log.warning("packaged %s, not registered: %s", tag, err)
    write_json(out, record)
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--params", type=Path, required=True)
    parser.add_argument("--candidate", type=Path, required=True)
    parser.add_argument("--gate", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--repo", type=Path, default=Path("."), help="the git repository GTO registers in")
    parser.add_argument("--reference", type=Path, default=None, help="the monitoring reference to package")
    parser.add_argument("--calibration", type=Path, default=None, help="the calibration the gate judged")
    parser.add_argument("--report", type=Path, default=None, help="the release report (for the dashboard)")
    args = parser.parse_args(argv)
    configure_logging()
    files = (args.candidate, args.gate, args.out, args.repo, args.reference, args.calibration, args.report)
    package(args.params, *files)


if __name__ == "__main__":
    from tunegate.core.stage import run_stage

    run_stage(main)
