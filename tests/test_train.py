"""Training runs end to end: exact resume (in-process and after SIGKILL), atomic and safe checkpoints, divergence stop, the CLI."""
import csv, os, shutil, signal, subprocess, time
from dataclasses import replace
from pathlib import Path
import pytest
import torch
from fundus2video.phantom import write_phantoms, preset_config
import fundus2video.train as T
import fundus2video.configs as C
import fundus2video.checkpoint as CK


@pytest.fixture(scope='module')
def data(tmp_path_factory):
    "Four small phantoms (2 train, 1 valid, 1 test), 6 frames each."
    out = tmp_path_factory.mktemp('train')/'phantoms'
    write_phantoms(out, 4, preset_config('moderate', size=64, n_frames=6), seed=1, progress=False)
    return out


def small(epochs=2):
    return C.with_epochs(C.preset('tiny'), epochs)


def weights(path) -> dict:
    ck = CK.load_checkpoint(path)
    return {f'{n}.{k}': v for n in ('G', 'D', 'head') for k, v in ck[n].items()}


def same(a:dict, b:dict) -> bool: return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_equals_uninterrupted(data, tmp_path):
    full = T.train(data, tmp_path/'full', small(3), progress=False)
    T.train(data, tmp_path/'part', small(3), epochs=1, progress=False)           # stops after epoch 1
    assert CK.latest_checkpoint(tmp_path/'part').name == 'epoch_0001.pt'
    part = T.train(data, tmp_path/'part', resume=True, progress=False)
    assert same(full.stepper.gan.state_dict(), part.stepper.gan.state_dict())
    assert same(weights(tmp_path/'full'/'checkpoints'/'epoch_0003.pt'), weights(tmp_path/'part'/'checkpoints'/'epoch_0003.pt'))
    h1, h2 = [list(csv.DictReader(open(tmp_path/r/'history.csv'))) for r in ('full', 'part')]
    assert [r['valid_l1'] for r in h1] == [r['valid_l1'] for r in h2]
    ck = CK.load_checkpoint(CK.latest_checkpoint(tmp_path/'full'))
    assert ck['epoch'] == 3 and ck['split']['valid'] and C.config_from_dict(C.RunConfig, ck['config']) == small(3)
    assert sorted(p.name for p in (tmp_path/'full'/'checkpoints').iterdir()) == ['best.pt', 'epoch_0002.pt', 'epoch_0003.pt']
    assert len(list((tmp_path/'full'/'samples').glob('*.png'))) == 3


def test_atomic_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = CK.atomic_save({'format': 'fundus2video-checkpoint', 'x': torch.ones(3)}, tmp_path/'ck.pt')
    before = path.read_bytes()
    def crash(obj, f): f.write(b'half a checkpoint'); raise KeyboardInterrupt
    monkeypatch.setattr(torch, 'save', crash)
    with pytest.raises(KeyboardInterrupt): CK.atomic_save({'x': torch.zeros(3)}, path)
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ['ck.pt']


def test_checkpoints_cannot_run_code(tmp_path):
    class Evil:
        def __reduce__(self): return (os.system, ('touch ' + str(tmp_path/'pwned'),))
    torch.save({'format': 'fundus2video-checkpoint', 'e': Evil()}, tmp_path/'evil.pt')
    with pytest.raises(CK.ModelFileError, match='evil.pt: holds Python objects besides tensors'): CK.load_checkpoint(tmp_path/'evil.pt')
    assert not (tmp_path/'pwned').exists()


def test_divergence_stops_and_keeps_the_last_checkpoint(data, tmp_path, monkeypatch):
    T.train(data, tmp_path/'run', small(3), epochs=1, progress=False)
    good = (tmp_path/'run'/'checkpoints'/'epoch_0001.pt').read_bytes()
    real, calls = T.generator_objective, [0]
    def blows_up(*a, **kw):
        out = real(*a, **kw); calls[0] += 1
        if calls[0] > 8: out['gv'] = out['gv'] * float('nan')
        return out
    monkeypatch.setattr(T, 'generator_objective', blows_up)
    with pytest.raises(T.Diverged, match='gv is not finite'): T.train(data, tmp_path/'run', resume=True, progress=False)
    assert CK.latest_checkpoint(tmp_path/'run').name == 'epoch_0001.pt'
    assert (tmp_path/'run'/'checkpoints'/'epoch_0001.pt').read_bytes() == good


def _train_cmd(data, out, *extra):
    return ['fundus2video', 'train', str(data), '--out', str(out), '--epochs', '4', '--size', '64', *extra]


def test_cli_sigkill_then_resume_matches(data, tmp_path, cli):
    r = cli(*_train_cmd(data, tmp_path/'full')[1:])
    assert str(tmp_path/'full') in r.stdout and 'best.pt' in r.stdout and 'samples' in r.stdout
    assert 'epoch 1/4: train loss' in r.stdout and 'valid L1' in r.stdout   # not a terminal: one plain line per epoch,
    assert '█' not in r.stdout and '\r' not in r.stdout                    # no progress-bar redraws in the log
    p = subprocess.Popen(_train_cmd(data, tmp_path/'killed'), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ck, t0 = tmp_path/'killed'/'checkpoints'/'epoch_0002.pt', time.time()
    while not ck.exists() and p.poll() is None and time.time() - t0 < 300: time.sleep(0.05)
    p.send_signal(signal.SIGKILL); p.wait()
    done = CK.latest_checkpoint(tmp_path/'killed')
    assert done is not None and done.name != 'epoch_0004.pt', 'killed too late to test anything'
    r = cli(*_train_cmd(data, tmp_path/'killed', '--resume')[1:])
    assert f'resuming from {done}' in r.stdout
    assert 'train.lock: left by a run that ended without releasing it' in r.stderr     # SIGKILL left its lock file
    assert same(weights(tmp_path/'full'/'checkpoints'/'epoch_0004.pt'), weights(tmp_path/'killed'/'checkpoints'/'epoch_0004.pt'))
    steps = list(csv.DictReader(open(tmp_path/'killed'/'steps.csv')))
    assert [int(s['step']) for s in steps] == list(range(1, len(steps) + 1))     # no rows from the killed epoch left twice


def test_cli_user_errors(data, tmp_path, cli):
    r = cli('train', data, '--out', tmp_path/'none', '--resume', check=False)
    assert r.returncode == 2 and 'no checkpoint to resume from' in r.stderr and 'Traceback' not in r.stderr
    cli('train', data, '--out', tmp_path/'run', '--epochs', '1', '--size', '64', '--no-attention', '--no-scheduled-sampling')
    ck = CK.load_checkpoint(CK.latest_checkpoint(tmp_path/'run'))
    assert ck['config']['generator']['attention'] is False and ck['config']['rollout']['ss_schedule'] == 'never'
    r = cli('train', data, '--out', tmp_path/'run', '--epochs', '1', check=False)
    assert r.returncode == 2 and 'add --resume' in r.stderr
    assert '--no-knowledge-aware' in cli('train', '--help').stdout


DDP_SCRIPT = """
import sys, torch, fundus2video.train as T, fundus2video.configs as C
from dataclasses import replace
data, out, bs, lr, pad_to = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5]) or None
cfg = C.with_epochs(C.preset('tiny'), 2)
cfg = replace(cfg, pipeline=replace(cfg.pipeline, size=32, pad_to=pad_to),
              patchnce=replace(cfg.patchnce, num_patches=0),     # every location: no patch draw depends on the batch size
              train=replace(cfg.train, bs=bs, lr=lr))
grads = []
def recording_step(self, loss, names):    # the gradients each optimiser steps with (averaged over the processes by DDP)
    for n in names: self.opts[n].zero_grad(set_to_none=True)
    self.scaler.scale(loss).backward()
    grads.append(torch.cat([p.grad.flatten() for n in names for g in self.opts[n].param_groups for p in g['params']]))
    for n in names: self.scaler.step(self.opts[n])
T.WindowStepper._backward_step = recording_step
learn = T.train(data, out, cfg, progress=False)
torch.save(learn.stepper.gan.state_dict(), f'{out}/rank{T.rank()}_of_{T.world_size()}.pt')
torch.save(grads, f'{out}/grads_rank{T.rank()}_of_{T.world_size()}.pt')
"""


def _torchrun(script:Path, *args, n=2, timeout=600):
    r = subprocess.run(['torchrun', '--nproc_per_node', str(n), '--standalone', str(script), *map(str, args)],
                       capture_output=True, text=True, timeout=timeout, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]


def _shortened_copy(data:Path, dest:Path) -> Path:
    "A copy of the data folder whose first training study has only 4 of its 6 frames."
    shutil.copytree(data, dest)
    study = dest/T.data_split(dest)['train'][0]
    rows = (study/'frames.csv').read_text().splitlines()
    for r in rows[5:]: (study/'ffa'/r.split(',')[0]).unlink()
    (study/'frames.csv').write_text('\n'.join(rows[:5]) + '\n')
    return dest


def test_ddp_two_cpu_processes(data, tmp_path):
    "torchrun, 2 processes, gloo, videos of 4 and 6 frames padded to 6: the copies stay identical; checkpoints load in one process."
    short, out, script = _shortened_copy(data, tmp_path/'short'), tmp_path/'ddp', tmp_path/'ddp_train.py'
    script.write_text(DDP_SCRIPT); out.mkdir()
    _torchrun(script, short, out, 1, 1e-3, 6)       # a process with the short video joins its last 2 windows with zero loss
    w0, w1 = [torch.load(out/f'rank{i}_of_2.pt', weights_only=True) for i in (0, 1)]
    assert same(w0, w1)                                          # the copies stayed identical
    ck = CK.load_checkpoint(CK.latest_checkpoint(out))
    assert all(torch.equal(ck['G'][k], w0['G.' + k]) for k in ck['G'])
    n_train = len(T.data_split(short)['train'])
    assert ck['epoch'] == 2 and ck['step'] == 2 * n_train // 2 and ck['videos_seen'] == 2 * n_train
    steps = list(csv.DictReader(open(out/'steps.csv')))
    assert len(steps) == 2 * n_train // 2                       # rank 0's rows only
    st = T.stepper_from_checkpoint(ck)                          # a multi-process checkpoint, resumed by one process
    assert same(st.gan.state_dict(), w0) and list(ck['G']) == list(T.Generator(st.cfg.generator).state_dict())


def test_ddp_gradients_equal_one_process_with_the_combined_batch(data, tmp_path):
    """2 processes with one video each take the steps of 1 process with both videos in its batch: every window's G, head
    and D gradients agree to rounding, over 2 epochs (most to 1e-6; a few self-fed windows, whose input is the previous
    output, amplify the rounding of a batch of 2 against two of 1 to a few 1e-3). The learning rate is 0 so that the
    weights stay equal: with Adam, float32 rounding alone moves a weight whose gradient is at rounding level (the biases
    in front of an instance norm have a zero gradient) by up to lr in either direction, and a GAN fed its own output
    amplifies such differences from window to window, so the weights of real steps are compared through the gradients
    that make them. (This test found the instance-norm gradient bug worked around in `gather_patches`.)"""
    script = tmp_path/'ddp_train.py'; script.write_text(DDP_SCRIPT)
    (tmp_path/'two').mkdir(); (tmp_path/'one').mkdir()
    _torchrun(script, data, tmp_path/'two', 1, 0.0, 0)
    _torchrun(script, data, tmp_path/'one', 2, 0.0, 0, n=1)
    two, one = [torch.load(tmp_path/d/f'grads_rank0_of_{n}.pt', weights_only=True) for d, n in (('two', 2), ('one', 1))]
    n_train = len(T.data_split(data)['train']); assert n_train == 2
    assert len(one) == len(two) == 2 * 6 * 2                     # 2 epochs x 6 windows x (G step, D step)
    rel = sorted(float((a - b).norm() / a.norm()) for a, b in zip(one, two))
    assert rel[len(rel) // 2] < 1e-5 and rel[-1] < 1e-2, rel      # rounding; a few self-fed windows amplify it to ~5e-3
    assert same(torch.load(tmp_path/'one'/'rank0_of_1.pt', weights_only=True), torch.load(tmp_path/'two'/'rank0_of_2.pt', weights_only=True))


def test_cli_under_torchrun(data, tmp_path):
    r = subprocess.run(['torchrun', '--nproc_per_node', '2', '--standalone', '--no-python', 'fundus2video', 'train', str(data),
                        '--out', str(tmp_path/'run'), '--epochs', '1', '--size', '64'], capture_output=True, text=True,
                       timeout=600, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-3000:]
    assert CK.latest_checkpoint(tmp_path/'run').name == 'epoch_0001.pt'


NAN_SCRIPT = """
import sys, torch, fundus2video.train as T, fundus2video.configs as C
data, out = sys.argv[1:]
objective = T.generator_objective
def poisoned(*a, **kw):                      # rank 1 diverges at its first window; rank 0 stays finite
    t = objective(*a, **kw)
    if T.rank() == 1: t['gv'] = t['gv'] * float('nan')
    return t
T.generator_objective = poisoned
try: T.train(data, out, C.with_epochs(C.preset('tiny'), 1), progress=False)
except T.Diverged as e: print(f'rank {T.rank()} stopped: {e}', flush=True); sys.exit(3)
"""


def test_ddp_divergence_stops_every_process(data, tmp_path):
    "A NaN on one process stops both at the same step (the other does not hang waiting for its gradients)."
    out, script = tmp_path/'nan', tmp_path/'nan_train.py'
    script.write_text(NAN_SCRIPT); out.mkdir()
    r = subprocess.run(['torchrun', '--nproc_per_node', '2', '--standalone', str(script), str(data), str(out)],
                       capture_output=True, text=True, timeout=300, env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode != 0
    assert 'rank 1 stopped' in r.stdout and 'loss gv is not finite' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'rank 0 stopped' in r.stdout and 'on another process' in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    assert CK.latest_checkpoint(out) is None                     # nothing half-written
