"""The graded exercises: nbgrader makes the student version; the untouched student version fails the checks of
each code exercise and passes them all once every solution is put back. Flagged slow (minutes: one notebook run
per exercise): the instructor version passes every check, and each exercise's checks pass once its own solution
is put back (and only its own).

The notebooks in nbs/ are the instructor versions and also run as ordinary tests (test_notebooks.py). Each
autograded version is one full run of its notebook, so the default suite grades two versions of each notebook
(8 runs, about 5 minutes on two cores) and `--run-slow` the other 13.
"""
import hashlib, importlib.util, json, re, subprocess, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location('student_version', ROOT/'tools'/'student_version.py')
sv = importlib.util.module_from_spec(_spec); _spec.loader.exec_module(sv)
NOTEBOOKS = sv.exercise_notebooks()
MARKERS = {'BEGIN SOLUTION': 'solution', 'END SOLUTION': 'solution', 'BEGIN HIDDEN TESTS': 'grade', 'END HIDDEN TESTS': 'grade'}


def _digest(p): return hashlib.sha256(Path(p).read_bytes()).hexdigest()


def test_exercises_exist():
    for core in ('02_knowledge_mask', '05_patchnce', '07_rollout', '09_metrics'):   # the knowledge mask, PatchNCE, the rollout, a metric
        assert ROOT/'nbs'/f'{core}.ipynb' in NOTEBOOKS, f'{core} has no exercises'
    for nb in NOTEBOOKS:
        code = sv.code_exercises(nb)
        assert 2 <= len(code) <= 4, f'{nb.name}: {len(code)} code exercises'
        for sol, checks in code.items():
            for g in checks: assert sv.grader_cells(nb)[g]['metadata']['nbgrader']['points'] > 0


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_nbgrader_metadata_is_valid(nb, require):
    "nbgrader's own validator accepts the cell metadata; its markers appear only in cells of the right kind."
    require(importlib.util.find_spec('nbgrader'), 'nbgrader is not installed (pip install -e ".[dev]")')
    import nbformat
    from nbgrader.nbgraderformat import MetadataValidator
    MetadataValidator().validate_nb(nbformat.read(nb, 4))
    ids = [c['metadata']['nbgrader']['grade_id'] for c in json.loads(nb.read_text())['cells'] if 'nbgrader' in c['metadata']]
    assert len(ids) == len(set(ids)), 'grade ids must be unique'
    for c in json.loads(nb.read_text())['cells']:
        g = c['metadata'].get('nbgrader', {})
        for marker, kind in MARKERS.items():   # nbgrader finds a marker anywhere in a line, prose included
            if marker in ''.join(c['source']): assert g.get(kind), f'{marker!r} outside an nbgrader {kind} cell: {"".join(c["source"])[:80]!r}'


@pytest.fixture(scope='module')
def graded(tmp_path_factory, require):
    "Release every exercise notebook with nbgrader, then autograde the untouched student version and the one with every solution put back."
    require(importlib.util.find_spec('nbgrader'), 'nbgrader is not installed (pip install -e ".[dev]")')
    tmp = tmp_path_factory.mktemp('labs')
    before = {nb: _digest(nb) for nb in NOTEBOOKS}
    students = sv.release(NOTEBOOKS, tmp/'student', course=tmp/'course')
    out = {}
    for nb, student in zip(NOTEBOOKS, students):
        subs = {'untouched': student, 'all_back': sv.put_back_solutions(student, nb)}
        out[nb] = dict(student=student, scores=sv.autograde(tmp/'course', nb, subs))
    assert before == {nb: _digest(nb) for nb in NOTEBOOKS}, 'making the student version changed an instructor notebook'
    return out


@pytest.fixture(scope='module')
def graded_each(tmp_path_factory, require):
    "In a course of its own (autograde regrades every submission in the course): the instructor version, and the student version with each solution put back alone."
    require(importlib.util.find_spec('nbgrader'), 'nbgrader is not installed (pip install -e ".[dev]")')
    tmp = tmp_path_factory.mktemp('labs_each')
    out = {}
    for nb, student in zip(NOTEBOOKS, sv.release(NOTEBOOKS, tmp/'student', course=tmp/'course')):
        subs = {'instructor': nb, **{f'only_{sol}': sv.put_back_solutions(student, nb, [sol]) for sol in sv.code_exercises(nb)}}
        out[nb] = sv.autograde(tmp/'course', nb, subs)
    return out


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_student_version_hides_solutions(nb, graded):
    student = json.loads(Path(graded[nb]['student']).read_text())
    text = '\n'.join(''.join(c['source']) for c in student['cells'])
    for marker in MARKERS: assert marker not in text
    assert not any(c.get('outputs') for c in student['cells']), 'the student version has saved outputs'
    solved = sv.grader_cells(nb)
    for gid, cell in sv.grader_cells(student).items():
        g = cell['metadata']['nbgrader']
        if g['solution'] and cell['cell_type'] == 'code': assert all(l in ''.join(cell['source']) for l in sv.STUB.split('\n')), gid
        if g['solution'] and cell['cell_type'] == 'markdown': assert ''.join(cell['source']) == sv.TEXT_STUB, gid
        for region in re.findall(r'BEGIN (?:SOLUTION|HIDDEN TESTS)\n(.*?)\n[ \t]*### END', ''.join(solved[gid]['source']), re.S):
            for line in region.splitlines():
                assert line.strip() not in ''.join(cell['source']), f'{gid}: {line.strip()!r} leaked into the student version'


def _auto(nb, grades):
    "The scores of the autograded check cells: {check grade_id: (score, max)}."
    checks = sum(sv.code_exercises(nb).values(), [])
    return {g: s for g, s in grades.items() if g in checks}


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_untouched_student_version_fails_each_code_exercise(nb, graded):
    auto = _auto(nb, graded[nb]['scores']['untouched'])
    assert len(auto) == len(sum(sv.code_exercises(nb).values(), [])) and all(s == 0 for s, _ in auto.values()), auto


@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_every_solution_put_back_passes_every_check(nb, graded):
    auto = _auto(nb, graded[nb]['scores']['all_back'])
    assert len(auto) == len(sum(sv.code_exercises(nb).values(), [])) and all(s == m > 0 for s, m in auto.values()), auto


@pytest.mark.slow
@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_instructor_version_passes_every_check(nb, graded_each):
    auto = _auto(nb, graded_each[nb]['instructor'])
    assert auto and all(s == m > 0 for s, m in auto.values()), auto


@pytest.mark.slow
@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_each_solution_put_back_passes_only_its_own_checks(nb, graded_each):
    for sol, checks in sv.code_exercises(nb).items():
        auto = _auto(nb, graded_each[nb][f'only_{sol}'])
        assert all(auto[g][0] == auto[g][1] for g in checks), (sol, auto)
        assert all(s == 0 for g, (s, _) in auto.items() if g not in checks), (sol, auto)


def test_student_version_command_guards_its_inputs(tmp_path):
    "The command refuses to write into the instructor folder and names a missing notebook."
    run = lambda *a: subprocess.run([sys.executable, str(ROOT/'tools'/'student_version.py'), *map(str, a)],
                                    capture_output=True, text=True, cwd=ROOT)
    r = run('--out', ROOT/'nbs')
    assert r.returncode != 0 and 'holds the instructor notebooks' in r.stderr + r.stdout
    r = run(tmp_path/'missing.ipynb', '--out', tmp_path/'student')
    assert r.returncode == 2 and 'missing.ipynb: no such notebook' in r.stderr and not (tmp_path/'student').exists()
