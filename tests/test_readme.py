"""README.md and LABS.md are written by hand; these checks keep them in step with nbs/ and with nbdev.

nbdev 2 renders README.md from `readme_nb` (index.ipynb when unset) in `nbdev_readme`, which `nbdev_prepare`
and `nbdev_docs` call: settings.ini names a notebook that must never exist, so README.md cannot be
overwritten. The README's notebook table and the lab guide must name every notebook, and only real ones.
"""
import re, shutil, subprocess
from pathlib import Path
from nbdev.config import get_config

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted(p.name for p in (ROOT/'nbs').glob('*.ipynb') if not p.name.startswith('_'))


def test_readme_is_not_rendered_from_a_notebook():
    cfg = get_config(path=ROOT)
    assert not (ROOT/cfg.nbs_path/cfg.readme_nb).exists(), \
        f'settings.ini names {cfg.readme_nb} as readme_nb: nbdev_readme would overwrite the hand-written README.md'


def test_nbdev_prepare_leaves_readme_alone(tmp_path):
    "The README step of nbdev_prepare / nbdev_docs (`nbdev_readme --chk_time`), run on a copy, keeps README.md byte for byte."
    for f in ('settings.ini', 'README.md'): shutil.copyfile(ROOT/f, tmp_path/f)
    shutil.copytree(ROOT/'nbs', tmp_path/'nbs', ignore=shutil.ignore_patterns('_*', '.ipynb_checkpoints'))
    r = subprocess.run(['nbdev_readme', '--chk_time'], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert (tmp_path/'README.md').read_bytes() == (ROOT/'README.md').read_bytes(), r.stdout + r.stderr
    assert 'Could not find' in r.stdout, r.stdout + r.stderr


def _named_notebooks(text:str) -> set:
    return set(re.findall(r'nbs/([\w.-]+\.ipynb)', text))


def test_readme_table_lists_every_notebook():
    readme = (ROOT/'README.md').read_text(encoding='utf-8')
    rows = set(re.findall(r'^\| `nbs/([\w.-]+\.ipynb)` \|', readme, flags=re.M))
    assert not set(NOTEBOOKS) - rows, f'README.md\'s notebook table lacks {sorted(set(NOTEBOOKS) - rows)}'
    assert not _named_notebooks(readme) - set(NOTEBOOKS), f'README.md names missing notebooks {sorted(_named_notebooks(readme) - set(NOTEBOOKS))}'


def test_lab_guide_names_real_notebooks_and_the_readme_links_it():
    guide = (ROOT/'LABS.md').read_text(encoding='utf-8')
    named = _named_notebooks(guide)
    assert named and not named - set(NOTEBOOKS), f'LABS.md names missing notebooks {sorted(named - set(NOTEBOOKS))}'
    assert '](LABS.md)' in (ROOT/'README.md').read_text(encoding='utf-8'), 'README.md does not link the lab guide'
    for path in re.findall(r'`((?:tools|tests)/[\w/.-]+\.py)`', guide): assert (ROOT/path).exists(), path
