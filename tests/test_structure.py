"""The tree's structure: layers, no import cycle, no logic in ``__init__``, every config
key read somewhere (a dead setting fails here, not in a user's sweep)."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

from rsexp.config import Config, flatten, to_dict

PKG = Path(__file__).resolve().parents[1] / "rsexp"

# Layers in order; a module may import its own layer and those listed before it. The
# reports read run folders (experiment) and studies (optuna), and the sweep ends by
# writing them, so report sits below sweep. ``rsexp.errors`` holds every user-facing
# error class (importable without torch) for the command line to catch; ``rsexp.fileio``
# writes files whole or not at all, for every layer above the core. ``rsexp.slurm`` is
# the launcher's Slurm side (submitit), beside ``rsexp.jobs``.
LAYERS = [
    "core",
    "adapters",
    "config",
    "errors",
    "fileio",
    "jobs",
    "slurm",
    "data",
    "guidance",
    "track",
    "experiment",
    "report",
    "grid",
    "sweep",
    "cli_examples",
    "cli",
]


def modules() -> dict[str, Path]:
    return {
        ".".join(p.relative_to(PKG.parent).with_suffix("").parts).removesuffix(".__init__"): p
        for p in PKG.rglob("*.py")
    }


def imports_of(path: Path) -> set[str]:
    """rsexp modules imported by ``path`` (also inside functions: a lazy import is still
    an edge for layering, but not for the cycle check, see below)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("rsexp")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rsexp"):
            out.add(node.module)
    return out


def all_imports(path: Path) -> set[str]:
    """Modules imported anywhere in ``path`` (``from pkg import module`` counts as the
    module)."""
    known = modules()
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("rsexp")}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("rsexp"):
            for a in node.names:
                sub = f"{node.module}.{a.name}"
                out.add(sub if sub in known else node.module)
    return out


def layer(module: str) -> int:
    part = module.split(".")[1] if "." in module else "cli"
    return LAYERS.index(part)


def test_imports_point_down_the_layers():
    bad = []
    for name, path in modules().items():
        if name == "rsexp":
            continue
        for imp in imports_of(path):
            if imp != "rsexp" and layer(imp) > layer(name):
                bad.append(f"{name} imports {imp}")
    assert not bad, "\n".join(bad)


def test_core_imports_only_torch_timm_numpy_and_the_standard_library():
    allowed = {"torch", "timm", "numpy", "rsexp"}
    bad = []
    for path in (PKG / "core").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            for n in names:
                root = n.split(".")[0]
                if root not in allowed and root not in STDLIB:
                    bad.append(f"{path.name}: {n}")
    assert not bad, bad


STDLIB = {
    "__future__", "abc", "collections", "contextlib", "dataclasses", "math", "os",
    "pathlib", "random", "sys", "typing", "warnings", "functools", "itertools",
    "importlib",
}  # fmt: skip


def test_no_import_cycle():
    # lazy (in-function) imports count too: they were how the old sweep circle hid
    graph = {n: {i for i in all_imports(p) if i in modules()} for n, p in modules().items()}
    # a package's __init__ re-exports its modules: the edge module -> package is the
    # package's own re-export, not a cycle between rooms
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(n: str, stack: list[str]) -> bool:
        state[n] = 1
        for m in graph.get(n, ()):
            if m == n or n.startswith(m + "."):
                continue
            if state.get(m) == 1:
                cycle.extend([*stack[stack.index(m) :], m] if m in stack else [n, m])
                return True
            if state.get(m) is None and visit(m, [*stack, m]):
                return True
        state[n] = 2
        return False

    for n in graph:
        if state.get(n) is None and visit(n, [n]):
            break
    assert not cycle, " -> ".join(cycle)


def test_init_files_only_re_export():
    # rsexp/__init__.py re-exports the public API lazily (PEP 562 ``__getattr__``): every
    # command imports the rsexp package first, and an eager re-export would load torch
    # before ``rsexp --help`` could answer
    lazy = {"_PUBLIC", "__version__", "__getattr__", "__dir__"}
    for path in PKG.rglob("__init__.py"):
        for node in ast.parse(path.read_text()).body:
            named = {getattr(node, "name", None)} | {
                t.id for t in getattr(node, "targets", []) if isinstance(t, ast.Name)
            }
            if path.parent == PKG and named & lazy:
                continue
            ok = isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            )
            ok = ok or (
                isinstance(node, ast.Assign)
                and [t.id for t in node.targets if isinstance(t, ast.Name)] == ["__all__"]
            )
            assert ok, f"{path.relative_to(PKG.parent)}:{node.lineno} holds logic"


def test_modules_stay_small():
    big = {
        str(p.relative_to(PKG.parent)): n
        for p in PKG.rglob("*.py")
        if (n := len(p.read_text().splitlines())) > 420
    }
    assert not big, big


def test_the_config_is_its_schema_and_its_loader():
    """The typed tree (schema, the sweep's section) apart from how it is built (YAML,
    overrides, coercion, presets, blame) and from its redaction."""
    parts = {p.name for p in (PKG / "config").glob("*.py")}
    assert {"schema.py", "space.py", "loader.py", "redact.py", "__init__.py"} <= parts
    assert not (PKG / "config.py").exists()
    schema = (PKG / "config" / "schema.py").read_text()
    assert "def _coerce" not in schema and "yaml" not in schema


# Process starts outside the one launcher (rsexp/jobs.py), each with why it is not a job
NOT_JOBS = {
    "rsexp/data/cache.py": "the clip cache's decoding pool: a pool of workers, not a job",
    "rsexp/track/provenance.py": "git, run for its output (the commit of a run)",
    "rsexp/slurm.py": "scancel, a client command of the cluster (submitit starts the jobs)",
}


def test_every_process_start_goes_through_the_one_launcher():
    starts = re.compile(
        r"subprocess\.(Popen|run|call|check_call|check_output)\(|\.Process\(|"
        r"ProcessPoolExecutor\(|multiprocessing\.Pool\(|os\.(fork|spawn\w*|system)\("
    )
    bad = []
    for path in PKG.rglob("*.py"):
        rel = str(path.relative_to(PKG.parent))
        if rel == "rsexp/jobs.py" or rel in NOT_JOBS:
            continue
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if starts.search(line):
                bad.append(f"{rel}:{n}: {line.strip()}")
    assert not bad, "start it as a rsexp.jobs.Job:\n" + "\n".join(bad)


def test_every_config_key_is_read_somewhere():
    """Each leaf of the config tree is read by name somewhere other than its declaration
    (``.name`` or ``"name"``): a setting nothing reads is dead."""
    declaring = {
        PKG / "config" / "schema.py",
        PKG / "config" / "space.py",
        PKG / "core" / "settings.py",
    }
    declaration = re.compile(r"^\s+\w+: [^=]+= .*$", re.M)  # dataclass fields
    validation = re.compile(r"^.*self\.\w+.*$", re.M)  # __post_init__ checks read self.<key>

    def code(p: Path) -> str:
        text = declaration.sub("", p.read_text())
        return validation.sub("", text) if p in declaring else text

    source = "\n".join(code(p) for p in PKG.rglob("*.py"))
    dead = []
    for key in flatten(to_dict(Config())):
        leaf = key.rsplit(".", 1)[-1]
        if not re.search(rf"\.{leaf}\b|[\"']{leaf}[\"']", source):
            dead.append(key)
    assert not dead, f"config keys read nowhere: {dead}"


def test_help_and_config_import_no_torch_timm_or_tracker():
    # what keeps `rsexp --help` and `rsexp config` under a second (benchmarks/cli_start.py
    # times it): a command imports its heavy modules when it runs, never at start
    code = (
        "import sys\n"
        "from rsexp.cli import main\n"
        "for argv in (['config', 'loss.tau=2'], ['config', '--config', 'sweeps/ucf50.yaml']):\n"
        "    assert main(argv) == 0\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = sorted({m.split('.')[0] for m in sys.modules} & "
        "{'torch', 'timm', 'mlflow', 'wandb', 'optuna', 'decord', 'av', 'openai'})\n"
        "print('HEAVY', heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=PKG.parent, check=True
    ).stdout
    assert "tau: 2.0" in out  # the command did run
    assert "HEAVY []" in out, out[-500:]
