"""From nothing to training tensors: phantom studies on disk -> study set -> fastai loaders -> knowledge masks."""
import numpy as np
import torch
from fundus2video.data import StudySet, load_study
from fundus2video.phantom import write_phantoms, preset_config
from fundus2video.pipeline import PipelineConfig, study_dataloaders
from fundus2video.knowledge_mask import study_knowledge_mask, km_agreement, dice


def test_phantoms_to_batches(tmp_path):
    paths = write_phantoms(tmp_path, 5, preset_config('moderate', size=128), seed=0, progress=False)
    assert len(paths) == 5 and len(StudySet(tmp_path)) == 5
    dls = study_dataloaders(tmp_path, PipelineConfig(size=64, pad_to=12), bs=2)
    b = next(iter(dls.train))
    assert b['cf'].shape == (2, 3, 64, 64) and b['frames'].shape == (2, 12, 64, 64)
    assert b['cf'].min() >= -1 and b['cf'].max() <= 1 and torch.isfinite(b['frames']).all()
    v = next(iter(dls.valid))
    assert v['km'].sum() > 0 and (v['km'] <= v['fov']).all()


def test_knowledge_mask_finds_the_dynamic_lesions(tmp_path):
    "The paper's claim on the phantom: the KM overlaps the dynamic lesions far better than chance."
    write_phantoms(tmp_path, 3, preset_config('severe', size=192), seed=10, progress=False)
    for s in StudySet(tmp_path):
        km = study_knowledge_mask(s, use_fov=True)
        agree = km_agreement(km, s.lesions)
        dyn = np.logical_or.reduce([s.lesions[k] for k in ('leakage', 'nonperfusion', 'drusen')])
        rng = np.random.default_rng(0)
        chance = dice(rng.random(km.shape) < km.mean(), dyn)
        assert agree['dice_dynamic'] > 2 * chance, (s.name, agree, chance)
