"""Write the documentation site's reference pages from the code they describe, so that they
cannot drift from it: the params (every key of params.yaml from the typed dataclasses and
their field docs), the CLI (from the Typer app) and the HTTP API (from the service's own
OpenAPI document). `tests/test_docs_site.py` fails when a committed page differs from what
this script writes now.

    .venv/bin/python scripts/reference_docs.py    # docs/reference/*.md, docs/snippets/*.md, README blocks

It also writes the snippets that pages include (pymdownx.snippets) where they quote a run's
figures: sections of the committed eval/report.md. Rerun it after committing a new run.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import sys
import textwrap
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def field_docs(cls: type) -> dict[str, tuple[str, str]]:
    """Each field's annotation and the docstring written under it (attribute docstrings)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out: dict[str, tuple[str, str]] = {}
    for i, node in enumerate(body):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = ""
            nxt = body[i + 1] if i + 1 < len(body) else None
            if isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant):
                doc = " ".join(str(nxt.value.value).split())
            out[node.target.id] = (ast.unparse(node.annotation), doc)
    return out


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def params_rows(cls: type, prefix: str) -> list[str]:
    docs, rows, nested = field_docs(cls), [], []
    for f in dataclasses.fields(cls):
        value = _default(f)
        if dataclasses.is_dataclass(value):
            nested.append((type(value), f"{prefix}.{f.name}"))
            continue
        annotation, doc = docs.get(f.name, ("", ""))
        shown = repr(list(value) if isinstance(value, tuple) else value)
        rows.append(f"| `{prefix}.{f.name}` | `{_cell(annotation)}` | `{_cell(shown)}` | {_cell(doc)} |")
    for sub, name in nested:
        rows += params_rows(sub, name)
    return rows


def params_page() -> str:
    from tunegate.core.params import Params

    parts = [
        "# Params reference",
        "",
        "Every key of `params.yaml` (and `params-generation.yaml`), its type, its default and what",
        "it does, written by `scripts/reference_docs.py` from the typed dataclasses in",
        "`tunegate/core/params.py`, `tunegate/core/release_params.py` and `tunegate/core/tune_params.py`.",
        "`tunegate params` prints the resolved set of a project; a key that is not here is refused.",
    ]
    for section in dataclasses.fields(Params):
        cls = type(_default(section))
        summary = " ".join((inspect.getdoc(cls) or "").split()) if cls.__doc__ else ""
        parts += ["", f"## `{section.name}`", ""]
        if summary and not summary.startswith(cls.__name__ + "("):
            parts += [summary, ""]
        parts += ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
        parts += params_rows(cls, section.name)
    return "\n".join(parts) + "\n"


def cli_page() -> str:
    import typer

    from tunegate.cli import app

    root = typer.main.get_command(app)
    parts = [
        "# CLI reference",
        "",
        "`tunegate` (in `.venv/bin`), written by `scripts/reference_docs.py` from the Typer app",
        "(`tunegate/cli.py`); `tunegate COMMAND --help` prints the same.",
    ]

    def walk(cmd: Any, path: list[str], parent: Any) -> None:  # Typer's own click (typer._click)
        ctx = cmd.context_class(cmd, info_name=path[-1], parent=parent)
        if len(path) > 1:
            parts.extend(["", f"## `{' '.join(path)}`", ""])
            parts.append(" ".join((cmd.help or "").split()))
            params = [p for p in cmd.get_params(ctx) if p.name != "help"]
            if params:
                parts.extend(["", "| argument or option | meaning |", "| --- | --- |"])
                for p in params:
                    option = p.param_type_name == "option"
                    names = ", ".join(p.opts + p.secondary_opts) if option else str(p.name).upper()
                    text = " ".join((getattr(p, "help", None) or "").split())
                    parts.append(f"| `{_cell(names)}` | {_cell(text)} |")
        if hasattr(cmd, "list_commands"):
            for name in sorted(cmd.list_commands(ctx)):
                walk(cmd.get_command(ctx, name), [*path, name], ctx)

    walk(root, ["tunegate"], None)
    return "\n".join(parts) + "\n"


def api_page() -> str:
    from tunegate.serving.app import build_app
    from tunegate.serving.openapi import document

    doc = document(build_app())
    parts = [
        "# HTTP API reference",
        "",
        "The service's operations, written by `scripts/reference_docs.py` from its own OpenAPI",
        f"{doc['openapi']} document (`GET /docs.json` on a running service, `tunegate/serving/openapi.py`),",
        "which the tests validate and fuzz. Errors use OpenAI's shape: "
        '`{"error": {"message", "type", "param", "code"}}`.',
        "",
        "| method | path | what | answers |",
        "| --- | --- | --- | --- |",
    ]
    for path in sorted(doc["paths"]):
        for method, op in sorted(doc["paths"][path].items()):
            if not isinstance(op, dict) or "responses" not in op:
                continue
            what = " ".join((op.get("description") or op.get("summary") or "").split())
            codes = ", ".join(sorted(op["responses"]))
            parts.append(f"| {method.upper()} | `{path}` | {_cell(what)} | {codes} |")
    return "\n".join(parts) + "\n"


def report_section(heading: str, project: Path = ROOT, report_file: str = "eval/report.md") -> str:
    """One section of the committed release report (eval/report.md, tracked by git, written by
    the gate stage's own renderer), quoted as it is, without its heading: a page that shows a
    run's figures includes this, so nobody types them and nothing renders them twice."""
    report = (project / report_file).read_text(encoding="utf-8")
    start = report.index(f"\n## {heading}\n") + len(heading) + 5
    end = report.find("\n## ", start)
    return report[start : None if end < 0 else end].strip("\n") + "\n"


def report_head(project: Path = ROOT, report_file: str = "eval/report.md") -> str:
    """The committed release report's head: its verdict, what it compared and every check,
    up to the floors table (eval/report.md, or the generation kind's, as the gate stage wrote it)."""
    report = (project / report_file).read_text(encoding="utf-8")
    return report[: report.index("\nFloors beside the references")].strip("\n") + "\n"


def comment_head(project: Path = ROOT) -> str:
    """The head of the pull-request comment on the committed gate record (`tunegate gate
    --format markdown`), up to its collapsed table of every check."""
    from tunegate.evaluation.comment import comment_for

    text = comment_for(project / "eval/gate.json")
    return text[: text.index("<details>")].strip("\n") + "\n"


GENERATION_REPORT = "eval/generation/report.md"
PAGES = {
    "reference/params.md": params_page,
    "reference/cli.md": cli_page,
    "reference/api.md": api_page,
    "snippets/calibration.md": lambda: report_section("Calibration and abstention"),
    "snippets/report-head.md": report_head,
    "snippets/report-head-generation.md": lambda: report_head(report_file=GENERATION_REPORT),
    "snippets/suites-generation.md": lambda: report_section("Suites", report_file=GENERATION_REPORT),
    "snippets/fields-generation.md": lambda: report_section("Fields", report_file=GENERATION_REPORT),
    "snippets/parity.md": lambda: report_section("Parity"),
    "snippets/gate-comment.md": comment_head,
}
"""Each generated file, relative to docs/ (snippets/ are included by pages, not pages)."""


def durations_block(rows: int = 8) -> str:
    """The slowest tests of the committed CI run and its summary line, quoted from
    bench/results/test_durations.txt (pytest's own `--durations` table)."""
    lines = (ROOT / "bench/results/test_durations.txt").read_text(encoding="utf-8").splitlines()
    return "```\n" + "\n".join([*lines[:rows], lines[-1]]) + "\n```"


def judge_block() -> str:
    """The canary judge's first and last decisions, with their reasons, in the committed
    `make demo` transcript (bench/results/demo.log, as scripts/demo.py printed it)."""
    lines = (ROOT / "bench/results/demo.log").read_text(encoding="utf-8").splitlines()
    steps = [i for i, line in enumerate(lines) if line == "$ tunegate rollout step"]

    def decision(i: int) -> list[str]:
        end = i + 2
        while end < len(lines) and lines[end].startswith("  - "):
            end += 1
        return lines[i:end]

    shown = decision(steps[0]) + (["...", *decision(steps[-1])] if len(steps) > 1 else [])
    return "```\n" + "\n".join(shown) + "\n```"


def recipes_block() -> str:
    """The default recipe's comparison across datasets, as bench/recipes.py wrote it
    (bench/results/recipes.md: each cell's verdict, hold-out primary metric, forgetting)."""
    return (ROOT / "bench/results/recipes.md").read_text(encoding="utf-8").rstrip()


README_BLOCKS = {"test-durations": durations_block, "canary-judge": judge_block, "recipes": recipes_block}
"""Blocks of README.md (GitHub renders no includes) between `<!-- generated: NAME -->` and
`<!-- end: NAME -->`, rewritten from the files that hold their figures."""


def readme(text: str) -> str:
    """README.md's text with every generated block rewritten."""
    for name, block in README_BLOCKS.items():
        start, end = f"<!-- generated: {name} -->", f"<!-- end: {name} -->"
        head, rest = text.split(start, 1)
        _, tail = rest.split(end, 1)
        text = f"{head}{start}\n{block()}\n{end}{tail}"
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs")
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="the README to write")
    args = parser.parse_args(argv)
    for name, page in PAGES.items():
        (args.out / name).parent.mkdir(parents=True, exist_ok=True)
        (args.out / name).write_text(page(), encoding="utf-8")
        print(f"wrote {args.out / name}")
    args.readme.write_text(readme((ROOT / "README.md").read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote {args.readme}")


if __name__ == "__main__":
    main()
