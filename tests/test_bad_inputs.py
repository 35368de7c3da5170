"""Bad input walked through the real `fundus2video` command, as a careless or hostile user types it.

For each case of the table: the exit status, exactly one line on stderr that names the file or the argument,
no traceback, no false "wrote"/"done", and every input file byte-identical afterwards. Tiny inputs (64 px
phantoms, the shipped demo model), so the whole table runs in the default suite.
"""
import hashlib, json, os, pathlib, re, shlex, shutil, signal, struct, subprocess, sys, time, zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
import numpy as np
import pytest
from fundus2video.data import write_image
from fundus2video.phantom import write_phantoms, preset_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT/'fundus2video'/'assets'/'demo_model.pt'


def fundus2video(*args, cwd, env=None, timeout=120):
    return subprocess.run(['fundus2video', *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={**os.environ, **(env or {})}, timeout=timeout)


def png_header(w, h) -> bytes:
    "The start of a PNG claiming w x h pixels: signature, header chunk and a short data chunk (no real pixels)."
    def chunk(kind, data): return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 2, 0, 0, 0)) + chunk(b'IDAT', zlib.compress(bytes(100)))


class Crafted:
    "Unpickling this creates a file: what a hostile weights file can do if it is ever unpickled."
    def __init__(self, target): self.target = target
    def __reduce__(self): return (pathlib.Path.touch, (self.target,))


def _broken_copy(src: Path, dst: Path, **files):
    "A copy of a study or data folder with some files replaced (name -> bytes)."
    shutil.copytree(src, dst)
    for name, data in files.items(): (dst/name).write_bytes(data)


@pytest.fixture(scope='module')
def ws(tmp_path_factory):
    "The inputs: a phantom data folder, broken copies of it, photos good and bad, a checkpoint, weights files."
    import torch, torch.nn as nn, warnings
    from skimage.data import retina
    w = tmp_path_factory.mktemp('bad_inputs')
    write_phantoms(w/'data', 3, preset_config('moderate', size=64, n_frames=4), seed=0)
    study = w/'data'/'phantom_0000'
    photo = retina()[::8, ::8]
    write_image(w/'photo.png', photo)
    from PIL import Image
    Image.fromarray(photo).save(w/'photo.gif')
    write_image(w/'frames'/'frame_0000.png', photo)
    write_image(w/'tiny.png', np.full((1, 1, 3), 200, np.uint8))
    write_image(w/'white.png', np.full((64, 64, 3), 255, np.uint8))
    write_image(w/'grey.png', np.repeat(photo.mean(2, keepdims=True).astype(np.uint8), 3, 2))
    (w/'huge.png').write_bytes(png_header(20000, 20000))
    (w/'notes.txt').write_text('a file, not a folder\n')
    (w/'outdir').mkdir()
    shutil.copy(DEMO, w/'ck.pt')
    (w/'run'/'checkpoints').mkdir(parents=True); shutil.copy(DEMO, w/'run'/'checkpoints'/'epoch_0001.pt')
    if Path('/dev/full').exists(): (w/'full.png').symlink_to('/dev/full')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)                    # torch.jit.script is deprecated
        torch.jit.save(torch.jit.script(nn.Linear(2, 2)), w/'scripted.pt')
    torch.save({'w': Crafted(w/'pwned')}, w/'crafted.pt')
    (w/'garbage.pt').write_bytes(b'not weights at all' * 20)
    rows = 'study,patient,split\n'
    _broken_copy(w/'data', w/'abs_manifest', **{'manifest.csv': f'{rows}{study},P0,train\n'.encode()})
    _broken_copy(w/'data', w/'dotdot_manifest', **{'manifest.csv': f'{rows}../data/phantom_0000,P0,train\n'.encode()})
    _broken_copy(w/'data', w/'binary_manifest', **{'manifest.csv': b'PK\x03\x04' + bytes(range(256)) * 4})
    _broken_copy(study, w/'binary_frames', **{'frames.csv': bytes(range(256)) * 4})
    _broken_copy(study, w/'list_meta', **{'meta.json': b'["phantom_0000"]'})
    _broken_copy(w/'data', w/'mixed')
    meta = json.loads((w/'mixed'/'phantom_0001'/'meta.json').read_text())
    (w/'mixed'/'phantom_0001'/'meta.json').write_text(json.dumps({**meta, 'source': 'clinic export 2024'}))
    write_run(w/'trained', w/'data', done=1, total=2)                       # a run stopped after epoch 1 of 2
    write_run(w/'finished', w/'data', done=2, total=2)
    shutil.copytree(w/'trained', w/'cut_run'); cut(w/'cut_run'/'checkpoints'/'epoch_0001.pt')
    if Path('/dev/full').exists():
        import imageio_ffmpeg                                              # ffmpeg on a disk that fills up while it writes:
        (w/'ffmpeg_full_disk').write_text(                                 # a few bytes reach the video, then every write fails
            '#!/bin/bash\nprintf partial > "${@: -1}"\n'
            f'exec {shlex.quote(imageio_ffmpeg.get_ffmpeg_exe())} "${{@:1:$#-1}}" /dev/full\n')
        (w/'ffmpeg_full_disk').chmod(0o755)
    return w


def write_run(run: Path, data: Path, done: int, total: int):
    "A run folder as training leaves it after `done` of `total` epochs (untrained weights: the counters are what matter)."
    import warnings
    from dataclasses import replace
    from fundus2video.configs import preset, with_epochs
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)                    # fastai calls torch.jit.script, now deprecated
        from fundus2video.train import Fundus2VideoGAN, WindowStepper, data_split
    from fundus2video.checkpoint import atomic_save
    cfg = preset('tiny'); cfg = with_epochs(replace(cfg, pipeline=replace(cfg.pipeline, size=64)), total)
    st = WindowStepper(Fundus2VideoGAN(cfg)); st.state.epoch = done
    atomic_save(st.checkpoint(data_split(data)), run/'checkpoints'/f'epoch_{done:04d}.pt')


def cut(path: Path):
    "Cut a file to a third, as an interrupted copy leaves it."
    path.write_bytes(path.read_bytes()[:path.stat().st_size // 3])


def snapshot(folder: Path) -> dict:
    "relative path -> sha256 of every regular file under `folder` (symlinks are not followed)."
    out = {}
    for dirpath, _, files in os.walk(folder):
        for f in files:
            p = Path(dirpath)/f
            if not p.is_symlink(): out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclass
class Case:
    args: str     # the command line after `fundus2video`
    names: str    # what the one stderr line must contain: the file or argument (and the gist)
    status: int = 2
    env: dict = None  # extra environment variables; {w} in a value is the workspace


S = 'data/phantom_0000'   # a study folder
CASES = {
    # values, at the parser
    'phantom --frames 0': Case('phantom new --frames 0', 'argument --frames: must be from 2 to 120, not 0'),
    'phantom --size 0': Case('phantom new --size 0', 'argument --size: must be from 32 to 1024, not 0'),
    'phantom --size 100000': Case('phantom new --size 100000', 'argument --size: must be from 32 to 1024, not 100000'),
    'phantom --n 0': Case('phantom new --n 0', 'argument --n: must be from 1'),
    'phantom --seed -1': Case('phantom new --seed -1', 'argument --seed: must be from 0'),
    'phantom --n-test -2': Case('phantom new --n-test -2', 'argument --n-test'),
    'generate --frames 0': Case('generate photo.png -o v.mp4 --frames 0', 'argument --frames: must be from 1 to 120, not 0'),
    'generate --frames 5000': Case('generate photo.png -o v.mp4 --frames 5000', 'argument --frames'),
    'generate --size 0': Case('generate photo.png -o v.mp4 --size 0', 'argument --size'),
    'generate --size 100000': Case('generate photo.png -o v.mp4 --size 100000', 'argument --size'),
    'generate --frames x': Case('generate photo.png -o v.mp4 --frames x', "argument --frames: 'x' is not a whole number"),
    'train --epochs 0': Case('train data --out newrun --epochs 0', 'argument --epochs: must be from 1'),
    'train --epochs -1': Case('train data --out newrun --epochs -1', 'argument --epochs'),
    'train --seed -5': Case('train data --out newrun --seed -5', 'argument --seed'),
    'mask --threshold -5': Case(f'mask {S} -o km.png --threshold -5', 'argument --threshold: must be a number from 0 to 255'),
    'mask --threshold 300': Case(f'mask {S} -o km.png --threshold 300', 'argument --threshold'),
    'mask --threshold nan': Case(f'mask {S} -o km.png --threshold nan', 'argument --threshold'),
    'mask --threshold inf': Case(f'mask {S} -o km.png --threshold inf', 'argument --threshold'),
    'mask --min-area -1': Case(f'mask {S} -o km.png --min-area -1', 'argument --min-area'),
    'evaluate --split x': Case('evaluate data -o m.json --split training', 'argument --split'),
    'bench --sizes 0': Case('bench --quick --sizes 0', 'argument --sizes'),
    'generate --device bogus': Case('generate photo.png -o v.mp4 --device bogus', "argument --device: 'bogus' is not a device"),
    'train --device cuda:x': Case('train data --out newrun --device cuda:x', 'argument --device'),
    'no -o': Case(f'mask {S}', '-o/--out'),
    # outputs that are inputs, or would change a study, a manifest, a checkpoint
    'generate photo.png -o photo.mp4': Case('generate photo.png -o photo.mp4', 'photo.png): is the input CF_IMAGE'),
    'generate --gif on a GIF': Case('generate photo.gif -o photo.mp4 --gif', 'photo.gif): is the input CF_IMAGE'),
    'generate --frames-dir over the photo': Case('generate frames/frame_0000.png -o v.mp4 --frames-dir frames',
                                                 '--frames-dir frames: would overwrite the input CF_IMAGE'),
    'generate -o over -c': Case('generate photo.png -o ck.pt -c ck.pt', "-o ck.pt: is the input -c"),
    'export CK -o CK': Case('export ck.pt -o ck.pt', '-o ck.pt: is the input CHECKPOINT'),
    'export -o ./CK': Case('export ck.pt -o ./outdir/../ck.pt', 'is the input CHECKPOINT'),
    'export -o a training checkpoint': Case('export ck.pt -o run/checkpoints/epoch_0001.pt', 'is a training checkpoint of the run'),
    'mask STUDY -o STUDY/cf.png': Case(f'mask {S} -o {S}/cf.png', 'is the colour fundus photo of the study'),
    'mask STUDY -o STUDY/ffa/new frame': Case(f'mask {S} -o {S}/ffa/0099.png', 'is inside the angiogram frames (ffa/)'),
    'mask STUDY --overlay STUDY/fov.png': Case(f'mask {S} -o km.png --overlay {S}/fov.png', 'is the field-of-view mask'),
    'mask DATA -o DATA/STUDY/cf.png': Case(f'mask data -o {S}/cf.png', 'is the colour fundus photo of the study'),
    'mask -o and --overlay the same': Case(f'mask {S} -o same.png --overlay same.png', '--overlay same.png: is also written as -o'),
    'mask DATA --overlay': Case('mask data -o sheet.png --overlay ov.png', '--overlay ov.png: needs one study folder'),
    'evaluate -o DATA/manifest.csv': Case('evaluate data -o data/manifest.csv', '-o data/manifest.csv: is the manifest'),
    'evaluate -o STUDY/meta.json': Case(f'evaluate data -o {S}/meta.json', 'is the metadata of the study'),
    'phantom into a data folder': Case('phantom data --n 2 --size 64', 'data: already holds data (manifest.csv'),
    'phantom --force over real studies': Case('phantom mixed --n 2 --size 64 --force', 'phantom_0001: is not a phantom study'),
    'train --out DATA': Case('train data --out data', '--out data: is the input DATA_DIR'),
    'train --out STUDY': Case(f'train data --out {S}', 'is the study folder'),
    # outputs the disk or the writer cannot take
    '-o a directory': Case(f'mask {S} -o outdir', '-o outdir: is a folder'),
    '-o parent is a file': Case(f'mask {S} -o notes.txt/km.png', 'notes.txt is a file, not a folder'),
    '-o no extension': Case(f'mask {S} -o km', 'cannot write a file without an extension'),
    '-o wrong image extension': Case(f'mask {S} -o km.txt', "-o km.txt: cannot write a '.txt' file"),
    'generate -o .avi': Case('generate photo.png -o v.avi', "-o v.avi: cannot write a '.avi' file; use .mp4"),
    'evaluate -o .csv': Case('evaluate data -o m.csv', "cannot write a '.csv' file; use .json"),
    'export -o .txt': Case('export ck.pt -o model.txt', "cannot write a '.txt' file; use .pt, .pth"),
    'bench --json a folder': Case('bench --quick --json outdir', '--json outdir: is a folder'),
    'phantom OUT_DIR is a file': Case('phantom notes.txt', 'OUT_DIR notes.txt: is a file, not a folder'),
    '-o /proc': Case(f'mask {S} -o /proc/fundus2video_km.png', '/proc/fundus2video_km.png'),
    # photos that are not colour fundus photos
    'generate a 1x1 photo': Case('generate tiny.png -o v.mp4', 'tiny.png: 1x1 pixels is too small'),
    'generate an all-white photo': Case('generate white.png -o v.mp4', 'white.png: the photo is blank'),
    'generate a grey photo': Case('generate grey.png -o v.mp4', 'grey.png: the colour fundus photo is greyscale'),
    'generate a 20000x20000 PNG': Case('generate huge.png -o v.mp4', 'huge.png: 20000x20000 pixels (400 MP) is more than the 50 MP'),
    'generate a missing photo': Case('generate nope.png -o v.mp4', 'nope.png: file not found'),
    'generate a folder as photo': Case('generate outdir -o v.mp4', 'outdir: a folder, not an image file'),
    # data folders and studies
    'manifest with an absolute path': Case('mask abs_manifest -o sheet.png', "manifest.csv, line 2: study '/"),
    'manifest with ..': Case('mask dotdot_manifest -o sheet.png', "manifest.csv, line 2: study '../data/phantom_0000' is not a folder inside"),
    'binary manifest.csv': Case('mask binary_manifest -o sheet.png', 'binary_manifest/manifest.csv: a binary file, not text'),
    'binary frames.csv': Case('mask binary_frames -o km.png', 'binary_frames/frames.csv: a binary file, not text'),
    'meta.json holding a list': Case('mask list_meta -o km.png', 'list_meta/meta.json: must hold a JSON object {...}, not a list'),
    # weights files: tensors only, never code
    '--i3d TorchScript': Case('evaluate data -o m.json --i3d scripted.pt', 'scripted.pt: a TorchScript file, which holds code'),
    '--i3d crafted pickle': Case('evaluate data -o m.json --i3d crafted.pt', 'crafted.pt: not a file of plain tensors'),
    '--lpips TorchScript': Case('evaluate data -o m.json --lpips scripted.pt', 'scripted.pt: a TorchScript file, which holds code'),
    '--i3d missing': Case('evaluate data -o m.json --i3d nope.pt', '--i3d nope.pt: no such file or folder'),
    '--i3d garbage': Case('evaluate data -o m.json --i3d garbage.pt', 'garbage.pt: not a file of plain tensors'),
}
CASES.update({
    # resuming a run: nothing left to train, nothing intact to resume from
    'train --resume --epochs at the epochs done': Case('train data --out trained --resume --epochs 1',
                                                       'epochs=1: trained/checkpoints/epoch_0001.pt has 1 epochs done already'),
    'train --resume --epochs past the schedule': Case('train data --out trained --resume --epochs 3',
                                                      'epochs=3 is past the end of the learning-rate schedule (2 epochs)'),
    'train --resume a finished run': Case('train data --out finished --resume',
                                          'finished/checkpoints/epoch_0002.pt: the run is complete (2 of 2 epochs); nothing to resume'),
    'train --resume, the only checkpoint cut': Case('train data --out cut_run --resume',
                                                    'cut_run: no intact checkpoint to resume from (cut_run/checkpoints/epoch_0001.pt: truncated'),
    'train --resume with no checkpoint': Case('train data --out outdir --resume', 'outdir: no checkpoint to resume from'),
})
if Path('/dev/full').exists():
    CASES['full disk'] = Case(f'mask {S} -o full.png', 'full.png: no space left on device')
    CASES['full disk while ffmpeg writes the mp4'] = Case('generate photo.png -o v.mp4', 'v.mp4: no space left on device',
                                                          env={'IMAGEIO_FFMPEG_EXE': '{w}/ffmpeg_full_disk'})


@pytest.fixture(scope='module')
def results(ws, tmp_path_factory):
    "Every case run at once (the table takes a minute one by one), each in its own copy of the workspace."
    base = tmp_path_factory.mktemp('runs')
    def run(name):
        w = base/re.sub(r'\W+', '_', name)
        shutil.copytree(ws, w, symlinks=True)                               # symlinks kept: full.png stays /dev/full
        before = snapshot(w)
        env = {k: v.format(w=w) for k, v in (CASES[name].env or {}).items()}
        r = fundus2video(*CASES[name].args.split(), cwd=w, env=env)
        return name, (r, before, snapshot(w))
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as ex: return dict(ex.map(run, CASES))


@pytest.mark.parametrize('name', list(CASES))
def test_bad_input(ws, results, name):
    case, (r, before, after) = CASES[name], results[name]
    lines = r.stderr.splitlines()
    assert r.returncode == case.status, (r.returncode, r.stderr)
    assert len(lines) == 1, f'expected one line on stderr:\n{r.stderr}'
    assert case.names in lines[0], lines[0]
    assert 'Traceback' not in r.stderr + r.stdout and 'weights_only=False' not in r.stderr
    assert 'wrote' not in r.stdout and 'done' not in r.stdout, r.stdout
    assert after == before, 'an input changed, or an output was written'
    assert not (ws/'pwned').exists(), 'a weights file ran code'


def test_cuda_without_a_gpu(ws):
    import torch
    if torch.cuda.is_available(): pytest.skip('this machine has a GPU')
    r = fundus2video('generate', 'photo.png', '-o', 'v.mp4', '--device', 'cuda', cwd=ws)
    assert r.returncode == 2 and r.stderr.count('\n') == 1 and 'argument --device: cuda: torch sees no GPU' in r.stderr


def test_debug_shows_the_traceback(ws):
    "--debug, or FUNDUS2VIDEO_DEBUG=1, lets the error through with its traceback, for a bug report."
    for extra, env in [(['--debug'], None), ([], {'FUNDUS2VIDEO_DEBUG': '1'})]:
        r = fundus2video('mask', 'nowhere', '-o', 'km.png', *extra, cwd=ws, env=env)
        assert r.returncode == 1 and 'Traceback' in r.stderr and 'nowhere: not a study folder' in r.stderr


def test_what_must_keep_working(ws, tmp_path):
    "The guards refuse only what they must: a new file beside the studies, a spreadsheet's BOM, --force on phantoms."
    data = tmp_path/'data'; shutil.copytree(ws/'data', data)
    r = fundus2video('mask', data, '-o', data/'knowledge_masks.png', cwd=tmp_path)    # the README's own example
    assert r.returncode == 0 and (data/'knowledge_masks.png').exists(), r.stderr
    manifest = data/'manifest.csv'
    manifest.write_bytes(b'\xef\xbb\xbf' + manifest.read_bytes())                   # saved by a spreadsheet
    r = fundus2video('mask', data, '-o', tmp_path/'sheet.png', cwd=tmp_path)
    assert r.returncode == 0 and r.stdout.count('knowledge mask') == 3, r.stderr
    r = fundus2video('phantom', data, '--n', '1', '--size', '64', '--frames', '2', '--force', cwd=tmp_path)
    assert r.returncode == 0 and 'wrote 1' in r.stdout, r.stderr


def test_ctrl_c_during_training_is_one_line(ws, tmp_path):
    "Ctrl-C: status 130 and one line that says where the run can be resumed from (here: nowhere yet)."
    p = subprocess.Popen(['fundus2video', 'train', ws/'data', '--out', tmp_path/'run', '--epochs', '1', '--size', '256'],   # an epoch of seconds
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().startswith('training on')                 # printed just before training starts
    time.sleep(1.5)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert p.returncode == 130, err
    assert err.splitlines() == ['fundus2video train: interrupted before the first checkpoint; start again with the same command']


HOLD_LOCK = ('import sys, time; from fundus2video.checkpoint import run_lock\n'
             'with run_lock(sys.argv[1]): print("holding", flush=True); time.sleep(600)')

FULL_DISK_AT = """import os, sys, tempfile
# the real command line, on a disk that is full when the temporary file whose name starts with sys.argv[1] is written
real = tempfile.mkstemp
def mkstemp(*a, **kw):
    fd, name = real(*a, **kw)
    if str(kw.get('prefix', '')).startswith(sys.argv[1]):
        full = os.open('/dev/full', os.O_WRONLY); os.dup2(full, fd); os.close(full)
    return fd, name
tempfile.mkstemp = mkstemp
from fundus2video.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_two_trains_on_one_out(ws, tmp_path):
    "While one `train` writes into a run folder, a second one on the same --out stops at once with one line; Ctrl-C releases the lock."
    run = tmp_path/'run'
    first = subprocess.Popen(['fundus2video', 'train', ws/'data', '--out', run, '--epochs', '40', '--size', '64'],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().startswith('training on')        # printed with the lock held
        r = fundus2video('train', ws/'data', '--out', run, '--epochs', '40', '--size', '64', cwd=tmp_path)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and f'{run}: another training run is writing into this folder (pid {first.pid} on' in lines[0], r.stderr
        assert 'Traceback' not in r.stderr and r.stdout == ''
        assert first.poll() is None, 'the first run was disturbed'
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
        assert first.returncode == 130 and len(err.splitlines()) == 1 and 'interrupted' in err, err
        assert not (run/'train.lock').exists(), 'Ctrl-C left the lock behind'
    finally:
        if first.poll() is None: first.kill(); first.wait()


@pytest.mark.skipif(not Path('/dev/full').exists(), reason='needs /dev/full to make a full disk')
def test_full_disk_while_saving_a_checkpoint(ws, tmp_path):
    "A full disk while epoch 2 is saved: status 2, one line naming the checkpoint and the cause; epoch 1 intact, nothing half-written."
    run = tmp_path/'run'; shutil.copytree(ws/'trained', run)
    before = snapshot(run/'checkpoints')
    r = subprocess.run([sys.executable, '-c', FULL_DISK_AT, '.epoch_0002.pt.', 'train', str(ws/'data'), '--out', str(run), '--resume'],
                       capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert r.returncode == 2, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and f"{run/'checkpoints'/'epoch_0002.pt'}: no space left on device" in lines[0], r.stderr
    assert 'Traceback' not in r.stderr + r.stdout and 'done:' not in r.stdout
    assert snapshot(run/'checkpoints') == before, 'an older checkpoint changed, or a half-written file was left'
    assert not (run/'train.lock').exists()


def test_stale_lock_and_a_cut_newest_checkpoint(ws, tmp_path):
    "A lock left by a killed run is taken over with one line; --resume skips a cut newest checkpoint, says which it resumed from, and finishes."
    run = tmp_path/'run'; shutil.copytree(ws/'trained', run)
    newest = run/'checkpoints'/'epoch_0002.pt'
    shutil.copy(run/'checkpoints'/'epoch_0001.pt', newest); cut(newest)
    holder = subprocess.Popen([sys.executable, '-c', HOLD_LOCK, str(run)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == 'holding'
    holder.kill(); holder.wait()                                          # SIGKILL: its lock file stays behind
    assert (run/'train.lock').exists()
    r = fundus2video('train', ws/'data', '--out', run, '--resume', cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and f'left by a run that ended without releasing it (pid {holder.pid} on' in lines[0], r.stderr
    assert (f"resuming from {run/'checkpoints'/'epoch_0001.pt'} (1 of 2 epochs done); skipped {newest}: truncated" in r.stdout), r.stdout
    assert 'done: 2 epochs' in r.stdout and not (run/'train.lock').exists()
    from fundus2video.checkpoint import load_checkpoint
    assert load_checkpoint(newest)['epoch'] == 2


def test_no_code_path_loads_code_from_weights():
    "No module of the package calls torch.jit.load, pickle.load(s) or torch.load with weights_only=False."
    import ast
    for f in (ROOT/'fundus2video').glob('*.py'):
        for node in ast.walk(ast.parse(f.read_text())):
            if not isinstance(node, ast.Call): continue
            name = ast.unparse(node.func)
            assert name not in ('torch.jit.load', 'jit.load', 'pickle.load', 'pickle.loads'), (f, name)
            if name.endswith('load'):
                assert not any(k.arg == 'weights_only' and ast.unparse(k.value) != 'True' for k in node.keywords), (f, ast.unparse(node))
