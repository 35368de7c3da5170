#!/usr/bin/env python
"""Convert a published I3D (FVD) or AlexNet (LPIPS) weights file, once, into the plain tensors fundus2video loads.

fundus2video loads feature-network weights as plain tensors only (`torch.load(..., weights_only=True)`) and never
runs TorchScript, so a weights file that holds code or pickled Python objects is refused. Some published files are
such files: StyleGAN-V's `i3d_torchscript.pt` is a TorchScript program, and some AlexNet files are whole pickled
models. This script loads one of them THE UNSAFE WAY, WHICH RUNS ANY CODE STORED IN IT: run it yourself, once, on a
file from a source you trust. It writes a state dict of tensors only, after checking that fundus2video's own network
with those tensors gives the same features as the original file (when the file holds a network to compare with),
and that fundus2video's safe loader accepts the result.

    python tools/convert_weights.py i3d i3d_torchscript.pt -o ~/.cache/torch/hub/checkpoints/i3d_pretrained_400.pt
    python tools/convert_weights.py alexnet my_alexnet_model.pth -o alexnet_features.pth
"""
import argparse, sys, warnings
from pathlib import Path
import numpy as np
import torch
import torch.nn as nn

TOLERANCE = 1e-3   # largest relative difference between the original's features and ours that counts as the same


def load_trusted(path: Path) -> tuple:
    "(state dict, module or None) from a TorchScript file, a pickled model or a state dict: this RUNS code in the file."
    from fundus2video.metrics import is_torchscript
    if is_torchscript(path):
        print(f"loading {path} as TorchScript: this runs the program stored in it")
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', FutureWarning)
            m = torch.jit.load(str(path), map_location='cpu').eval()
        return dict(m.state_dict()), m
    print(f"loading {path} with full unpickling: this runs any code stored in it")
    obj = torch.load(path, map_location='cpu', weights_only=False)
    if isinstance(obj, nn.Module): return dict(obj.eval().state_dict()), obj
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict): obj = obj['state_dict']
    if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()): return dict(obj), None
    raise SystemExit(f"{path}: holds a {type(obj).__name__}; expected a model, a TorchScript file or a state dict")


def _tensors(sd: dict) -> dict: return {k: v for k, v in sd.items() if not k.endswith('num_batches_tracked')}


def map_state_dict(src: dict, target: dict) -> tuple:
    """(`src`'s tensors under `target`'s names, how): by name where the names match (a 'module.' prefix dropped),
    else in order when every shape agrees; batch norms without a scale (as converted from TensorFlow) get ones."""
    src, tgt = _tensors(src), _tensors(target)
    named = {k.removeprefix('module.'): v for k, v in src.items()}
    if all(k in named and named[k].shape == v.shape for k, v in tgt.items()): return {k: named[k] for k in tgt}, 'by name'
    keys, values = list(tgt), list(src.values())
    how = 'in order'
    if len(values) != len(keys):
        keys, how = [k for k in tgt if not k.endswith('bn.weight')], 'in order, batch-norm scales set to 1'
    if len(values) != len(keys):
        raise SystemExit(f"the file has {len(values)} tensors, the network {len(tgt)}: not the same architecture")
    for i, (k, v) in enumerate(zip(keys, values)):
        if v.shape != tgt[k].shape: raise SystemExit(f"tensor {i} of the file does not fit {k}: {tuple(v.shape)} vs {tuple(tgt[k].shape)}")
    out = dict(zip(keys, values)) | {k: torch.ones_like(v) for k, v in tgt.items() if k not in keys}
    return {k: out[k] for k in tgt}, how


@torch.no_grad()
def reference_features(module, clip: torch.Tensor) -> np.ndarray:
    "The original I3D's features of a clip: StyleGAN-V's call (400 logits, no rescaling) or a plain call."
    try: f = module(clip, rescale=False, resize=False, return_features=True)
    except Exception: f = module(clip)
    if f.ndim == 3: f = f.mean(-1)
    return f.flatten(1).double().numpy()


def relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    return float('inf') if a.shape != b.shape else float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def convert_i3d(sd: dict, module) -> dict:
    from fundus2video.metrics import InceptionI3d, i3d_features
    net = InceptionI3d().eval()
    mapped, how = map_state_dict(sd, net.state_dict())
    net.load_state_dict(mapped, strict=False)
    print(f"matched the file's tensors to pytorch-i3d's InceptionI3d {how}")
    if module is None:
        if how != 'by name': raise SystemExit("the file holds tensors only, matched in order: nothing to check them against; not written")
        return mapped
    clip = torch.rand(1, 3, 16, 224, 224, generator=torch.Generator().manual_seed(0)) * 2 - 1
    d = relative_difference(i3d_features(net, clip), reference_features(module, clip))
    if not d <= TOLERANCE:
        raise SystemExit(f"fundus2video's I3D with these tensors differs from the file's own network (relative difference {d:.3g}): "
                         "its layout is not pytorch-i3d's; nothing written")
    print(f"checked: the same features as the file's own network on a random clip (relative difference {d:.1e})")
    return mapped


def convert_alexnet(sd: dict, module) -> dict:
    import torchvision
    alex = torchvision.models.alexnet().eval()
    feats = {k: v for k, v in sd.items() if k.removeprefix('module.').startswith('features.')} or sd
    target = {k: v for k, v in alex.state_dict().items() if k.startswith('features.')}
    mapped, how = map_state_dict(feats, target)
    alex.load_state_dict(mapped, strict=False)
    print(f"matched the file's tensors to torchvision's AlexNet features {how}")
    if module is not None and hasattr(module, 'features'):
        x = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0))
        with torch.no_grad(): d = relative_difference(alex.features(x).double().numpy(), module.features(x).double().numpy())
        if not d <= TOLERANCE: raise SystemExit(f"AlexNet features differ from the file's own (relative difference {d:.3g}); nothing written")
        print(f"checked: the same features as the file's own network (relative difference {d:.1e})")
    elif how != 'by name': raise SystemExit("the file holds tensors only, matched in order: nothing to check them against; not written")
    return mapped


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    p.add_argument('network', choices=['i3d', 'alexnet'], help='i3d (for FVD) or alexnet (the LPIPS backbone)')
    p.add_argument('source', type=Path, help='the published file, from a source you trust (it is loaded the unsafe way)')
    p.add_argument('-o', '--out', type=Path, required=True, help='the state dict to write (tensors only)')
    a = p.parse_args(argv)
    if not a.source.is_file(): raise SystemExit(f"{a.source}: file not found")
    if a.out.exists() and a.out.resolve() == a.source.resolve(): raise SystemExit(f"-o {a.out}: is the source file; choose another name")
    sd, module = load_trusted(a.source)
    tensors = (convert_i3d if a.network == 'i3d' else convert_alexnet)(sd, module)
    from fundus2video.checkpoint import atomic_save                      # whole or not at all: a full disk leaves no half file
    atomic_save({k: v.detach().contiguous().clone() for k, v in tensors.items()}, a.out)
    from fundus2video.data import StudyError
    from fundus2video.metrics import load_i3d, load_lpips
    try: (load_i3d if a.network == 'i3d' else load_lpips)(a.out)        # the safe loader fundus2video uses accepts it
    except StudyError as e: raise SystemExit(f"written, but fundus2video refuses it: {e}")
    print(f"wrote {a.out}: {len(tensors)} tensors, nothing else; fundus2video loads it with weights_only=True")


if __name__ == '__main__': main()
