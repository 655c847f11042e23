"""The registry's git remote (``release.remote``): what several machines share.

GTO keeps releases and stages in git tags, and tags do not travel with commits, so a
registry on one machine's clone is that machine's alone. With ``release.remote`` (a remote
name such as ``origin``, or a URL) every action is fetch, apply, push:

- **fetch** the artifact's tags (``<name>@*`` versions, ``<name>#*`` stage moves) with
  ``--prune``, so the clone holds exactly what the remote holds;
- **apply** the action locally (new GTO tags; files are written only after the push);
- **push** the new tags with ``git push --atomic``: all or none, together with a sequence
  tag (``tunegate-seq/<name>/<n>``, n = the registry's action count + 1). Two machines
  acting on the same state create the same sequence tag and the remote takes only the
  first push; the second is refused whole, its tags are deleted locally, the clone
  fetches again, and the action fails naming what the remote holds now. Nothing is
  half-applied, here or there (a compare-and-swap on the registry's state, whatever the
  two actions touched).

Replicas fetch on every ``serve.watch_seconds`` tick (``Registry.sync``), so a promotion
made anywhere reaches every replica within that period.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tunegate.core.errors import RegistryError
from tunegate.serving.releases import actor, git


def patterns(name: str) -> list[str]:
    """The artifact's tags: versions, stage moves, and the action sequence."""
    return [f"{name}@*", f"{name}#*", f"tunegate-seq/{name}/*"]


def refspecs(name: str) -> list[str]:
    return [f"+refs/tags/{p}:refs/tags/{p}" for p in patterns(name)]


def fetch(repo: Path, remote: str, name: str) -> None:
    """Make the clone's tags of this artifact the remote's (new ones in, vanished ones out)."""
    git(repo, "fetch", "--quiet", "--prune", "--no-tags", remote, *refspecs(name))


def artifact_tags(repo: Path, name: str) -> set[str]:
    return set(git(repo, "tag", "--list", *patterns(name)).split())


def sequence_tag(repo: Path, name: str, tags: set[str]) -> str:
    """Tag this action as the registry's next one (pointing at one of its new tags)."""
    done = [t for t in artifact_tags(repo, name) if t.startswith(f"tunegate-seq/{name}/")]
    tag = f"tunegate-seq/{name}/{len(done) + 1}"
    # Annotated, naming this action's tags and a random id: two machines' sequence tags of
    # the same number are different objects, so the remote cannot take both.
    message = json.dumps({"tags": sorted(tags), "id": uuid.uuid4().hex})
    name, email = actor()  # the tagger, as GTO's tags name it (no git identity needed)
    who = ("-c", f"user.name={name}", "-c", f"user.email={email}")
    git(repo, *who, "tag", "-a", "-m", message, tag, f"refs/tags/{sorted(tags)[0]}^{{}}")
    return tag


def push(repo: Path, remote: str, tags: set[str]) -> str | None:
    """Push the tags all together; None when the remote took them, else git's refusal."""
    refs = [f"refs/tags/{t}" for t in sorted(tags)]
    cmd = ["git", "-C", str(repo), "push", "--atomic", "--quiet", remote, *refs]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    return None if out.returncode == 0 else (out.stderr.strip() or f"git push exited {out.returncode}")


def drop(repo: Path, tags: set[str]) -> None:
    if tags:
        git(repo, "tag", "-d", *sorted(tags))


def sync(reg: Any) -> None:
    """Fetch the remote's registry into the clone (under the registry's lock) and point
    production.json at the production release it holds."""
    fetch(reg.repo, reg.remote, reg.name)
    held = reg.stages()["production"]
    pointer = reg.dir / "production.json"
    current = json.loads(pointer.read_text()).get("version") if pointer.exists() else None
    if held is not None and held.version != current:
        reg.write_production_pointer(reg.release(held.version))


@contextlib.contextmanager
def transaction(reg: Any) -> Iterator[None]:
    """A registry action (see the module docstring); ``reg._pending`` collects the files
    the action writes, written once the remote (if any) took its tags."""
    with reg.lock():
        if reg.remote is not None:
            fetch(reg.repo, reg.remote, reg.name)
        before, reg._pending = artifact_tags(reg.repo, reg.name), []
        created: set[str] | None = None  # this action's new tags, once known
        try:
            yield
            created = artifact_tags(reg.repo, reg.name) - before
            if reg.remote and created:
                created.add(sequence_tag(reg.repo, reg.name, created))
            refused = push(reg.repo, reg.remote, created) if reg.remote and created else None
            if refused is not None:
                drop(reg.repo, created)
                created = set()  # the fetch brings the winner's tags, which stay
                fetch(reg.repo, reg.remote, reg.name)
                raise RegistryError(
                    f"{reg.remote} took another registry change first ({refused.splitlines()[-1]}); "
                    f"{holding(reg)}; nothing was applied, here or there"
                )
            created = set()  # published: nothing to undo
            writes, reg._pending = reg._pending, None
            for write in writes:
                write()
        except BaseException:
            if created is None:  # the action itself failed: undo whatever it tagged
                drop(reg.repo, artifact_tags(reg.repo, reg.name) - before)
            raise
        finally:
            reg._pending = None


def holding(reg: Any) -> str:
    """What the registry holds now, in words (after another machine's action won)."""
    held = [f"{s} {a.version} (by {a.by})" for s, a in reg.stages().items() if a is not None]
    return f"{reg.remote} holds {', '.join(held) or 'no stage assignment'}"
