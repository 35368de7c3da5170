"""tools/convert_weights.py: a published I3D or AlexNet file that holds code is turned, once and knowingly, into plain tensors."""
import importlib.util, subprocess, sys, warnings
from pathlib import Path
import pytest
import torch
import torch.nn as nn

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT/'tools'/'convert_weights.py'
spec = importlib.util.spec_from_file_location('convert_weights', TOOL)
cw = importlib.util.module_from_spec(spec); spec.loader.exec_module(cw)


def convert(*args):
    return subprocess.run([sys.executable, TOOL, *map(str, args)], capture_output=True, text=True, timeout=600)


def scripted(module: nn.Module, path: Path, example=None):
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', FutureWarning)                   # torch.jit is deprecated
        torch.jit.save(torch.jit.trace(module, example) if example is not None else torch.jit.script(module), path)
    return path


class Unit(nn.Module):
    "A conv and a batch norm, named as in pytorch-i3d."
    def __init__(self):
        super().__init__(); self.conv3d = nn.Conv3d(3, 4, 1, bias=False); self.bn = nn.BatchNorm3d(4)


def test_tensors_are_matched_by_name_then_in_order():
    target = Unit().state_dict()
    src = {f'module.{k}': torch.randn_like(v.float()) for k, v in target.items() if not k.endswith('num_batches_tracked')}
    mapped, how = cw.map_state_dict(src, target)
    assert how == 'by name' and torch.equal(mapped['bn.bias'], src['module.bn.bias'])
    renamed = {f'layer{i}': v for i, v in enumerate(src.values())}             # other names, same order and shapes
    mapped, how = cw.map_state_dict(renamed, target)
    assert how == 'in order' and torch.equal(mapped['bn.running_var'], renamed['layer4'])
    no_scale = {k: v for k, v in renamed.items() if k != 'layer1'}             # TensorFlow's batch norm has no scale
    mapped, how = cw.map_state_dict(no_scale, target)
    assert how == 'in order, batch-norm scales set to 1' and torch.equal(mapped['bn.weight'], torch.ones(4))
    assert torch.equal(mapped['bn.bias'], renamed['layer2'])
    with pytest.raises(SystemExit, match='not the same architecture'): cw.map_state_dict({'w': torch.zeros(2)}, target)


def test_a_torchscript_of_another_network_is_not_converted(tmp_path):
    r = convert('i3d', scripted(nn.Linear(2, 2), tmp_path/'ts.pt'), '-o', tmp_path/'i3d.pt')
    assert r.returncode != 0 and 'not the same architecture' in r.stderr and not (tmp_path/'i3d.pt').exists()
    assert 'this runs the program stored in it' in r.stdout                   # it says what it does


@pytest.mark.slow
def test_a_torchscript_i3d_becomes_plain_tensors(tmp_path):
    "A TorchScript I3D (here: ours, traced) -> a state dict that load_i3d takes, with the same features."
    from fundus2video.metrics import InceptionI3d, load_i3d, is_torchscript
    torch.manual_seed(0)
    net = InceptionI3d().eval()
    src = scripted(net, tmp_path/'i3d_torchscript.pt', torch.zeros(1, 3, 16, 224, 224))
    out = tmp_path/'hub'/'i3d_pretrained_400.pt'
    r = convert('i3d', src, '-o', out)
    assert r.returncode == 0, r.stderr
    assert 'checked: the same features' in r.stdout and not is_torchscript(out)
    back = load_i3d(out)
    assert torch.equal(back.Mixed_5c.b1b.conv3d.weight, net.Mixed_5c.b1b.conv3d.weight)
