"""The house plan, checked: imports run one way, stages stay apart, the bots stay slim, one vocabulary.

The import graph is read from the source (every import statement, function-level ones included, and
the stages' backend registries), so a cycle hidden behind a late import still counts as a cycle.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import get_args, get_type_hints

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("engine", "storage", "bot")
MAX_LINES = 400
# Which backend modules each stage may use (directly or through its registry): a stage never reaches
# into another stage's backends, and never into another stage.
STAGE_BACKENDS = {
    "intake": (),
    "ocr": ("rapidocr", "florence2"),
    "detext": (),
    "caption": ("scene", "blip2", "florence2"),
    "synthesize": ("template", "llm"),
    "generate": ("acting", "procedural", "video", "clipguided"),
    "postprocess": (),
    "encode": ("gif",),
}
HEAVY = ("numpy", "torch", "sqlalchemy", "cv2", "PIL", "mediapipe")
# The engine modules the bots may import: standard library only, none of them pulls in numpy.
BOT_MAY_USE = ("engine", "engine.vocabulary", "engine.config", "engine.errors", "engine.units", "engine.safejson")


def module_name(path: Path) -> str:
    """The dotted module a source file defines."""
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def sources() -> dict[str, Path]:
    """Every module of the product packages."""
    return {module_name(p): p for package in PACKAGES for p in sorted((REPO / package).rglob("*.py"))}


MODULES = sources()


def imported(name: str, tree: ast.AST) -> Iterator[str]:
    """The product modules a module imports, at any depth, plus the classes its registries name."""
    package = name if MODULES[name].name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolved from this module's package
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and ":" in node.value:
            target = node.value.partition(":")[0]  # a registry's "package.module:Class"
            if target in MODULES:
                yield target


def graph() -> dict[str, set[str]]:
    """Module → the product modules it imports."""
    edges: dict[str, set[str]] = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        edges[name] = {target for target in imported(name, tree) if target in MODULES and target != name}
    return edges


GRAPH = graph()


def test_the_import_graph_has_no_cycle() -> None:
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(GRAPH[node]):
            if state.get(nxt) == 1:
                cycle = path[path.index(nxt) :] + [nxt]
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        path.pop()
        state[node] = 2

    for node in sorted(GRAPH):
        if node not in state:
            visit(node)


def test_imports_run_one_way() -> None:
    """bots → engine vocabulary/config only; storage → nothing of ours; the engine never imports the bots."""
    for name, targets in GRAPH.items():
        top = name.split(".")[0]
        for target in targets:
            if top == "storage":
                assert target.startswith("storage"), f"{name} imports {target}"
            if top == "engine":
                assert not target.startswith("bot"), f"{name} imports {target}"
            if top == "bot" and target.startswith(("engine", "storage")):
                assert target in BOT_MAY_USE, f"{name} imports {target}: the bots talk to the engine over HTTP only"


def test_stages_never_import_other_stages_or_their_backends() -> None:
    assert set(STAGE_BACKENDS) == {n.split(".")[-1] for n in MODULES if n.startswith("engine.stages.")}
    for stage, own in STAGE_BACKENDS.items():
        name = f"engine.stages.{stage}"
        for target in GRAPH[name]:
            assert not target.startswith("engine.stages."), f"{name} imports the stage {target}"
            assert not target.startswith(("engine.pipeline", "engine.service", "engine.cli")), f"{name} -> {target}"
            if target.startswith("engine.backends."):
                family = target.split(".")[2]
                assert family in own, f"{name} uses {target}, a backend of another stage"


def test_backends_never_import_stages_or_the_pipeline() -> None:
    for name, targets in GRAPH.items():
        if name.startswith("engine.backends"):
            bad = {t for t in targets if t.startswith(("engine.stages", "engine.pipeline", "engine.service"))}
            assert not bad, f"{name} imports {bad}"


def test_every_module_stays_small() -> None:
    folders = [*PACKAGES, "research", "tests", "bench", "examples"]
    long = {
        str(p.relative_to(REPO)): n
        for folder in folders
        for p in (REPO / folder).rglob("*.py")
        if (n := len(p.read_text("utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_product_never_imports_the_research_reproductions() -> None:
    """research/ (MAGE and the text-to-video GAN on generated data) stands beside the product, not inside it."""
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text("utf-8"), filename=str(path))
        names = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
        names += [node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and not node.level]
        assert not [n for n in names if n == "research" or n.startswith("research.")], f"{name} imports research"


def test_the_bots_import_no_heavy_library() -> None:
    bot_modules = sorted(n for n in MODULES if n.split(".")[0] == "bot")
    code = (
        "import importlib, sys\n"
        f"for name in {bot_modules!r}:\n"
        "    importlib.import_module(name)\n"
        f"heavy = {{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r}\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_cli_starts_without_the_models() -> None:
    """`makeitmove --help` and the building of the pipeline import no mediapipe (it loads on the first picture)."""
    code = (
        "import sys\n"
        "from engine.cli import build_parser\n"
        "build_parser()\n"
        "assert not {m.split('.')[0] for m in sys.modules} & {'numpy', 'cv2', 'mediapipe', 'torch'}, 'cli'\n"
        "from engine.config import load_settings\n"
        "from engine.pipeline import Pipeline\n"
        "Pipeline(load_settings())\n"
        "assert 'engine.backends.acting.backend' in sys.modules, 'the default backend was not built'\n"
        "assert 'mediapipe' not in sys.modules, 'pipeline'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_stage_registry_lists_exactly_the_configured_backends() -> None:
    from engine import config
    from engine.stages import caption, generate, ocr, synthesize

    for stage, settings in (
        (ocr, config.OcrSettings), (caption, config.CaptionSettings),
        (synthesize, config.SynthesizeSettings), (generate, config.GenerateSettings),
    ):  # fmt: skip
        allowed = get_args(get_type_hints(settings)["backend"])
        assert set(stage.BACKENDS) == set(allowed), stage.__name__
        for spec in filter(None, stage.BACKENDS.values()):
            module, _, cls = spec.partition(":")
            assert module in MODULES and f"class {cls}" in MODULES[module].read_text("utf-8"), spec


def test_the_vocabulary_is_the_one_definition_of_the_allowed_values() -> None:
    """No module besides engine/vocabulary.py spells out the cameras, motion levels, emotions or formats."""
    from engine.vocabulary import CAMERAS, EMOTIONS, FORMATS, MOTION_LEVELS

    sets = {"cameras": set(CAMERAS), "motions": set(MOTION_LEVELS), "emotions": set(EMOTIONS), "formats": set(FORMATS)}
    for name, path in MODULES.items():
        if name == "engine.vocabulary":
            continue
        for node in ast.walk(ast.parse(path.read_text("utf-8"))):
            elements = None
            if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                elements = node.elts
            elif isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "Literal":
                elements = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
            if not elements:
                continue
            words = {e.value for e in elements if isinstance(e, ast.Constant) and isinstance(e.value, str)}
            for what, values in sets.items():
                assert not (len(words & values) >= 2 and words <= values | {""}), (
                    f"{path.relative_to(REPO)}:{node.lineno} spells out the {what}; import them from engine.vocabulary"
                )


def test_the_edges_offer_exactly_the_vocabulary() -> None:
    from engine.cli import build_parser
    from engine.config import EncodeSettings, GenerateSettings
    from engine.service.api.models import JobOptions
    from engine.vocabulary import CAMERAS, FORMATS, MOTION_LEVELS

    animate = build_parser()._subparsers._group_actions[0].choices["animate"]  # type: ignore[union-attr]
    choices = {action.dest: tuple(action.choices) for action in animate._actions if action.choices}
    assert choices == {"camera": CAMERAS, "motion": MOTION_LEVELS, "format": FORMATS}
    schema = JobOptions.model_json_schema()["properties"]

    def enum(field: str) -> tuple[str, ...]:
        return tuple(next(option["enum"] for option in schema[field]["anyOf"] if "enum" in option))

    assert (enum("camera"), enum("motion"), enum("format")) == (CAMERAS, MOTION_LEVELS, FORMATS)
    hints = get_type_hints(GenerateSettings)
    assert get_args(get_args(hints["camera"])[0]) == CAMERAS and get_args(hints["motion"]) == MOTION_LEVELS
    assert get_args(get_type_hints(EncodeSettings)["format"]) == FORMATS
