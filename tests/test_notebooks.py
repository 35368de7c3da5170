"""Every notebook in nbs/ is a test: its cells run top to bottom through nbdev's own runner.

Cells flagged with a test flag of settings.ini (`#| slow`, `#| cuda`) are skipped unless enabled
(see conftest.py); `#| eval: false` cells never run. Notebooks whose name starts with `_` are not tests.
Each notebook runs in a fresh Python process, like a fresh kernel (and like `nbdev_test`), so no notebook
depends on what another one imported or patched.
"""
import subprocess, sys
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 4, NOTEBOOKS


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook(nb, nb_flags):
    tst_flags = set(str(get_config(path=ROOT).tst_flags or '').split('|')) - {''}
    code = ('import sys; from pathlib import Path; from nbdev.test import test_nb; '
            f'ok, _ = test_nb(Path({str(nb)!r}), skip_flags={sorted(tst_flags - nb_flags)!r}); sys.exit(0 if ok else 1)')
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, timeout=1200)
    assert r.returncode == 0, f'{nb.name} failed:\n{r.stderr[-6000:]}'


def test_flagged_cells_are_skipped_by_default(tmp_path, nb_flags):
    "A cell flagged slow/cuda must not run unless enabled; an unflagged failing cell must fail the notebook."
    import nbformat
    from nbformat.v4 import new_notebook, new_code_cell
    def nb(*cells):
        fn = tmp_path/f'nb{len(list(tmp_path.iterdir()))}.ipynb'
        nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), fn); return fn
    tst_flags = set(str(get_config(path=ROOT).tst_flags).split('|'))
    assert {'slow', 'cuda'} <= tst_flags
    skip = sorted(tst_flags - nb_flags)
    if 'slow' not in nb_flags:
        assert run_notebook(nb('x = 1', '#| slow\nassert False'), skip_flags=skip, showerr=False)[0]
    assert run_notebook(nb('#| eval: false\nassert False'), skip_flags=skip, showerr=False)[0]
    assert not run_notebook(nb('assert False'), skip_flags=skip, showerr=False)[0]
