"""Import the real spandrel on this CI machine, whose torch is a CPU build that PyPI's torchvision does not match.

spandrel imports torchvision when it is imported (two of its architectures,
LaMa and RestoreFormer, use its transforms). PyPI's torchvision is built
against the CUDA torch, so beside the CPU torch file its compiled operators
cannot load, and its import then stops while registering shape functions for
them ("operator torchvision::nms does not exist"). Here, and only in the
tests, those operators are declared (schemas only, no kernels: they stay as
unavailable as they already were) so that torchvision's Python package
imports. Nothing FDIWN or the architectures tested here run touches
torchvision. On a machine whose torch and torchvision match, nothing is done.
"""

from __future__ import annotations

import sys
from types import ModuleType

import torch

_ROI = "SymInt pooled_height, SymInt pooled_width"
_SIZES = "SymInt batch_size, SymInt channels, SymInt height, SymInt width"
_DEFORM = (
    "Tensor input, Tensor weight, Tensor offset, Tensor mask, Tensor bias, SymInt stride_h, SymInt stride_w, "
    "SymInt pad_h, SymInt pad_w, SymInt dilation_h, SymInt dilation_w, SymInt groups, SymInt offset_groups, "
    "bool use_mask"
)
# torchvision's operator schemas (torchvision/csrc/ops/*.cpp).
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    f"roi_align(Tensor input, Tensor rois, float spatial_scale, {_ROI}, int sampling_ratio, bool aligned) -> Tensor",
    f"_roi_align_backward(Tensor grad, Tensor rois, float spatial_scale, {_ROI}, {_SIZES}, int sampling_ratio, "
    "bool aligned) -> Tensor",
    "qroi_align(Tensor input, Tensor rois, float input_scale, int input_zero_point, float rois_scale, "
    f"int rois_zero_point, float spatial_scale, {_ROI}, int sampling_ratio, bool aligned) -> Tensor",
    f"ps_roi_align(Tensor input, Tensor rois, float spatial_scale, {_ROI}, int sampling_ratio) -> (Tensor, Tensor)",
    f"_ps_roi_align_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, {_ROI}, "
    f"int sampling_ratio, {_SIZES}) -> Tensor",
    f"roi_pool(Tensor input, Tensor rois, float spatial_scale, {_ROI}) -> (Tensor, Tensor)",
    f"_roi_pool_backward(Tensor grad, Tensor rois, Tensor argmax, float spatial_scale, {_ROI}, {_SIZES}) -> Tensor",
    f"ps_roi_pool(Tensor input, Tensor rois, float spatial_scale, {_ROI}) -> (Tensor, Tensor)",
    f"_ps_roi_pool_backward(Tensor grad, Tensor rois, Tensor channel_mapping, float spatial_scale, {_ROI}, "
    f"{_SIZES}) -> Tensor",
    f"deform_conv2d({_DEFORM}) -> Tensor",
    f"_deform_conv2d_backward(Tensor grad, {_DEFORM}) -> (Tensor, Tensor, Tensor, Tensor, Tensor)",
)
_declared: list[torch.library.Library] = []  # kept alive: a Library's definitions go with it


def import_spandrel() -> ModuleType:
    try:
        import torchvision  # noqa: F401
    except RuntimeError as e:
        if "torchvision::" not in str(e):
            raise
        for name in [m for m in sys.modules if m == "torchvision" or m.startswith("torchvision.")]:
            del sys.modules[name]
        lib = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            lib.define(schema)
        _declared.append(lib)
    import spandrel

    return spandrel
