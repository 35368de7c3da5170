"""Time the notebooks as a student's JupyterLab runs them: a fresh kernel each, cells in order, wall time per cell.

    python tools/time_notebooks.py nbs/index.ipynb nbs/02_knowledge_mask.ipynb          # skips #| slow and #| cuda cells
    python tools/time_notebooks.py nbs/index.ipynb --run slow --json times.json         # the slow cells too

The notebooks are read, never written. Each runs in its own folder (as JupyterLab starts a kernel there) with
this checkout first on the Python path. It prints each notebook's total, its slowest cells and what was skipped;
the lab guide (LABS.md) quotes these figures, so a teacher can measure their own machine the same way.
"""
from __future__ import annotations
import argparse, json, os, re, time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def flags(src:str) -> set:
    "The nbdev flags of a cell (`#| slow`, `#| cuda`, `#| eval: false` as 'eval:false')."
    out = set()
    for line in src.splitlines():
        m = re.match(r'\s*#\|\s*(.+)', line)
        if not m: break
        out |= {re.sub(r'\s+', '', m.group(1))} | set(m.group(1).split())
    return out


def cpu_seconds(pid:int) -> float|None:
    "CPU time (user + system, its finished children included) of a process, from /proc; None where there is no /proc."
    try: fields = Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()
    except OSError: return None
    return sum(int(x) for x in fields[11:15]) / os.sysconf('SC_CLK_TCK')


def peak_memory_gib(pid:int) -> float|None:
    "Peak resident memory of a process so far (VmHWM), from /proc; None where there is no /proc."
    try: line = next(l for l in Path(f'/proc/{pid}/status').read_text().splitlines() if l.startswith('VmHWM:'))
    except (OSError, StopIteration): return None
    return int(line.split()[1]) / 2**20


def time_notebook(path, run_flags=(), timeout=1800) -> dict:
    """Execute a copy of the notebook in a fresh kernel: {'total': wall s, 'cpu': kernel CPU s, 'peak_gib': the kernel's
    peak memory, 'cells': [(index, wall s, CPU s, first line)], 'skipped': [...]}. CPU seconds depend less than wall
    time on what else the machine runs."""
    import nbformat
    from nbclient import NotebookClient
    path = Path(path)
    nb = nbformat.read(path, 4)
    os.environ['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p])
    client = NotebookClient(nb, timeout=timeout, kernel_name='python3', resources={'metadata': {'path': str(path.parent)}})
    cells, skipped, t_start = [], [], time.perf_counter()
    with client.setup_kernel():
        pid = client.km.provisioner.pid
        cpu_start = cpu_seconds(pid)
        for i, cell in enumerate(nb.cells):
            if cell.cell_type != 'code': continue
            f = flags(cell.source)
            first = next((l for l in cell.source.splitlines() if not l.startswith('#|')), '')[:70]
            if 'eval:false' in f or ({'slow', 'cuda'} & f) - set(run_flags): skipped.append((i, sorted(f), first)); continue
            t0, c0 = time.perf_counter(), cpu_seconds(pid)
            client.execute_cell(cell, i)
            c1 = cpu_seconds(pid)
            cells.append((i, time.perf_counter() - t0, None if c0 is None else c1 - c0, first))
        cpu = None if cpu_start is None else cpu_seconds(pid) - cpu_start
        memory = peak_memory_gib(pid)
    return dict(notebook=path.name, total=time.perf_counter() - t_start, cpu=cpu, peak_gib=memory, cells=cells, skipped=skipped,
                load=os.getloadavg()[0], date=time.strftime('%Y-%m-%d %H:%M'))


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('notebooks', nargs='+', type=Path)
    p.add_argument('--run', nargs='*', default=[], choices=['slow', 'cuda'], help='also run cells with these flags')
    p.add_argument('--top', type=int, default=3, help='how many of the slowest cells to print')
    p.add_argument('--json', type=Path, help='write every timing here')
    a = p.parse_args(argv)
    for nb in a.notebooks:
        if not nb.is_file(): p.error(f'{nb}: no such notebook')
    results = []
    for nb in a.notebooks:
        r = time_notebook(nb, a.run); results.append(r)
        slow = ', '.join(f'cell {i} {s:.0f} s ({src!r})' for i, s, _, src in sorted(r['cells'], key=lambda c: -c[1])[:a.top])
        cpu = ('' if r['cpu'] is None else f", {r['cpu']:.0f} CPU s") + ('' if r['peak_gib'] is None else f", peak {r['peak_gib']:.1f} GiB")
        print(f"{r['notebook']}: {r['total']:.0f} s{cpu} for {len(r['cells'])} cells (load {r['load']:.1f}); slowest: {slow}"
              + (f"; skipped {len(r['skipped'])}: " + ', '.join(f'cell {i} {fl}' for i, fl, _ in r['skipped']) if r['skipped'] else ''),
              flush=True)
    if a.json: a.json.write_text(json.dumps(results, indent=1))


if __name__ == '__main__': main()
