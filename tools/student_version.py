"""Student versions of the workbook's exercises, made by nbgrader itself; and autograding of submissions.

    python tools/student_version.py --out student/              # every notebook in nbs/ with exercises
    python tools/student_version.py nbs/02_knowledge_mask.ipynb --out student/ --course course/ --check

The notebooks in nbs/ are the instructor versions: exercise cells carry nbgrader's cell metadata and its
markup (`### BEGIN SOLUTION` ... `### END SOLUTION`, `### BEGIN HIDDEN TESTS` ... `### END HIDDEN TESTS`).
This script lays them out as an nbgrader course (`source/<notebook>/<notebook>.ipynb`, one assignment per
notebook), runs `nbgrader generate_assignment` on it (ClearSolutions, ClearHiddenTests, ClearOutput,
LockCells, checksums, gradebook), and copies the released notebooks to `--out`. `--course DIR` keeps the
course folder (gradebook included) for `nbgrader autograde` and the formgrader; `--check` autogrades the
untouched student version and the instructor version there and prints their scores.
"""
from __future__ import annotations
import argparse, json, os, re, shutil, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUB = '# YOUR CODE HERE\nraise NotImplementedError()'   # nbgrader's ClearSolutions code stub for Python
TEXT_STUB = 'YOUR ANSWER HERE'                            # and its stub for written answers


def _read(nb):
    "A notebook as a dict (from a path or a dict)."
    return json.loads(Path(nb).read_text(encoding='utf-8')) if isinstance(nb, (str, Path)) else nb


def _src(cell) -> str: return ''.join(cell['source']) if isinstance(cell['source'], list) else cell['source']


def grader_cells(nb) -> dict:
    "grade_id -> cell for every cell of `nb` (path or dict) with nbgrader metadata."
    return {c['metadata']['nbgrader']['grade_id']: c for c in _read(nb)['cells'] if 'nbgrader' in c.get('metadata', {})}


def exercise_notebooks(nbs=ROOT/'nbs') -> list:
    "The notebooks in `nbs` (not starting with `_`) that have exercises, i.e. nbgrader cells."
    return [p for p in sorted(Path(nbs).glob('*.ipynb')) if not p.name.startswith('_') and grader_cells(p)]


def code_exercises(nb) -> dict:
    "solution grade_id -> the grade ids of the autograded check cells that follow it (up to the next solution)."
    out, current = {}, None
    for gid, c in grader_cells(nb).items():
        g = c['metadata']['nbgrader']
        if g.get('solution') and c['cell_type'] == 'code': current = gid; out[gid] = []
        elif g.get('grade') and c['cell_type'] == 'code' and current: out[current].append(gid)
    return {k: v for k, v in out.items() if v}


def _nbgrader(course:Path, *args, env=None) -> str:
    "Run `nbgrader ARGS` in the course folder; its output, or an error that shows it."
    r = subprocess.run([sys.executable, '-m', 'nbgrader', *args], cwd=course, capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"nbgrader {' '.join(args)} failed ({r.returncode}) in {course}:\n{r.stdout[-3000:]}{r.stderr[-3000:]}")
    return r.stdout + r.stderr


def _env() -> dict:
    "The environment for nbgrader's kernels: this checkout's package first on the path."
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join([str(ROOT)] + [p for p in env.get('PYTHONPATH', '').split(os.pathsep) if p])
    return env


def make_course(course, notebooks) -> Path:
    "An nbgrader course folder with one assignment per notebook, named after it: source/<stem>/<name>."
    try: import nbgrader  # noqa: F401
    except ImportError: raise SystemExit("nbgrader is not installed: pip install -e '.[dev]' (it needs Python 3.11+)")
    course = Path(course); course.mkdir(parents=True, exist_ok=True)
    db = (course/'gradebook.db').resolve()
    (course/'nbgrader_config.py').write_text(
        "c = get_config()\nc.CourseDirectory.course_id = 'fundus2video'\n"
        f"c.CourseDirectory.db_url = 'sqlite:///{db}'\nc.Execute.timeout = 300\n", encoding='utf-8')
    for nb in map(Path, notebooks):
        if not grader_cells(nb): raise SystemExit(f"{nb}: no exercises (no cell has nbgrader metadata)")
        (course/'source'/nb.stem).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(nb, course/'source'/nb.stem/nb.name)
    return course


def release(notebooks, out, course=None) -> list:
    "Student versions of `notebooks` in `out` via `nbgrader generate_assignment`; returns their paths."
    notebooks, out = [Path(n).resolve() for n in notebooks], Path(out).resolve()
    if any(out == n.parent for n in notebooks): raise SystemExit(f"--out {out} holds the instructor notebooks: choose another folder")
    with tempfile.TemporaryDirectory() as tmp:
        course = make_course(course or tmp, notebooks)
        out.mkdir(parents=True, exist_ok=True)
        written = []
        for nb in notebooks:
            _nbgrader(course, 'generate_assignment', nb.stem, '--force', env=_env())
            shutil.copyfile(course/'release'/nb.stem/nb.name, out/nb.name)   # copyfile: the student's copy stays writable
            written.append(out/nb.name)
        return written


def put_back_solutions(student, instructor, grade_ids=None) -> dict:
    "The student notebook with the instructor's solutions restored in the cells `grade_ids` (default: all)."
    nb, solved = json.loads(json.dumps(_read(student))), grader_cells(instructor)
    for c in nb['cells']:
        gid = c.get('metadata', {}).get('nbgrader', {}).get('grade_id')
        if gid is None or (grade_ids is not None and gid not in grade_ids) or not c['metadata']['nbgrader'].get('solution'): continue
        src, ref = _src(c), _src(solved[gid])
        if c['cell_type'] == 'markdown': c['source'] = src.replace(TEXT_STUB, ref); continue
        regions = re.findall(r'^([ \t]*)### BEGIN SOLUTION\n(.*?)^[ \t]*### END SOLUTION\n?', ref, flags=re.M | re.S)
        for indent, body in regions:
            stub = '\n'.join(indent + line for line in STUB.split('\n'))
            if stub not in src: raise ValueError(f"cell {gid}: no `{STUB.splitlines()[0]}` stub left to fill")
            src = src.replace(stub, body.rstrip('\n'), 1)
        c['source'] = src
    return nb


def autograde(course, notebook, submissions:dict) -> dict:
    "Autograde `submissions` {student: notebook path or dict} of one assignment: {student: {grade_id: (score, max)}}."
    from nbgrader.api import Gradebook
    course, name = Path(course), Path(notebook).name
    stem = Path(name).stem
    for student, sub in submissions.items():
        dest = course/'submitted'/student/stem/name
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(json.dumps(_read(sub), indent=1), encoding='utf-8')
        _nbgrader(course, 'db', 'student', 'add', student)
    _nbgrader(course, 'autograde', stem, '--force', env=_env())
    with Gradebook(f"sqlite:///{(course/'gradebook.db').resolve()}") as gb:
        return {s: {g.name: (g.score, g.max_score) for g in gb.find_submission_notebook(stem, stem, s).grades}
                for s in submissions}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('notebooks', nargs='*', type=Path, help='instructor notebooks (default: every notebook in nbs/ with exercises)')
    p.add_argument('--out', type=Path, required=True, help='folder for the student notebooks')
    p.add_argument('--course', type=Path, help='keep the nbgrader course folder (source, release, gradebook) here')
    p.add_argument('--check', action='store_true', help='autograde the untouched student and the instructor versions and print the scores')
    a = p.parse_args(argv)
    for nb in a.notebooks:
        if not nb.is_file(): p.error(f"{nb}: no such notebook")
    notebooks = a.notebooks or exercise_notebooks()
    if not notebooks: p.error('no notebook with exercises found in nbs/')
    with tempfile.TemporaryDirectory() as tmp:
        course = a.course or Path(tmp)
        for f in release(notebooks, a.out, course): print(f'wrote {f}')
        for nb in notebooks if a.check else []:
            scores = autograde(course, nb, {'untouched': a.out/nb.name, 'instructor': nb})
            for student, grades in scores.items():
                auto = {g: s for g, s in grades.items() if g in sum(code_exercises(nb).values(), [])}
                print(f"{nb.stem} {student:>10}: " + ', '.join(f'{g} {s[0]:g}/{s[1]:g}' for g, s in auto.items()))
    if a.course: print(f'nbgrader course folder: {a.course} (run `nbgrader autograde NOTEBOOK` there)')


if __name__ == '__main__': main()
