"""The model registry: releases and their stages, kept by GTO in git tags.

- A **release** is a GTO version (``intent-classifier@v0.0.3``) registered by the package
  stage; the tag's message is JSON naming the BentoML model (``bento_tag``), the adapter's
  ``tree_sha256``, its ``model_id`` and the gate verdict.
- A **stage** assignment (``intent-classifier#canary#7``) puts a release in ``staging``,
  ``canary`` or ``production``; its message is JSON with the canary weight, the reason,
  and whether the move was forced. Each stage holds at most one release.
- ``registry/audit.jsonl`` repeats every action with who, when and why (and refusals are
  errors, not entries); ``registry/production.json`` points the evaluate stage at the
  production release, so the next ``dvc repro`` gates candidates against it.

Order comes from GTO's per-artifact tag counter, not from tag timestamps (one-second
resolution: two actions in the same second would otherwise tie). Every action runs under
an exclusive file lock, so two promotions at once cannot interleave: the second waits up
to ``release.lock_timeout_s`` and then fails with a clear message.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tunegate.core.artifacts import write_json
from tunegate.core.errors import RegistryError
from tunegate.core.layout import layout
from tunegate.core.release_params import UNDECIDED
from tunegate.serving import registry_remote as remote
from tunegate.serving.releases import (
    STAGES,
    Assignment,
    Release,
    actor,
    counter,
    git,
    json_message,
    quiet_gto,
)


class Registry:
    @classmethod
    def from_params(cls, repo: str | Path, params: Any) -> Registry:
        r = params.release
        return cls(repo, r.name, r.lock_timeout_s, r.canary_weight, r.pipeline, r.remote, r.admit_undecided)

    def __init__(
        self,
        repo: str | Path,
        name: str,
        lock_timeout_s: float = 10.0,
        canary_weight: int = 10,
        pipeline: str = "dvc.yaml",
        remote: str | None = None,
        admit_undecided: bool = False,
    ):
        self.repo = Path(repo).resolve()
        self.admit_undecided = admit_undecided  # release.admit_undecided: see _check_evidence
        self.remote = remote  # a git remote the registry follows (tunegate/serving/registry_remote.py)
        self._pending: list[Any] | None = None  # file writes held until the remote took the tags
        self.name = name
        self.lock_timeout_s = lock_timeout_s
        self.canary_weight = canary_weight
        if not (self.repo / ".git").exists():
            raise RegistryError(f"{self.repo} is not a git repository; GTO keeps the registry in git tags")
        self.dir = layout(self.repo, pipeline).production_pointer.parent

    # -- reading -----------------------------------------------------------------------

    def _history(self) -> list[dict[str, Any]]:
        import gto.api

        with quiet_gto():
            return gto.api.history(str(self.repo), self.name)

    def releases(self) -> dict[str, Release]:
        out = {}
        for event in self._history():
            if event["event"] == "registration":
                release = Release.from_message(
                    event["version"], event["commit"], event["timestamp"], event["message"]
                )
                if release is not None:
                    out[release.version] = release
        return out

    def release(self, version: str) -> Release:
        releases = self.releases()
        if version not in releases:
            known = ", ".join(sorted(releases)) or "none yet (run `dvc repro`: the package stage registers)"
            raise RegistryError(f"{self.name} has no release {version!r}; registered: {known}")
        return releases[version]

    def events(self) -> list[dict[str, Any]]:
        """Stage assignments and unassignments, oldest first."""
        moves = [e for e in self._history() if e["event"] in ("assignment", "unassignment")]
        return sorted(moves, key=lambda e: counter(e["ref"]))

    def stages(self) -> dict[str, Assignment | None]:
        """The release each stage holds now."""
        state: dict[str, Assignment | None] = dict.fromkeys(STAGES)
        for e in self.events():
            if e["stage"] not in state:
                continue
            if e["event"] == "unassignment":
                held = state[e["stage"]]
                if held is not None and held.version == e["version"]:
                    state[e["stage"]] = None
                continue
            info = json_message(e["message"])
            state[e["stage"]] = Assignment(
                e["stage"],
                e["version"],
                int(info.get("weight", 0)),
                str(e["timestamp"]),
                e["author"],
                info.get("reason", ""),
                bool(info.get("forced", False)),
            )
        return state

    def weights(self) -> dict[str, int]:
        """Traffic share per live stage, in percent (production gets what canary does not).

        A first release's canary, with no production beside it, answers all traffic:
        there is nothing else to route to, and the canary judge (tunegate/serving/rollout.py)
        promotes it on its own health."""
        stages = self.stages()
        if stages["canary"] and not stages["production"]:
            return {"canary": 100}
        canary = stages["canary"].weight if stages["canary"] else 0
        out = {}
        if stages["production"]:
            out["production"] = 100 - canary
        if canary:
            out["canary"] = canary
        return out

    def status(self) -> list[dict[str, Any]]:
        stages, releases, weights = self.stages(), self.releases(), self.weights()
        rows = []
        for stage in STAGES:
            a = stages[stage]
            r = releases.get(a.version) if a else None
            rows.append(
                {
                    "stage": stage,
                    "version": a.version if a else None,
                    "traffic": weights.get(stage, 0),
                    "verdict": r.verdict if r else None,
                    "model_id": r.model_id if r else None,
                    "since": a.at if a else None,
                    "by": a.by if a else None,
                    "reason": a.reason if a else None,
                }
            )
        return rows

    # -- acting --------------------------------------------------------------------------

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Exclusive registry lock (filelock); waits up to lock_timeout_s, then fails naming
        the holder, which each holder writes beside the lock file."""
        from filelock import FileLock, Timeout

        self.dir.mkdir(parents=True, exist_ok=True)
        path, holder = self.dir / ".lock", self.dir / ".lock.holder"
        lock = FileLock(path, timeout=self.lock_timeout_s)
        try:
            lock.acquire(poll_interval=0.05)
        except Timeout:
            said = holder.read_text(encoding="utf-8").strip() if holder.exists() else ""
            raise RegistryError(
                f"the registry is busy: {said or 'another process'} holds {path} "
                f"(waited {self.lock_timeout_s:g}s); retry when it finishes"
            ) from None
        try:
            since = datetime.now(UTC).isoformat(timespec="seconds")
            holder.write_text(f"pid {os.getpid()} ({actor()[0]}) since {since}", encoding="utf-8")
            yield
        finally:
            holder.write_text("", encoding="utf-8")
            lock.release()

    def sync(self) -> None:
        """With a remote: take its registry (tags) and point production.json at its production."""
        if self.remote is not None:
            with self.lock():
                remote.sync(self)

    def _transaction(self) -> contextlib.AbstractContextManager[None]:
        """An action under the lock: fetched first, its new tags pushed all together after,
        its files written only then; on any failure its new tags are deleted again."""
        return remote.transaction(self)

    def register(self, info: dict[str, Any], ref: str = "HEAD") -> str:
        """Register a packaged model at `ref`; returns its version. Idempotent per adapter."""
        import gto.api

        with self._transaction():
            for release in self.releases().values():
                if release.tree_sha256 == info["tree_sha256"]:
                    return release.version
            commit = git(self.repo, "rev-parse", ref)
            taken = [r for r in self.releases().values() if r.commit == commit]
            if taken:
                raise RegistryError(
                    f"commit {commit[:12]} already holds {self.name} {taken[0].version} (another adapter); "
                    "GTO keeps one version per commit: commit your changes (dvc.lock, params.yaml), then "
                    "run `tunegate register`"
                )
            name, email = actor()
            message = json.dumps({k: info[k] for k in ("bento_tag", "tree_sha256", "model_id", "verdict")})
            with quiet_gto():
                tag = gto.api.register(
                    str(self.repo), self.name, ref, message=message, author=name, author_email=email
                )
            version = tag.version if hasattr(tag, "version") else self._version_at(commit)
            self._audit("register", version, None, info.get("reason", ""), False, extra={"commit": commit})
            return version

    def _version_at(self, commit: str) -> str:
        return next(r.version for r in self.releases().values() if r.commit == commit)

    def promote(
        self,
        version: str,
        stage: str,
        weight: int | None = None,
        force: bool = False,
        reason: str = "",
        online: bool = False,
    ) -> Assignment:
        """Move `version` into `stage` (staging -> canary -> production), or change the canary weight.
        `online`: the promotion rests on the canary judge's evidence from live traffic (the only
        way a release the gate found not enough evidence for reaches production)."""
        if stage not in STAGES:
            raise RegistryError(f"unknown stage {stage!r}; stages are {', '.join(STAGES)}")
        if force and not reason.strip():
            raise RegistryError("--force needs --reason: a forced promotion is recorded with why")
        if weight is not None and stage != "canary":
            raise RegistryError("--weight applies to the canary stage only")
        if weight is not None and not 0 < weight < 100:
            raise RegistryError(f"--weight {weight} is outside (0, 100) percent")
        with self._transaction():
            release = self.release(version)
            stages = self.stages()
            self._check_evidence(release, stage, online)
            if not force:
                self._check_order(release, stage, stages)
            info: dict[str, Any] = {"reason": reason, "forced": force}
            if stage == "canary":
                held = stages["canary"]
                same = held is not None and held.version == version
                info["weight"] = weight if weight is not None else held.weight if same else self.canary_weight
            self._assign(stage, version, info)
            if stage == "production":
                canary = stages["canary"]
                if canary is not None and canary.version == version:
                    self._unassign("canary", version, f"promoted to production: {reason}".strip(": "))
                self.write_production_pointer(release)
            extra = {"weight": info.get("weight"), "verdict": release.verdict}
            extra["evidence"] = "online (canary judge)" if online else "offline (release gate)"
            self._audit("promote", version, stage, reason, force, extra=extra)
            assignment = self.stages()[stage]
            assert assignment is not None
            return assignment

    def _check_evidence(self, release: Release, stage: str, online: bool) -> None:
        """A release the gate found not enough evidence for: staging and canary only where
        release.admit_undecided declares it, production only on the canary judge's online
        evidence. No --force reaches production without evidence: offline evidence that could
        not tell is not made into a decision by an operator's flag."""
        if release.verdict != UNDECIDED:
            return
        if not self.admit_undecided:
            raise RegistryError(
                f"{release.version}: the gate had not enough evidence for it, and release.admit_undecided is "
                "false: evaluate on more items (eval/report.md says how many) or declare admit_undecided"
            )
        if stage == "production" and not online:
            raise RegistryError(
                f"{release.version}: the gate had not enough evidence for it; it reaches production only on "
                "the canary judge's online evidence (`tunegate rollout step`), not by promote or --force"
            )

    def _check_order(self, release: Release, stage: str, stages: dict[str, Assignment | None]) -> None:
        if release.verdict not in ("approved", UNDECIDED):
            raise RegistryError(
                f"{release.version} was {release.verdict} by the gate; only approved releases (and, with "
                "release.admit_undecided, ones it had not enough evidence for) are promoted "
                "(override with --force --reason TEXT, which is recorded)"
            )
        held_now = stages[stage]
        if stage != "canary" and held_now is not None and held_now.version == release.version:
            raise RegistryError(f"{release.version} is already in {stage}")
        before = STAGES[STAGES.index(stage) - 1] if stage != "staging" else None
        held = stages[before] if before else None
        if stage == "canary" and stages["canary"] is not None and stages["canary"].version == release.version:
            return  # a weight change
        if before is not None and (held is None or held.version != release.version):
            where = [s for s, a in stages.items() if a is not None and a.version == release.version]
            raise RegistryError(
                f"{release.version} is not in {before} (it is in {', '.join(where) or 'no stage'}); "
                f"promote it --to {before} first, or use --force --reason TEXT"
            )

    def rollback(
        self, to: str | None = None, stage: str = "production", reason: str = ""
    ) -> Assignment | None:
        """Production: back to the previous production release (or `to`). Canary: withdraw it."""
        with self._transaction():
            stages = self.stages()
            current = stages.get(stage)
            if stage == "canary":
                if current is None:
                    raise RegistryError("there is no canary to roll back")
                self._unassign("canary", current.version, reason or "rolled back")
                self._audit("rollback", current.version, "canary", reason, False)
                return None
            if stage != "production":
                raise RegistryError(f"rollback applies to production or canary, not {stage!r}")
            to = self._rollback_target(to, stages)
            release = self.release(to)
            self._assign(
                "production", to, {"reason": reason or f"rollback from {current.version}", "forced": False}
            )
            if stages["canary"] is not None:
                self._unassign("canary", stages["canary"].version, f"rollback of production to {to}")
            self.write_production_pointer(release)
            self._audit("rollback", to, "production", reason, False, extra={"from": current.version})
            assignment = self.stages()["production"]
            assert assignment is not None
            return assignment

    def rollback_target(self, to: str | None = None) -> str:
        """The release a production rollback would restore (the previous one, or `to`)."""
        return self._rollback_target(to, self.stages())

    def _rollback_target(self, to: str | None, stages: dict[str, Assignment | None]) -> str:
        current = stages["production"]
        if current is None:
            raise RegistryError("there is no production release to roll back")
        previous = [
            e["version"]
            for e in self.events()
            if e["event"] == "assignment" and e["stage"] == "production" and e["version"] != current.version
        ]
        if to is None:
            if not previous:
                raise RegistryError(
                    f"{current.version} is the first production release: nothing to roll back to"
                )
            return previous[-1]
        if to not in previous:
            raise RegistryError(
                f"{to} was never in production; rollback goes to an earlier production release "
                f"({', '.join(dict.fromkeys(reversed(previous))) or 'none'})"
            )
        return to

    def write_production_pointer(self, release: Release) -> None:
        if self._pending is not None:  # inside an action: once its tags are published
            self._pending.append(lambda: self.write_production_pointer(release))
            return
        write_json(
            self.dir / "production.json",
            {
                "version": release.version,
                "bento_tag": release.bento_tag,
                "tree_sha256": release.tree_sha256,
                "model_id": release.model_id,
                "note": "Written by `tunegate promote/rollback`; `dvc repro` gates candidates against it.",
            },
        )

    # -- internals -----------------------------------------------------------------------

    def _assign(self, stage: str, version: str, info: dict[str, Any]) -> None:
        import gto.api

        name, email = actor()
        with quiet_gto():
            gto.api.assign(
                str(self.repo),
                self.name,
                stage,
                version=version,
                message=json.dumps(info),
                force=True,  # re-assigning (weight changes, rollbacks) needs a new tag
                author=name,
                author_email=email,
            )

    def _unassign(self, stage: str, version: str, reason: str) -> None:
        import gto.api

        name, email = actor()
        with quiet_gto():
            gto.api.unassign(
                str(self.repo),
                self.name,
                stage=stage,
                version=version,
                message=json.dumps({"reason": reason}),
                force=True,
                author=name,
                author_email=email,
            )

    def _audit(
        self,
        action: str,
        version: str,
        stage: str | None,
        reason: str,
        forced: bool,
        extra: dict | None = None,
    ) -> None:
        if self._pending is not None:  # inside an action: once its tags are published
            self._pending.append(lambda: self._audit(action, version, stage, reason, forced, extra))
            return
        entry = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "actor": actor()[0],
            "action": action,
            "artifact": self.name,
            "version": version,
            "stage": stage,
            "reason": reason,
            "forced": forced,
            **(extra or {}),
        }
        with open(self.dir / "audit.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())

    def audit(self) -> list[dict[str, Any]]:
        path = self.dir / "audit.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
