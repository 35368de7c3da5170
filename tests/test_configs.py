"""Every field of every run config changes what its comment says it changes: one row per field, and a check that no field
is left out of the table (a new field needs a row, so a field that nothing reads cannot come back unnoticed)."""
import inspect, warnings
from dataclasses import fields, is_dataclass, replace
from types import SimpleNamespace
import numpy as np
import pytest
import torch
import torch.nn as nn
import fundus2video.configs as C
import fundus2video.train as T
from fundus2video.data import Study, prepare_study
from fundus2video.discriminator import DiscriminatorConfig, KnowledgeAwareDiscriminator
from fundus2video.generator import Generator, GeneratorConfig, ResnetBlock
from fundus2video.losses import LossWeights, VGGPerceptualLoss, generator_objective, discriminator_objective
from fundus2video.patchnce import PatchNCEConfig, nce_inputs, patchnce_loss
from fundus2video.phantom import make_phantom, preset_config, write_phantoms
from fundus2video.pipeline import AugmentConfig, PipelineConfig, make_item
from fundus2video.rollout import RolloutConfig, generate_video, self_feed_probability, window_input
from fundus2video.runtime import amp_dtype

BASE = replace(C.preset('tiny'), pipeline=replace(C.preset('tiny').pipeline, size=32))
S = 32                                                              # toy image side


def toy(seed=0, B=1) -> dict:
    g = torch.Generator().manual_seed(seed)
    return dict(cf=torch.rand(B, 3, S, S, generator=g) * 2 - 1, real=torch.rand(B, 3, S, S, generator=g) * 2 - 1,
                km=(torch.rand(B, 1, S, S, generator=g) > 0.7).float())


# ---- generator: the architecture it builds, or (same weights) the output it computes
def G(rc): torch.manual_seed(0); return Generator(rc.generator)
def G_out(rc):
    t = toy(); return G(rc)(torch.cat([t['cf'], t['real']], 1)).frames.detach()
def n_stride2(rc): return sum(isinstance(m, nn.Conv2d) and m.stride == (2, 2) for m in G(rc).model)
def n_blocks(rc): return sum(isinstance(m, ResnetBlock) for m in G(rc).model)
def first_previous(rc):
    "What window 0 of a rollout sees as its previous window: the CF again, or G's start frame."
    g, seen = G(rc), []
    hook = g.register_forward_pre_hook(lambda m, a: seen.append(a[0][:, 3:].detach()))
    generate_video(g, toy()['cf'], 1); hook.remove()
    return seen[0]
def local_blocks(rc):
    g = Generator(replace(rc.generator, local_enhancer=True))
    return sum(isinstance(m, ResnetBlock) for m in g.model1_2)


# ---- discriminator
def D(rc): torch.manual_seed(0); return KnowledgeAwareDiscriminator(rc.discriminator)
def D_first(rc): return D(rc).plain.scales[0].blocks[0][0]


# ---- PatchNCE terms on a toy window, with the generator's encoder and a fixed patch draw
def nce_terms(rc):
    torch.manual_seed(0); gan = T.Fundus2VideoGAN(rc); t = toy()
    out = patchnce_loss(gan.G.encode, gan.head, t['cf'], t['real'].flip(-1), t['real'], gan.nce_cfg, t['km'],
                        generator=torch.Generator().manual_seed(0))
    return {k: round(v.item(), 6) for k, v in out.items()}


# ---- objectives with every term on (a stand-in VGG: 30 cheap layers, so `vgg` has something to weigh)
def objectives(rc):
    torch.manual_seed(0); gan = T.Fundus2VideoGAN(rc); t = toy()
    vgg = VGGPerceptualLoss(nn.Sequential(nn.Conv2d(3, 3, 1), *[nn.Identity() for _ in range(29)]))
    out = gan.G(window_input(t['cf'], None))
    g = generator_objective(out, t['real'], t['cf'], t['km'], gan.D, rc.losses, encode=gan.G.encode, nce_head=gan.head,
                            nce_cfg=gan.nce_cfg, vgg=vgg)
    d = discriminator_objective(out.frames, t['real'], t['cf'], t['km'], gan.D, rc.losses)
    return round(g['total'].item(), 5), round(d['total'].item(), 5)


# ---- pipeline: an item of a non-square study (so that `square` matters)
@pytest.fixture(scope='module')
def study():
    s = make_phantom(preset_config('moderate', size=64, n_frames=6), seed=3)
    return Study(s.cf[:, 8:56].copy(), s.frames[:, :, 8:56].copy(), s.times, s.phases, s.fov[:, 8:56].copy(), name='toy')

def item(rc, s, augment=False):
    return make_item(prepare_study(s, rc.pipeline.size, square=rc.pipeline.square), rc.pipeline,
                     np.random.default_rng(0) if augment else None)


# ---- training: a dry run of `train` (everything built, `fit` not called)
@pytest.fixture(scope='module')
def data(tmp_path_factory):
    out = tmp_path_factory.mktemp('configs')/'phantoms'
    write_phantoms(out, 4, preset_config('moderate', size=64, n_frames=6), seed=1, progress=False)
    return out

def dry_train(rc, data, tmp, monkeypatch, **patches):
    monkeypatch.setattr(T.WindowLearner, 'fit', lambda self, n: None)
    for k, v in patches.items(): monkeypatch.setattr(T, k, v)
    return T.train(data, tmp/'run', rc, progress=False)

def looked_for_vgg(rc, data, tmp, monkeypatch):
    seen = []
    dry_train(replace(rc, losses=replace(rc.losses, vgg=1.0)), data, tmp, monkeypatch, maybe_vgg_loss=lambda p: seen.append(p))
    return seen

def kept_checkpoints(rc, tmp):
    "The epoch files CheckpointCallback keeps after epoch 5, with epochs 1-4 on disk."
    d = tmp/f'keep{rc.train.keep_last}'/'checkpoints'; d.mkdir(parents=True)
    for e in range(1, 5): (d/f'epoch_{e:04d}.pt').write_bytes(b'')
    cb = T.CheckpointCallback(d.parent)
    cb.learn = SimpleNamespace(stepper=T.WindowStepper(T.Fundus2VideoGAN(rc)), recorder=SimpleNamespace(values=[[0., 1.]]),
                               dls=SimpleNamespace(train=None), epoch=4)
    cb.after_epoch()
    return sorted(p.name for p in d.glob('epoch_*'))

def cf_key_passes(rc):
    st, calls = T.WindowStepper(T.Fundus2VideoGAN(rc)), []
    run = st.cf_key_features
    st.cf_key_features = lambda *a: calls.append(1) or run(*a)
    t = toy(); st.train_video(dict(cf=t['cf'], frames=torch.cat([t['real'], t['real']], 1)[:, :2], km=t['km']))
    return len(calls)

def model_after_video(rc):
    "The first weight of the run's model (`model_G`: G's moving average when `ema` is on) after one toy video."
    torch.manual_seed(0); st = T.WindowStepper(T.Fundus2VideoGAN(rc)); t = toy()
    st.train_video(dict(cf=t['cf'], frames=torch.cat([t['real'], t['real']], 1)[:, :2], km=t['km']))
    return st.gan.model_G.model[1].weight.detach().clone()

def adv_grads(rc):
    "The objective's gradient on a generated window whose first target is black (a dark frame under `adv_dark`)."
    torch.manual_seed(0); gan = T.Fundus2VideoGAN(rc); t = toy()
    real = t['real'].clone(); real[:, 0] = -1
    out = gan.G(window_input(t['cf'], None)); out.frames.retain_grad()
    generator_objective(out, real, t['cf'], t['km'], gan.D, rc.losses)['total'].backward()
    return out.frames.grad

def l1_weights(rc):
    "The per-frame L1 weights `train_video` hands the first window of a 2-frame toy video."
    st, seen = T.WindowStepper(T.Fundus2VideoGAN(rc)), []
    run = st.train_window
    st.train_window = lambda *a, l1_w=None, **kw: seen.append(l1_w) or run(*a, l1_w=l1_w, **kw)
    t = toy(); st.train_video(dict(cf=t['cf'], frames=torch.cat([t['real'], t['real']], 1)[:, :2], km=t['km']))
    return None if seen[0] is None else seen[0].tolist()

def lrs(rc):
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.)
    return [round(C.apply_lr([opt], rc.train, e), 9) for e in range(30)]

def cuda_dtype(rc, monkeypatch):
    monkeypatch.setattr(torch.cuda, 'is_bf16_supported', lambda *a, **k: True)    # no GPU needed to read the choice
    return amp_dtype(torch.device('cuda'), rc.train)


# (config, field, changed value, probe(run config, fixtures) -> what the field says it changes)
TABLE = [
    ('generator', 'input_nc', 9, lambda rc, f: G(rc).model[1].in_channels),
    ('generator', 'output_nc', 4, lambda rc, f: G(rc).model[-2].out_channels),
    ('generator', 'ngf', 8, lambda rc, f: G(rc).model[1].out_channels),
    ('generator', 'n_down', 3, lambda rc, f: n_stride2(rc)),
    ('generator', 'n_blocks', 1, lambda rc, f: n_blocks(rc)),
    ('generator', 'norm', 'batch', lambda rc, f: type(G(rc).model[2])),
    ('generator', 'padding', 'zero', lambda rc, f: type(next(m for m in G(rc).model if isinstance(m, ResnetBlock)).conv_block[0])),
    ('generator', 'attention', False, lambda rc, f: G(rc).attention_head is None),
    ('generator', 'attention_stage', 1, lambda rc, f: G(rc).attention_head.net[0].in_channels),
    ('generator', 'attention_scales', (2,), lambda rc, f: G_out(rc)),
    ('generator', 'attention_hidden', 8, lambda rc, f: G(rc).attention_head.net[0].out_channels),
    ('generator', 'local_enhancer', True, lambda rc, f: hasattr(G(rc), 'model1_1')),
    ('generator', 'n_blocks_local', 1, lambda rc, f: local_blocks(rc)),
    ('generator', 'start_window', 'mean_first_frame', lambda rc, f: first_previous(rc)),
    ('discriminator', 'input_nc', 7, lambda rc, f: D_first(rc).in_channels),
    ('discriminator', 'ndf', 8, lambda rc, f: D_first(rc).out_channels),
    ('discriminator', 'n_layers', 3, lambda rc, f: len(D(rc).plain.scales[0].blocks)),
    ('discriminator', 'num_D', 3, lambda rc, f: len(D(rc).plain.scales)),
    ('discriminator', 'norm', 'none', lambda rc, f: type(D(rc).plain.scales[0].blocks[1][1])),
    ('discriminator', 'init_std', 0.5, lambda rc, f: round(D_first(rc).weight.std().item(), 2)),
    ('discriminator', 'knowledge_aware', False, lambda rc, f: D(rc)(torch.zeros(1, 6, S, S), toy()['km'])[1] is None),
    ('discriminator', 'separate_km', True, lambda rc, f: D(rc).masked is None),
    ('discriminator', 'km_fill', 0.0, lambda rc, f: D(rc).prepare(torch.ones(1, 6, 4, 4), torch.zeros(1, 1, 4, 4), True).max().item()),
    ('discriminator', 'km_channel', True, lambda rc, f: D_first(rc).in_channels),
    ('patchnce', 'layers', (0, 5), lambda rc, f: T.Fundus2VideoGAN(rc).head.channels),
    ('patchnce', 'num_patches', 8, lambda rc, f: nce_terms(rc)),
    ('patchnce', 'nc', 16, lambda rc, f: T.Fundus2VideoGAN(rc).head.mlps[0][2].out_features),
    ('patchnce', 'tau', 0.5, lambda rc, f: nce_terms(rc)),
    ('patchnce', 'lambda_nce', 3.0, lambda rc, f: nce_terms(rc)['nce'] / (nce_terms(rc)['nce_src'] + nce_terms(rc)['nce_idt'])),
    ('patchnce', 'identity', False, lambda rc, f: sorted(nce_terms(rc))),
    ('patchnce', 'mask_mode', 'none', lambda rc, f: nce_terms(rc)),
    ('patchnce', 'km_share', 1.0, lambda rc, f: nce_terms(rc)),
    ('patchnce', 'input_nc', 3, lambda rc, f: nce_inputs(toy()['cf'], rc.patchnce).shape[1]),
    *[('losses', k, v, lambda rc, f: objectives(rc)) for k, v in
      [('gan', 0.5), ('gan_km', 3.0), ('fm', 1.0), ('fm_km', 2.0), ('vgg', 2.0), ('gv', 1.0), ('nce', 2.0), ('att', 3.0),
       ('l1', 1.0), ('d_plain', 1.0), ('d_km', 1.0), ('gv_patch', 8), ('gv_mode', 'channel'), ('gan_mode', 'hinge'),
       ('gan_reduce', 'mean')]],
    ('losses', 'l1_frames', 'coverage', lambda rc, f: l1_weights(rc)),
    ('losses', 'l1_frames', 'floor', lambda rc, f: l1_weights(rc)),        # first window of 2 frames: [3, 1, 1] (coverage: [3, .6, .6])
    ('losses', 'adv_dark', 0.04, lambda rc, f: adv_grads(rc)),
    ('rollout', 'ss_schedule', 'never', lambda rc, f: self_feed_probability(500, rc.rollout)),
    ('rollout', 'ss_videos_per_step', 50, lambda rc, f: self_feed_probability(150, rc.rollout)),
    ('rollout', 'ss_full_after', 200, lambda rc, f: self_feed_probability(300, rc.rollout)),
    ('pipeline', 'size', 16, lambda rc, f: tuple(item(rc, f['study'])['cf'].shape)),
    ('pipeline', 'per_phase', 1, lambda rc, f: len(item(rc, f['study'])['frames'])),
    ('pipeline', 'pad_to', 8, lambda rc, f: item(rc, f['study'])['valid'].tolist()),
    ('pipeline', 'threshold', 10, lambda rc, f: item(rc, f['study'])['km'].sum().item()),
    ('pipeline', 'min_area', 10_000, lambda rc, f: item(rc, f['study'])['km'].sum().item()),
    ('pipeline', 'square', False, lambda rc, f: item(rc, f['study'])['fov'].sum().item()),
    ('pipeline', 'augment', AugmentConfig(hflip=0., scale=(1., 1.)), lambda rc, f: item(rc, f['study'], augment=True)['cf']),
    ('augment', 'hflip', 1.0, lambda rc, f: item(rc, f['study'], augment=True)['cf']),
    ('augment', 'scale', (0.5, 0.6), lambda rc, f: item(rc, f['study'], augment=True)['cf']),
    ('train', 'epochs_constant', 5, lambda rc, f: lrs(rc)),
    ('train', 'epochs_decay', 5, lambda rc, f: lrs(rc)),
    ('train', 'lr', 1e-4, lambda rc, f: lrs(rc)),
    ('train', 'betas', (0.9, 0.99), lambda rc, f: T.make_optimisers(T.Fundus2VideoGAN(rc), rc.train)['G'].defaults['betas']),
    ('train', 'bs', 2, lambda rc, f: dry_train(rc, f['data'], f['tmp'], f['mp']).dls.train.batch_size),
    ('train', 'seed', 1, lambda rc, f: T.prepare_gan(rc, torch.device('cpu')).G.model[1].weight[0, 0, 0, 0].item()),
    ('train', 'train_head', False, lambda rc, f: T.WindowStepper(T.Fundus2VideoGAN(rc)).g_names),
    ('train', 'amp', False, lambda rc, f: cuda_dtype(rc, f['mp'])),
    ('train', 'channels_last', False, lambda rc, f: 'cfg.train.channels_last' in inspect.getsource(T.prepare_gan) and rc.train.channels_last),
    ('train', 'cpu_bf16', True, lambda rc, f: amp_dtype(torch.device('cpu'), rc.train)),
    ('train', 'compile', True, lambda rc, f: T.prepare_gan(rc, torch.device('cpu')).G._compiled_call_impl is not None),
    ('train', 'optimiser', 'loop', lambda rc, f: T.make_optimisers(T.Fundus2VideoGAN(rc), rc.train)['G'].defaults['fused']),
    ('train', 'cache_cf_keys', True, lambda rc, f: cf_key_passes(rc)),
    ('train', 'keep_last', 3, lambda rc, f: kept_checkpoints(rc, f['tmp'])),
    ('train', 'vgg_path', '/nowhere/vgg19.pth', lambda rc, f: looked_for_vgg(rc, f['data'], f['tmp'], f['mp'])),
    ('train', 'ema', 0.5, lambda rc, f: model_after_video(rc)),
]

CONFIGS = dict(generator=GeneratorConfig, discriminator=DiscriminatorConfig, patchnce=PatchNCEConfig, losses=LossWeights,
               rollout=RolloutConfig, pipeline=PipelineConfig, augment=AugmentConfig, train=C.TrainConfig)


def changed(rc, part:str, name:str, value):
    if part == 'augment': return replace(rc, pipeline=replace(rc.pipeline, augment=replace(rc.pipeline.augment, **{name: value})))
    return replace(rc, **{part: replace(getattr(rc, part), **{name: value})})


def test_every_field_has_a_row():
    rows = {(p, n) for p, n, *_ in TABLE}
    want = {(p, f.name) for p, cls in CONFIGS.items() for f in fields(cls)}
    assert want - rows == set(), f"config fields without a row in TABLE: {sorted(want - rows)}"
    assert rows - want == set(), f"rows for fields that do not exist: {sorted(rows - want)}"
    assert {f.name for f in fields(C.RunConfig)} == set(CONFIGS) - {'augment'}   # the table covers every part of a run


def same_value(a, b) -> bool:
    if torch.is_tensor(a): return torch.is_tensor(b) and a.shape == b.shape and torch.equal(a, b)
    return a == b


@pytest.mark.parametrize('part,name,value,probe', TABLE, ids=[f'{p}.{n}' for p, n, *_ in TABLE])
def test_field_changes_what_it_says(part, name, value, probe, study, data, tmp_path, monkeypatch):
    base = BASE
    if (part, name) == ('generator', 'n_blocks_local'): base = changed(BASE, 'generator', 'local_enhancer', True)
    if (part, name) == ('generator', 'attention_scales'): base = changed(BASE, 'generator', 'attention_stage', 1)   # stages 1, 2
    if part == 'augment':                                          # one augmentation at a time, the other off
        base = changed(BASE, 'augment', 'hflip', 0.) if name == 'scale' else changed(changed(BASE, 'augment', 'scale', (1., 1.)), 'augment', 'hflip', 0.)
    new = changed(base, part, name, value)
    assert getattr(getattr(new, part) if part != 'augment' else new.pipeline.augment, name) != \
           getattr(getattr(base, part) if part != 'augment' else base.pipeline.augment, name), 'the row must change the field'
    fx = dict(study=study, data=data, tmp=tmp_path, mp=monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')                             # cpu_bf16 on a CPU without bf16, VGG weights not found
        a, b = probe(base, fx), probe(new, fx)
    assert not same_value(a, b), f"{part}.{name}: {value!r} changed nothing the probe sees ({a!r})"
