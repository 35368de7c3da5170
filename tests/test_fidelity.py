"""Where this workbook follows the official Fundus2Video code, checked across chapters: the official CSV's phase rule and the
knowledge mask's frames, SSIM by the official formula in the reported scores, files written before the retired config
fields still loading, and the metrics' plotting working on its own."""
import json, subprocess, sys
from pathlib import Path
import numpy as np
import pandas as pd
import torch
from fundus2video.configs import RETIRED_FIELDS, RunConfig, config_from_dict
from fundus2video.data import load_study, from_official_csv, write_image
from fundus2video.inference import DEMO_MODEL, load_generator
from fundus2video.knowledge_mask import km_frames
from fundus2video.metrics import eval_study, video_metrics, ssim_official, uint8_to_unit
from fundus2video.phantom import make_phantom, preset_config

ROOT = Path(__file__).resolve().parents[1]


def official_csv(tmp:Path) -> Path:
    "One eye in the official CSV format with frames labelled C, A, AV, V, V, L in time order."
    cf = make_phantom(preset_config('moderate', size=64, n_frames=6), seed=2).cf
    write_image(tmp/'cf.png', cf)
    rows = []
    for lvl, ph in enumerate(['C', 'A', 'AV', 'V', 'V', 'L']):
        write_image(tmp/f'fa_{lvl}.png', np.full((64, 64), 20 + 30 * lvl, np.uint8))
        rows.append(dict(pid_eye='7_R', orgid='7', Phase=ph, level_1=lvl, co_rigid='cf.png', fa_rigid=f'fa_{lvl}.png'))
    pd.DataFrame(rows).to_csv(tmp/'data.csv', index=False)
    return tmp/'data.csv'


def test_official_csv_rule_and_the_knowledge_masks_frames(tmp_path):
    "The official rule keeps AV, V, V, L; the KM then compares the first of them with the last, as the official code does."
    csv = official_csv(tmp_path)
    s = load_study(from_official_csv(csv, tmp_path/'official')[0])
    assert s.phases == ['venous', 'venous', 'venous', 'late'] and s.meta['official_phase'] == ['AV', 'V', 'V', 'L']
    assert km_frames(s.phases) == (0, 3)                         # official: first FFA frame (after the rule) vs the last
    every = load_study(from_official_csv(csv, tmp_path/'all', phases='all')[0])
    assert every.phases == ['c', 'arterial', 'arterial', 'venous', 'venous', 'late']   # C is not called late
    assert km_frames(every.phases) == (3, 5)                      # the first venous frame, not the choroidal one


def test_official_ssim_is_reported_with_official(tmp_path):
    s = eval_study(make_phantom(preset_config('moderate', size=64, n_frames=6), seed=4), size=64)
    real = uint8_to_unit(s.frames)
    fake = np.clip(real + np.random.default_rng(0).normal(0, 0.05, real.shape), 0, 1)
    plain, official = video_metrics(s, fake), video_metrics(s, fake, official=True)
    assert 'ssim_official' not in plain
    assert np.isclose(official['ssim_official'], np.mean([ssim_official(r, f) for r, f in zip(real, fake)]))
    assert official['ssim_official'] != official['ssim'] and official['ssim'] == plain['ssim']


def test_files_written_with_retired_fields_still_load(tmp_path):
    "A model file exported when the configs still had the fields that are now retired loads, and the fields are dropped."
    ck = torch.load(DEMO_MODEL, map_location='cpu', weights_only=True)
    raw = ck['config']
    raw['rollout']['window'], raw['discriminator']['gan_mode'], raw['pipeline']['km_in_fov'] = 3, 'lsgan', True   # as older files have them
    torch.save(ck, tmp_path/'old.pt')
    cfg = config_from_dict(RunConfig, raw)
    assert cfg.generator.ngf == raw['generator']['ngf'] and set(RETIRED_FIELDS) == {'RolloutConfig', 'DiscriminatorConfig', 'PipelineConfig'}
    assert not hasattr(cfg.rollout, 'window') and not hasattr(cfg.discriminator, 'gan_mode') and not hasattr(cfg.pipeline, 'km_in_fov')
    G = load_generator(tmp_path/'old.pt')[0]
    assert G(torch.zeros(1, 6, 64, 64)).frames.shape == (1, 3, 64, 64)


def test_plot_curves_in_a_fresh_process():
    "`metrics.plot_curves` imports what it draws with (it raised NameError when the notebook had imported pyplot for it)."
    T = 4
    video = dict(name='v', n_frames=T, times=[1., 2., 5., 60.], leak_area={'real': [0, .1, .2, .3], 'fake': [0, .1, .1, .2]},
                 curves={r: {'real': list(range(T)), 'fake': list(range(T))} for r in ('artery', 'vein', 'leakage', 'background')},
                 arrival={r: {'real': 2., 'fake': None} for r in ('artery', 'vein', 'leakage', 'background')})
    code = (f"import json, matplotlib; matplotlib.use('Agg'); import fundus2video.metrics as M; "
            f"fig = M.plot_curves(json.loads({json.dumps(json.dumps(video))})); print(len(fig.axes))")
    r = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == '5'
