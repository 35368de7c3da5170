"""The package's architecture, checked: which module may load what, no import cycles, no private names across modules."""
import ast, json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT/'fundus2video'
MODULES = sorted(p.stem for p in PKG.glob('*.py') if not p.stem.startswith('_'))


def package_imports(module:str) -> list:
    "(imported module, imported name or None) for every import of another package module in `module`, at any depth."
    out = []
    for node in ast.walk(ast.parse((PKG/f'{module}.py').read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1: target = node.module                           # from .x import y
            elif node.level == 0 and (node.module or '').startswith('fundus2video.'): target = node.module.split('.', 1)[1]
            elif node.level == 0 and node.module == 'fundus2video':              # from fundus2video import x (a module)
                out += [(a.name, None) for a in node.names if a.name in MODULES]; continue
            else: continue
            if target: out += [(target.split('.')[0], a.name) for a in node.names]
        elif isinstance(node, ast.Import):
            out += [(a.name.split('.')[1], None) for a in node.names if a.name.startswith('fundus2video.')]
    return [(m, n) for m, n in out if m in MODULES and m != module]


def import_graph() -> dict:
    return {m: sorted({t for t, _ in package_imports(m)}) for m in MODULES}


def find_cycle(graph:dict) -> list | None:
    "A cycle of the directed graph as a list of nodes (first == last), or None."
    state, stack = {}, []
    def visit(n):
        state[n] = 'open'; stack.append(n)
        for m in graph.get(n, []):
            if state.get(m) == 'open': return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)): return c
        state[n] = 'done'; stack.pop()
    for n in graph:
        if n not in state and (c := visit(n)): return c
    return None


def test_find_cycle_finds_one():
    assert find_cycle({'a': ['b'], 'b': ['c'], 'c': ['a']}) == ['a', 'b', 'c', 'a']
    assert find_cycle({'a': ['b', 'c'], 'b': ['c'], 'c': []}) is None


def test_import_graph_has_no_cycle():
    g = import_graph()
    assert set(g) >= {'configs', 'runtime', 'checkpoint', 'media', 'train', 'inference'}, sorted(g)
    assert find_cycle(g) is None, f"import cycle: {' -> '.join(find_cycle(g))}"


def test_layers():
    "Training and inference share configs, checkpoints, runtime and media; neither imports the other."
    g = import_graph()
    assert 'inference' not in g['train'] and 'train' not in g['inference']
    for m in ('configs', 'checkpoint', 'media', 'runtime'): assert m in g['inference'] and m in g['train'], (m, g)
    for m in ('configs', 'checkpoint', 'media', 'runtime'):        # the shared layer depends on no pipeline stage above it
        assert not {'train', 'inference', 'speed', 'ablation', 'metrics', 'viz', 'cli'} & set(g[m]), (m, g[m])


def test_no_private_names_across_modules():
    bad = [f'{m} imports {n} from {t}' for m in MODULES for t, n in package_imports(m) if n and n.startswith('_')]
    assert not bad, bad


def test_inference_loads_neither_fastai_nor_training():
    "`import fundus2video.inference` (what `generate` needs) loads no fastai, no training code, no extra torch.distributed."
    code = ("import sys, json; import torch; before = set(sys.modules); import fundus2video.inference; "
            "print(json.dumps(sorted(set(sys.modules) - before)))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    new = json.loads(r.stdout.strip().splitlines()[-1])
    assert 'fundus2video.inference' in new
    heavy = [m for m in new if m.split('.')[0] == 'fastai' or m.startswith(('torch.distributed', 'torch.nn.parallel'))
             or m in ('fundus2video.train', 'fundus2video.speed', 'fundus2video.ablation')]
    assert not heavy, heavy[:20]
