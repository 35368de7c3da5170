"""The `fundus2video` command as a user runs it: the installed entry point, in a subprocess."""
import csv
import numpy as np
import pytest
from fundus2video.data import load_study, read_image, StudySet
from fundus2video.knowledge_mask import study_knowledge_mask


def test_help_lists_the_subcommands(cli):
    out = cli('--help').stdout
    for word in ['phantom', 'mask', 'examples:', 'colour fundus']: assert word in out
    assert 'OUT_DIR' in cli('phantom', '--help').stdout
    assert '--threshold' in cli('mask', '--help').stdout


def test_version(cli):
    import fundus2video
    assert fundus2video.__version__ in cli('--version').stdout


@pytest.fixture(scope='module')
def phantoms(tmp_path_factory):
    import subprocess
    out = tmp_path_factory.mktemp('cli')/'phantoms'
    r = subprocess.run(['fundus2video', 'phantom', str(out), '--n', '4', '--size', '96', '--frames', '6', '--seed', '3'],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    return out, r


def test_phantom_writes_studies_and_manifest(phantoms):
    out, r = phantoms
    assert 'wrote 4' in r.stdout and str(out) in r.stdout
    rows = list(csv.DictReader(open(out/'manifest.csv')))
    assert len(rows) == 4 and {x['split'] for x in rows} == {'train', 'valid', 'test'}
    s = load_study(out/rows[0]['study'])
    assert s.cf.shape == (96, 96, 3) and s.frames.shape == (6, 96, 96)
    assert {'leakage', 'artery', 'vein'} <= set(s.lesions)
    assert not np.isnan(s.times).any() and s.phases[0] == 'arterial' and s.phases[-1] == 'late'


def test_phantom_with_a_held_out_test_set(tmp_path, cli):
    "--n-test K: the N studies are train/valid, K more from seed 1000 are the test split, apart from the training seeds."
    r = cli('phantom', tmp_path/'d', '--n', '5', '--n-test', '2', '--size', '64', '--frames', '4')
    rows = list(csv.DictReader(open(tmp_path/'d'/'manifest.csv')))
    assert [x['split'] for x in rows] == ['train'] * 3 + ['valid'] * 2 + ['test'] * 2, rows
    assert [x['study'] for x in rows if x['split'] == 'test'] == ['phantom_1000', 'phantom_1001']
    assert 'wrote 7' in r.stdout
    bad = cli('phantom', tmp_path/'e', '--n', '2', '--n-test', '2', check=False)
    assert bad.returncode == 2 and '--n >= 3' in bad.stderr


def test_phantom_is_deterministic(phantoms, tmp_path, cli):
    out, _ = phantoms
    cli('phantom', tmp_path, '--n', '1', '--size', '96', '--frames', '6', '--seed', '3')
    a, b = load_study(out/'phantom_0003'), load_study(tmp_path/'phantom_0003')
    assert np.array_equal(a.cf, b.cf) and np.array_equal(a.frames, b.frames)


def test_mask_of_a_study_matches_the_library(phantoms, tmp_path, cli):
    out, _ = phantoms
    study = out/'phantom_0003'
    r = cli('mask', study, '-o', tmp_path/'km.png', '--overlay', tmp_path/'ov.png', '--threshold', '30')
    km = read_image(tmp_path/'km.png', 'grey') > 127
    assert np.array_equal(km, study_knowledge_mask(load_study(study), threshold=30, use_fov=True))
    assert read_image(tmp_path/'ov.png').shape == (96, 96, 3)
    assert 'knowledge mask' in r.stdout and 'Dice with dynamic' in r.stdout


def test_mask_of_a_data_folder_writes_a_sheet(phantoms, tmp_path, cli):
    out, _ = phantoms
    r = cli('mask', out, '-o', tmp_path/'sheet.png')
    sheet = read_image(tmp_path/'sheet.png')
    assert sheet.shape == (4 * 160, 4 * 160, 3)                 # 4 studies x 4 tiles of 160 px
    assert r.stdout.count('knowledge mask') == 4


def test_bad_input_is_one_clear_line(tmp_path, cli):
    (tmp_path/'eye'/'ffa').mkdir(parents=True)
    r = cli('mask', tmp_path/'eye', '-o', tmp_path/'km.png', check=False)
    assert r.returncode == 2 and 'Traceback' not in r.stderr
    assert 'eye: no colour fundus photo' in r.stderr
    r = cli('phantom', tmp_path/'x', '--n', '0', check=False)
    assert r.returncode == 2 and 'argument --n: must be from 1' in r.stderr and r.stderr.count('\n') == 1


def test_phantom_cohort_and_motion(tmp_path, cli):
    "By default a mixed cohort of registered eyes (grades printed, cohort.png written); --preset picks one grade; --motion makes frames drift."
    import json
    r = cli('phantom', tmp_path/'c', '--n', '12', '--size', '64', '--frames', '4')
    grades = [json.load(open(p/'meta.json'))['grade'] for p in sorted((tmp_path/'c').glob('phantom_*'))]
    assert len(set(grades)) >= 2 and (tmp_path/'c'/'cohort.png').exists(), grades
    assert all(f'{grades.count(g)} {g}' in r.stdout for g in set(grades)) and 'registered' in r.stdout
    metas = [json.load(open(p/'meta.json')) for p in sorted((tmp_path/'c').glob('phantom_*'))]
    assert all(m['dx'] == m['dy'] == m['rotation'] == 0 for meta in metas for m in meta['motion'])
    cli('phantom', tmp_path/'m', '--n', '2', '--size', '64', '--frames', '4', '--preset', 'healthy', '--motion')
    metas = [json.load(open(p/'meta.json')) for p in sorted((tmp_path/'m').glob('phantom_*'))]
    assert all(m['grade'] == 'healthy' for m in metas) and any(x['dx'] != 0 for m in metas for x in m['motion'])
