"""The documentation: the site builds strictly, a broken link or reference fails it, the API reference
lists every public name with its parameters and types, the docstrings are complete, and the Python
examples of the README and the guides run as written."""

from __future__ import annotations

import ast
import importlib
import inspect
import os
import re
import shutil
import subprocess
import sys
import textwrap
from html import unescape
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(DOCS.glob("*.md"))]
SKIP = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->")


def _need(module: str):
    """The docs extra is installed in CI: there a missing package fails, elsewhere it skips."""
    try:
        return importlib.import_module(module)
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"{module} not installed (pip install -e '.[docs]')")


def reference_modules(importable: bool = False) -> list[str]:
    """The modules the reference documents: one ``::: module`` directive per page of docs/reference.

    ``importable``: only those importable here. An integration module imports its optional
    dependency (spandrel, ray, gradio); CI installs them all, elsewhere a missing one is left out.
    """
    found = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        found += re.findall(r"^::: ([\w.]+)\s*$", page.read_text(), re.M)[:1]  # the page's module; then members
    if importable and not os.environ.get("CI"):
        found = [m for m in found if _importable(m)]
    return found


def _import(module: str):
    if module == "fdiwn_sr.spandrel":
        from spandrel_env import import_spandrel  # as tests/test_spandrel.py does, for this machine's torchvision

        import_spandrel()
    return importlib.import_module(module)


def _importable(module: str) -> bool:
    try:
        _import(module)
    except ImportError:
        return False
    return True


def public_names(module: str) -> list[str]:
    return list(_import(module).__all__)


def _mkdocs(config: Path, site: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(config), "--site-dir", str(site)],
        capture_output=True,
        text=True,
        timeout=600,
    )


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    _need("mkdocs")
    _need("mkdocstrings_handlers.python")
    out = tmp_path_factory.mktemp("site")
    r = _mkdocs(ROOT / "mkdocs.yml", out)
    assert r.returncode == 0, r.stderr
    return out


# --- the reference ----------------------------------------------------------------------------------


# Modules with an ``__all__`` that are not documented on their own page, and why. Every module is in the
# reference or here: a new module fails the test below until someone decides which.
INTERNAL = {
    "fdiwn_sr.allocator": "CPU memory tuning of the CLI and benchmarks",
    "fdiwn_sr.atomic": "the write helper the package uses",
    "fdiwn_sr.batch": "the planning behind fdiwn-sr upscale's --shard and torchrun ranks; see Scale-out",
    "fdiwn_sr.backends": "chosen by load_model(backend=...); see the Performance guide",
    "fdiwn_sr.cli": "the command line; see the guides",
    "fdiwn_sr.errors": "its exceptions are documented under fdiwn_sr",
    "fdiwn_sr.evaluate": "the evaluate command's loop",
    "fdiwn_sr.images": "input and output plumbing of Upscaler.upscale; see Upscaling images",
    "fdiwn_sr.manifest": "the weights manifest reader",
    "fdiwn_sr.publish": "release tooling (fdiwn-sr publish)",
    "fdiwn_sr.registry": "list_models, list_pretrained and ModelInfo are documented under fdiwn_sr",
    "fdiwn_sr.tiling": "tiling inside Upscaler.upscale; see Upscaling images",
    "fdiwn_sr.upscaler": "Upscaler is documented under fdiwn_sr",
    "fdiwn_sr.weights": "reached through load_model and fdiwn-sr download; see Pretrained weights",
    "fdiwn_sr.network.blocks": "the network's parts; see The network",
    "fdiwn_sr.network.fdiwn": "its public names are documented under fdiwn_sr.network",
    "fdiwn_sr.network.inference": "the fused inference form; see Performance",
    "fdiwn_sr.network.kernels": "the fused form's CPU kernels, chosen by the backends; see Performance",
    "fdiwn_sr.training.config": "its public names are documented under fdiwn_sr.training",
    "fdiwn_sr.training.data": "its public names are documented under fdiwn_sr.training",
    "fdiwn_sr.training.distributed": "process-group plumbing of train()",
    "fdiwn_sr.training.imresize": "imresize is documented under fdiwn_sr.training",
    "fdiwn_sr.training.trainer": "its public names are documented under fdiwn_sr.training",
}


def test_every_module_is_in_the_reference_or_named_internal():
    documented = set(reference_modules())
    modules = set()
    for path in (ROOT / "fdiwn_sr").rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        if not any(p.startswith("_") for p in parts):
            modules.add(".".join(parts))
    assert not documented & set(INTERNAL), "a module is both documented and internal"
    assert modules - set(INTERNAL) == documented, "document these modules or name them internal (and why)"
    for module in reference_modules(importable=True):
        assert hasattr(_import(module), "__all__"), f"{module} is documented but has no __all__"


def _section(html: str, ident: str) -> str:
    """The HTML of one documented object: from its heading to the next object heading of its level."""
    start = html.index(f'id="{ident}"')
    level = html.rfind("<h", 0, start)
    tag = html[level : level + 3]
    end = html.find(tag, start)
    return html[start : end if end != -1 else len(html)]


def _annotation_text(annotation: object) -> str:
    """The last dotted part of an annotation's first name, as the rendered signature shows it."""
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    first = re.findall(r"[A-Za-z_][\w.]*", text)[0]
    return first.rsplit(".", 1)[-1]


def _callables(module: str):
    """(identifier, signature) of every public function, class and public method in ``module.__all__``."""
    mod = _import(module)
    for name in public_names(module):
        obj = getattr(mod, name)
        ident = f"{module}.{name}"
        if inspect.isfunction(obj):
            yield ident, inspect.signature(obj)
        elif inspect.isclass(obj):
            if "__init__" in vars(obj):  # its own parameters (dataclasses included), not inherited ones
                yield ident, inspect.signature(obj)
            for attr, member in vars(obj).items():
                if not attr.startswith("_") and inspect.isfunction(member):
                    yield f"{ident}.{attr}", inspect.signature(member)


def test_reference_lists_every_public_name_with_parameters_and_types(site):
    modules = reference_modules(importable=True)
    assert "fdiwn_sr" in modules
    for module in modules:
        page = next(p for p in (site / "reference").rglob("index.html") if f'id="{module}"' in p.read_text())
        html = page.read_text()
        for name in public_names(module):
            obj = getattr(_import(module), name)
            where = f"{getattr(obj, '__module__', '')}.{getattr(obj, '__qualname__', '')}"  # shown on its own
            assert f'id="{module}.{name}"' in html or f'id="{where}"' in html, f"{module}.{name} missing from {page}"
        for ident, sig in _callables(module):
            if f'id="{ident}"' not in html:  # documented under its own module's path (see above)
                obj = getattr(_import(module), ident.removeprefix(module + ".").split(".")[0])
                ident = ident.replace(f"{module}.", f"{obj.__module__}.", 1)
            section = unescape(_section(html, ident))
            for p in sig.parameters.values():
                if p.name in ("self", "cls"):
                    continue
                stars = {p.VAR_POSITIONAL: "*", p.VAR_KEYWORD: "**"}.get(p.kind, "")
                anchor = f'id="{ident}({stars}{p.name})"'
                assert anchor in section, f"parameter {p.name} of {ident} not in the reference"
                if p.annotation is not inspect.Parameter.empty:
                    # The parameters table shows the annotation beside the name.
                    row = section[section.index(anchor) :][:4000]
                    assert _annotation_text(p.annotation) in row, f"type of {ident}({p.name}) not shown"


# --- docstrings ---------------------------------------------------------------------------------------


def _raised_names(func) -> set[str]:
    """Exception classes a function raises itself (``raise X(...)``), not in nested functions."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(func)))
    except (OSError, TypeError):
        return set()
    body = tree.body[0]
    names = set()
    stack = list(ast.iter_child_nodes(body))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.Raise) and node.exc is not None:
            exc = node.exc.func if isinstance(node.exc, ast.Call) else node.exc
            if isinstance(exc, ast.Name) and exc.id[0].isupper():
                names.add(exc.id)
            elif isinstance(exc, ast.Attribute):
                names.add(exc.attr)
        stack.extend(ast.iter_child_nodes(node))
    return names


def _sections(docstring: str) -> dict:
    """Google-style sections parsed by griffe, the parser mkdocstrings uses: kind -> value."""
    griffe = _need("griffe")
    parsed = griffe.Docstring(docstring).parse("google", warnings=False)
    return {s.kind.value: s.value for s in parsed}


def _docstring_problems(ident: str, func, sig: inspect.Signature, docstring: str | None) -> list[str]:
    if not docstring:
        return [f"{ident}: no docstring"]
    sections = _sections(inspect.cleandoc(docstring))
    problems = []
    documented = {p.name.lstrip("*") for p in sections.get("parameters", [])}
    for p in sig.parameters.values():
        if p.name not in ("self", "cls") and p.name not in documented:
            problems.append(f"{ident}: parameter {p.name!r} not documented")
    returns = sig.return_annotation
    if (
        returns not in (None, "None", inspect.Signature.empty)
        and not inspect.isclass(func)
        and "returns" not in sections
        and "yields" not in sections
    ):
        problems.append(f"{ident}: return value not documented")
    raised = {e.annotation if isinstance(e.annotation, str) else str(e.annotation) for e in sections.get("raises", [])}
    for name in _raised_names(func.__init__ if inspect.isclass(func) else func):
        if not any(name == r.rsplit(".", 1)[-1] for r in raised):
            problems.append(f"{ident}: raises {name} but its docstring does not say so")
    return problems


def test_public_docstrings_document_every_parameter_return_and_raise():
    problems = []
    for module in reference_modules(importable=True):
        mod = _import(module)
        for ident, sig in _callables(module):
            name, *rest = ident.removeprefix(module + ".").split(".")
            obj = getattr(mod, name)
            if rest:
                obj = vars(obj)[rest[0]]
                doc = obj.__doc__
            elif inspect.isclass(obj):
                init = vars(obj).get("__init__")
                doc = (obj.__doc__ or "") + "\n\n" + (init.__doc__ or "" if init else "")
            else:
                doc = obj.__doc__
            problems += _docstring_problems(ident, obj, sig, doc)
    assert not problems, "\n".join(problems)


# --- a broken page fails the build --------------------------------------------------------------------


def _scratch_copy(tmp_path: Path) -> Path:
    """mkdocs.yml, docs/ and README.md (included by the quick start) copied; the package linked."""
    tmp_path.mkdir()
    for name in ("mkdocs.yml", "README.md"):
        shutil.copy(ROOT / name, tmp_path / name)
    shutil.copytree(DOCS, tmp_path / "docs")
    (tmp_path / "fdiwn_sr").symlink_to(ROOT / "fdiwn_sr")
    return tmp_path


@pytest.mark.slow
def test_a_broken_link_or_reference_fails_the_strict_build(tmp_path):
    _need("mkdocs")
    _need("mkdocstrings_handlers.python")
    scratch = _scratch_copy(tmp_path / "a")
    usage = scratch / "docs" / "usage.md"
    usage.write_text(
        usage.read_text()
        + "\nSee [the old page](no-such-page.md) and [`Upscaler.upscale_all`][fdiwn_sr.Upscaler.upscale_all].\n"
    )
    r = _mkdocs(scratch / "mkdocs.yml", tmp_path / "site-a")
    assert r.returncode != 0
    assert "no-such-page.md" in r.stderr
    assert "fdiwn_sr.Upscaler.upscale_all" in r.stderr

    scratch = _scratch_copy(tmp_path / "b")
    (scratch / "docs" / "reference" / "metrics.md").write_text("::: fdiwn_sr.metrics.no_such_function\n")
    r = _mkdocs(scratch / "mkdocs.yml", tmp_path / "site-b")
    assert r.returncode != 0
    assert "fdiwn_sr.metrics.no_such_function" in r.stderr


# --- the examples in the pages run --------------------------------------------------------------------


def python_blocks(page: Path) -> list[str]:
    """The ```python blocks of a page in order, without those marked ``<!-- docs-test: skip: why -->``."""
    blocks, lines, i = [], page.read_text().splitlines(), 0
    while i < len(lines):
        if lines[i].strip() == "```python":
            previous = next((x for x in reversed(lines[:i]) if x.strip()), "")
            j = next(k for k in range(i + 1, len(lines)) if lines[k].strip() == "```")
            if not SKIP.search(previous):
                blocks.append(textwrap.dedent("\n".join(lines[i + 1 : j])))
            i = j
        i += 1
    return blocks


SPANDREL_SHIM = "from spandrel_env import import_spandrel\nimport_spandrel()"

# What the examples promise in their comments, checked after they ran (names from the page's blocks).
CHECKS = {
    "README.md": """
assert sr.size == (512, 384), sr.size
assert out.dtype == np.uint16 and out.shape == (128, 2048), (out.dtype, out.shape)
assert batch.shape == (4, 3, 192, 192) and batch.dtype == torch.float32
""",
    "usage.md": """
assert big.size == (512, 384), big.size
assert out.dtype == np.uint16 and out.shape == (600, 800), (out.dtype, out.shape)
""",
    "integrations.md": """
assert sr.shape == (1, 3, 128, 128) and 0 <= float(sr.min()) and float(sr.max()) <= 1, sr.shape
""",
    "video.md": """
assert result.frames == 12 and (result.width, result.height) == (128, 96), result
""",
    "training.md": """
assert lr.dtype == np.uint8 and lr.shape == (24, 32, 3), (lr.dtype, lr.shape)
assert x.dtype == np.float64 and x.shape == (120, 80, 3), (x.dtype, x.shape)
""",
}


@pytest.fixture(scope="module")
def docs_workdir(tmp_path_factory, converted, authors_pt) -> tuple[Path, dict[str, str]]:
    """A folder with the files the examples name, and a weights cache seeded from the reference checkpoints,
    so ``load_model(scale)`` works offline exactly as after a download."""
    from fdiwn_sr.manifest import load_manifest
    from fdiwn_sr.weights import cache_path

    home = tmp_path_factory.mktemp("fdiwn-sr-home")
    for scale, path in converted.items():
        target = cache_path(load_manifest().entry(scale, "fdiwn"), home)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    work = tmp_path_factory.mktemp("docs-work")
    (work / "examples").symlink_to(ROOT / "examples")
    shutil.copy(ROOT / "examples" / "data" / "sample.png", work / "photo.png")
    shutil.copy(converted[4], work / "my.safetensors")
    shutil.copy(authors_pt(4), work / "FDIWNx4.pt")
    try:
        from video_samples import make_clip

        make_clip(work / "clip.mp4", frames=12, size=(32, 24))
    except ImportError:  # PyAV (extra fdiwn-sr[video]) missing: the video page's test fails or skips
        pass
    env = {**os.environ, "FDIWN_SR_HOME": str(home), "FDIWN_SR_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
    return work, env


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if python_blocks(p)], ids=lambda p: p.name)
def test_python_examples_of_the_page_run(page, docs_workdir, tmp_path):
    work, env = docs_workdir
    if page.name == "video.md":
        _need("av")
    script = "\n\n".join(python_blocks(page)) + "\n" + textwrap.dedent(CHECKS.get(page.name, ""))
    if "import spandrel" in script:  # as tests/test_spandrel.py does, for this machine's torchvision
        script = f"import sys\nsys.path.insert(0, {str(ROOT / 'tests')!r})\n{SPANDREL_SHIM}\n{script}"
    (tmp_path / "page.py").write_text(script)
    r = subprocess.run([sys.executable, str(tmp_path / "page.py")], cwd=work, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{page.name}:\n{r.stdout}\n{r.stderr}"


def test_pages_with_python_examples_are_found():
    """The block parser sees the blocks (a page with none would make the test above vacuous)."""
    with_blocks = {p.name for p in PAGES if python_blocks(p)}
    assert {"README.md", "usage.md", "weights.md", "onnx.md", "training.md", "architecture.md"} <= with_blocks
