"""zcap's .py modules import each other without cycles and without private names.

The graph is read from the source with ast (every import statement, also those
inside functions: a lazy import still ties two modules together).  Importing a
compiled module of the package (zcap._ring, zcap._enums, ...) is how the package
is built and is allowed; importing another module's underscore name, or reading
one through its module (`capture._lookup`, `_ring._human`), is not.
"""

import ast
import subprocess
import sys
from pathlib import Path

import zcap
from tests.unit.savefiles import pcap

# the package under test: the checkout's, or an installed wheel's (.ci/run checks both)
PKG = Path(zcap.__file__).resolve().parent
ROOT = PKG.parent

# Private names still read across modules, each waiting on a file another change
# owns: remove the entry when the name gets a public home.
KNOWN_PRIVATE: set[tuple[str, str]] = set()


def _modules() -> dict[str, Path]:
    mods = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = p
    for p in sorted(PKG.rglob("*.pyx")):
        mods[".".join(p.relative_to(ROOT).with_suffix("").parts)] = p
    return mods


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _scan() -> tuple[dict[str, set[str]], set[tuple[str, str]]]:
    """(module -> modules it imports, {(module, private name it reads)})."""
    mods = _modules()

    def owner(name: str) -> str:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name

    edges: dict[str, set[str]] = {}
    private: set[tuple[str, str]] = set()
    for mod, path in mods.items():
        if path.suffix != ".py":
            continue
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        tree = ast.parse(path.read_text(), str(path))
        aliases: dict[str, str] = {}
        deps: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name.split(".")[0] == "zcap":
                        deps.add(owner(a.name))
                        aliases[a.asname or "zcap"] = a.name if a.asname else "zcap"
            elif isinstance(node, ast.ImportFrom):
                source = node.module or ""
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    source = ".".join(base + ([node.module] if node.module else []))
                if source.split(".")[0] != "zcap":
                    continue
                for a in node.names:
                    full = f"{source}.{a.name}"
                    if full in mods:                    # a submodule
                        deps.add(full)
                        aliases[a.asname or a.name] = full
                    else:
                        deps.add(owner(source))
                        if _private(a.name):
                            private.add((mod, full))
        for node in ast.walk(tree):                     # module._name
            if isinstance(node, ast.Attribute) and _private(node.attr):
                chain, value = [], node.value
                while isinstance(value, ast.Attribute):
                    chain.append(value.attr)
                    value = value.value
                if isinstance(value, ast.Name) and value.id in aliases:
                    target = ".".join([aliases[value.id], *reversed(chain)])
                    if target in mods and f"{target}.{node.attr}" not in mods:
                        private.add((mod, f"{target}.{node.attr}"))
        deps.discard(mod)
        edges[mod] = {d for d in deps if d and mods[d].suffix == ".py"}
    return edges, private


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_the_import_graph_has_no_cycle():
    edges, _ = _scan()
    assert edges["zcap.replay"] and edges["zcap.cli"]      # the scan sees imports at all
    cycles = _cycles(edges)
    detail = [[f"{a} -> {b}" for a in c for b in sorted(edges[a]) if b in c] for c in cycles]
    assert not cycles, f"import cycles in zcap/: {detail}"


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_reads_another_modules_private_names():
    _, private = _scan()
    new = sorted(private - KNOWN_PRIVATE)
    assert not new, f"private names used across zcap modules (give them a public name): {new}"
    stale = sorted(KNOWN_PRIVATE - private)
    assert not stale, f"remove from KNOWN_PRIVATE, fixed: {stale}"


def test_commands_import_no_decoder_until_they_print(tmp_path):
    """Writing a file reads no dpkt; printing one does (the printer is imported then)."""
    src = tmp_path / "in.pcap"
    src.write_bytes(pcap([(1_000_000_000, 60, bytes(60))]))
    check = ("import sys\nfrom zcap import cli, replay, pool_cli, merge, cliopts\n"
             "code = cli.main(sys.argv[1:])\n"
             "print(code, 'dpkt' in sys.modules, 'zcap.printer' in sys.modules, file=sys.stderr)\n")
    written = subprocess.run([sys.executable, "-c", check, "-r", str(src), "-w", str(tmp_path / "o.pcap")],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert written.stderr.strip().splitlines()[-1] == "0 False False", written.stderr
    printed = subprocess.run([sys.executable, "-c", check, "-r", str(src)],
                             cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert printed.stderr.strip().splitlines()[-1] == "0 True True", printed.stderr
    assert printed.stdout.count("\n") == 1, printed.stdout
