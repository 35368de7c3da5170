"""tools/time_notebooks.py, which times the notebooks for the lab guide: it runs code cells in a fresh kernel,
steps over flagged cells unless asked, and never writes the notebook."""
import importlib.util, subprocess, sys
from pathlib import Path
import nbformat
from nbformat.v4 import new_notebook, new_code_cell, new_markdown_cell

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('time_notebooks', ROOT/'tools'/'time_notebooks.py')
tn = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(tn)


def test_times_cells_and_steps_over_flagged_ones(tmp_path):
    nb = tmp_path/'toy.ipynb'
    nbformat.write(new_notebook(cells=[new_markdown_cell('# toy'), new_code_cell('import time; time.sleep(0.3)'),
                                       new_code_cell('#| slow\nraise RuntimeError("slow cell ran")'),
                                       new_code_cell('#| eval: false\nraise RuntimeError("never")'), new_code_cell('x = 1')],
                                metadata={'kernelspec': {'name': 'python3', 'language': 'python', 'display_name': 'python3'}}), nb)
    before = nb.read_bytes()
    r = tn.time_notebook(nb)
    assert [c[0] for c in r['cells']] == [1, 4] and r['cells'][0][1] >= 0.3
    assert [s[0] for s in r['skipped']] == [2, 3] and r['total'] >= r['cells'][0][1]
    assert nb.read_bytes() == before
    assert tn.flags('#| eval: false\nx') >= {'eval:false'} and tn.flags('x = 1\n#| slow') == set()
    p = subprocess.run([sys.executable, str(ROOT/'tools'/'time_notebooks.py'), str(tmp_path/'nope.ipynb')], capture_output=True, text=True)
    assert p.returncode == 2 and 'nope.ipynb: no such notebook' in p.stderr
