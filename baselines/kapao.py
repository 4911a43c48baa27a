"""KAPAO (McNally et al., ECCV 2022): keypoints and poses as objects, one-stage, on YOLOv5's P6 models.

A YOLOv5-P6 detector (Focus stem, CSP ``C3`` blocks, SPP, a PAN neck over strides 8 to 64) whose Detect head
predicts, per anchor and cell, a box, an objectness, 1 + K classes (a *pose object*, the person, or one of the
K *keypoint objects*) and the person's K keypoints as offsets from the cell. Module names are the official
``models/yolo.py`` ``Model``'s (``model.0.conv.conv.weight`` ... ``model.33.m.3.bias``, with the ``anchors`` and
``anchor_grid`` buffers), so the state_dict of the released checkpoints (``kapao_{s,m,l}_coco.pt``, which pickle
the whole model: ``ckpt["model"].float().state_dict()``) loads strictly.

One sample is a whole RGB image scaled to [0, 1] and letterboxed (padding 114/255) to 1280x1280, the size of the
published figures. ``forward`` is the dense network pass (what params, GFLOPs and FPS measure): the head's raw
level maps. :meth:`KAPAO.dense` is the Detect head's inference transform and :meth:`KAPAO.decode` turns it into
people as the official ``val.py`` does: ``run_nms`` (pose objects and keypoint objects, each with its own
thresholds and class-offset NMS), then ``post_process_batch``'s fusion (a keypoint object overwrites the nearest
same-type keypoint of a confident pose object when it is more confident and within ``overwrite_tol`` pixels).
:meth:`KAPAO.dense_augmented` is ``Model.forward_augment``, the test-time augmentation of the published test
figures (scales 0.8, 1 and 1.2, the middle one flipped), whose output :meth:`KAPAO.decode_dense` decodes the same way.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mamkpd.codecs.letterbox import Placement, WholeImageInput
from mamkpd.models.registry import check_input_size, register_model

from .rtmo import Focus, nms, yolox_conv

INPUT_SIZE = (1280, 1280)
STRIDES = (8, 16, 32, 64)
# models/yolov5{s,m,l}6.yaml: three anchors (w, h in input pixels) per level, the same for every size
ANCHORS = (
    ((19, 27), (44, 40), (38, 94)),
    ((96, 68), (86, 152), (180, 137)),
    ((140, 301), (303, 264), (238, 542)),
    ((436, 615), (739, 380), (925, 792)),
)
TTA_SCALES = (0.8, 1.0, 1.2)  # val.py --scales 0.8 1 1.2 --flips -1 3 -1: the README's test-dev commands
TTA_FLIPS = (False, True, False)
TTA_PAD = 0.447  # utils/torch_utils.py scale_img pads a rescaled image with this value
COCO_FLIP = (0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15)  # data/coco-kp.yaml kp_flip
CLASS_OFFSET = 4096  # utils/general.py non_max_suppression_kp: boxes of different classes never overlap
MAX_NMS = 30000  # candidates into NMS, by confidence


def conv(cin: int, cout: int, kernel: int = 1, stride: int = 1) -> nn.Module:
    """YOLOv5's ``Conv``: conv (no bias), BN (eps 1e-3, momentum 0.03 after ``initialize_weights``), SiLU."""
    return yolox_conv(cin, cout, kernel, stride)


class Bottleneck(nn.Module):
    def __init__(self, channels: int, shortcut: bool):
        super().__init__()
        self.cv1 = conv(channels, channels, 1)
        self.cv2 = conv(channels, channels, 3)
        self.add = shortcut

    def forward(self, x: Tensor) -> Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


class C3(nn.Module):
    """CSP bottleneck with 3 convs: ``cv3(cat(m(cv1(x)), cv2(x)))``."""

    def __init__(self, cin: int, cout: int, blocks: int, shortcut: bool = True):
        super().__init__()
        hidden = cout // 2
        self.cv1 = conv(cin, hidden)
        self.cv2 = conv(cin, hidden)
        self.cv3 = conv(2 * hidden, cout)
        self.m = nn.Sequential(*(Bottleneck(hidden, shortcut) for _ in range(blocks)))

    def forward(self, x: Tensor) -> Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), dim=1))


class SPP(nn.Module):
    """Spatial pyramid pooling: 1x1 conv to half width, the map and its max pools concatenated, 1x1 conv."""

    def __init__(self, cin: int, cout: int, kernels: tuple[int, ...]):
        super().__init__()
        hidden = cin // 2
        self.cv1 = conv(cin, hidden)
        self.cv2 = conv(hidden * (len(kernels) + 1), cout)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernels)

    def forward(self, x: Tensor) -> Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [pool(x) for pool in self.m], dim=1))


class Upsample(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return F.interpolate(x, scale_factor=2.0, mode="nearest")


class Concat(nn.Module):
    def forward(self, xs: list[Tensor]) -> Tensor:
        return torch.cat(xs, dim=1)


class Detect(nn.Module):
    """A 1x1 conv per level to ``anchors x outputs`` channels; ``anchors`` (in level cells) and ``anchor_grid``
    (in input pixels) are the official buffers."""

    def __init__(self, in_channels: list[int], outputs: int, num_classes: int):
        super().__init__()
        self.no, self.na = outputs, len(ANCHORS[0])
        a = torch.tensor(ANCHORS, dtype=torch.float32)
        self.register_buffer("anchors", a / torch.tensor(STRIDES, dtype=torch.float32).view(-1, 1, 1))
        self.register_buffer("anchor_grid", a.clone().view(len(STRIDES), 1, -1, 1, 1, 2))
        self.m = nn.ModuleList(nn.Conv2d(c, self.no * self.na, 1) for c in in_channels)
        with torch.no_grad():  # Model._initialize_biases: 8 objects per 640 image, a 0.6 class prior
            for conv_, s in zip(self.m, STRIDES, strict=True):
                b = conv_.bias.view(self.na, -1)
                b[:, 4] += math.log(8 / (640 / s) ** 2)
                b[:, 5 : 5 + num_classes] += math.log(0.6 / (num_classes - 0.99))

    def forward(self, xs: list[Tensor]) -> tuple[Tensor, ...]:
        out = []
        for conv_, x in zip(self.m, xs, strict=True):
            y = conv_(x)
            n, _, h, w = y.shape
            out.append(y.view(n, self.na, self.no, h, w).permute(0, 1, 3, 4, 2).contiguous())
        return tuple(out)


@dataclass(frozen=True)
class KAPAOConfig:
    depth: float  # depth_multiple of models/yolov5{s,m,l}6.yaml
    width: float  # width_multiple


KAPAO_SIZES = {"s": KAPAOConfig(0.33, 0.50), "m": KAPAOConfig(0.67, 0.75), "l": KAPAOConfig(1.0, 1.0)}


@dataclass(frozen=True)
class KAPAODecoding:
    """val.py ``run()``'s defaults, the settings of the published COCO figures."""

    conf_thres: float = 0.001  # pose objects: objectness x class confidence
    iou_thres: float = 0.65
    conf_thres_kp: float = 0.2  # keypoint objects
    iou_thres_kp: float = 0.25
    conf_thres_kp_person: float = 0.3  # pose objects that keypoint objects may correct
    overwrite_tol: float = 50.0  # input pixels between a keypoint object and the keypoint it replaces
    max_det: int = 300


def _xywh_to_xyxy(b: Tensor) -> Tensor:
    return torch.cat((b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2), dim=-1)


def _clip_first_points(t: Tensor, h: int, w: int) -> Tensor:
    """utils/general.py ``clip_coords`` on rows of (x, y) pairs: only the first two pairs (a box's corners, but a
    pose's first two keypoints too, as post_process_batch calls it on poses) are clipped to the image."""
    t = t.clone()
    for col, limit in ((0, w), (1, h), (2, w), (3, h)):
        t[:, col] = t[:, col].clamp(0, limit)
    return t


class KAPAO(nn.Module):
    """(N, 3, H, W) RGB image in [0, 1] -> the head's raw maps, one (N, 3, H/s, W/s, 6 + 3K) tensor per stride
    s in 8, 16, 32, 64: box (4), objectness, 1 + K class logits, 2K keypoint offsets."""

    sample = "whole image"
    # val.py: RGB in [0, 1], the long side resized to the input size, padded with 114/255 up to whole stride-64
    # cells (--rect, the non-augmented figures) or to the full square (the test-time augmentation's figures)
    whole_image_input = WholeImageInput(
        resampling="resize_pad",
        channels="rgb",
        divide_by=255.0,
        pad_value=114.0,
        rect_stride=STRIDES[-1],
        augments=True,
    )

    def __init__(
        self, cfg: KAPAOConfig, num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE, name: str = "KAPAO"
    ):
        super().__init__()
        self.input_size = check_input_size(input_size, STRIDES[-1], name)  # the whole image, down to stride 64
        self.num_keypoints = num_keypoints
        self.num_classes = 1 + num_keypoints  # the pose object, then one keypoint object per keypoint

        def width(c: int) -> int:  # utils/general.py make_divisible(c * width_multiple, 8)
            return math.ceil(c * cfg.width / 8) * 8

        def depth(n: int) -> int:
            return max(round(n * cfg.depth), 1)

        c64, c128, c256, c512, c768, c1024 = (width(c) for c in (64, 128, 256, 512, 768, 1024))
        layers: list[nn.Module] = [Focus(c64), conv(c64, c128, 3, 2), C3(c128, c128, depth(3))]  # 0-2
        # backbone, 3-11: a stride-2 conv and a C3 per level (P3 to P6), SPP before P6's C3
        for cin, cout, blocks in ((c128, c256, 9), (c256, c512, 9), (c512, c768, 3)):
            layers += [conv(cin, cout, 3, 2), C3(cout, cout, depth(blocks))]
        layers += [conv(c768, c1024, 3, 2), SPP(c1024, c1024, (3, 5, 7)), C3(c1024, c1024, depth(3), False)]
        # top-down, 12-23: 1x1 conv (kept for the bottom-up path), upsample, concat with the backbone level, C3
        for cin, cout in ((c1024, c768), (c768, c512), (c512, c256)):
            layers += [conv(cin, cout), Upsample(), Concat(), C3(2 * cout, cout, depth(3), False)]
        # bottom-up, 24-32: stride-2 conv, concat with the top-down 1x1 conv of that level, C3
        for cin, cout in ((c256, c512), (c512, c768), (c768, c1024)):
            layers += [conv(cin, cin, 3, 2), Concat(), C3(2 * cin, cout, depth(3), False)]
        outputs = 5 + self.num_classes + 2 * num_keypoints
        layers.append(Detect([c256, c512, c768, c1024], outputs, self.num_classes))  # 33
        self.model = nn.ModuleList(layers)

    # which earlier layer's output each Concat takes besides its input (models/yolov5*6.yaml "from")
    SKIPS = {14: 8, 18: 6, 22: 4, 25: 20, 28: 16, 31: 12}
    HEAD_INPUTS = (23, 26, 29, 32)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        saved: dict[int, Tensor] = {}
        keep = set(self.SKIPS.values()) | set(self.HEAD_INPUTS)
        for i, layer in enumerate(self.model[:-1]):
            x = layer([x, saved[self.SKIPS[i]]]) if i in self.SKIPS else layer(x)
            if i in keep:
                saved[i] = x
        return self.model[-1]([saved[i] for i in self.HEAD_INPUTS])

    def dense(self, outputs: tuple[Tensor, ...]) -> Tensor:
        """Detect's inference output (N, P, 6 + 3K) in input pixels, level by level, anchor-major: box centre and
        size, then objectness and class probabilities, then the K keypoints' (x, y)."""
        detect, k2 = self.model[-1], 2 * self.num_keypoints
        out = []
        for level, (raw, stride) in enumerate(zip(outputs, STRIDES, strict=True)):
            n, na, h, w, no = raw.shape
            ys, xs = torch.meshgrid(
                torch.arange(h, device=raw.device), torch.arange(w, device=raw.device), indexing="ij"
            )
            grid = torch.stack((xs, ys), -1).view(1, 1, h, w, 2).float()
            anchor = detect.anchor_grid[level]  # (1, na, 1, 1, 2) pixels
            y = raw.sigmoid()
            xy = (y[..., 0:2] * 2 - 0.5 + grid) * stride
            wh = (y[..., 2:4] * 2) ** 2 * anchor
            # keypoints: offsets of up to two anchor sizes from the cell's corner
            kp = (y[..., -k2:] * 4 - 2) * anchor.repeat(1, 1, 1, 1, k2 // 2) + (grid * stride).repeat(
                1, 1, 1, 1, k2 // 2
            )
            out.append(torch.cat((xy, wh, y[..., 4:-k2], kp), -1).view(n, -1, no))
        return torch.cat(out, 1)

    def dense_augmented(
        self,
        x: Tensor,
        flip_index: tuple[int, ...] = COCO_FLIP,
        scales: tuple[float, ...] = TTA_SCALES,
        flips: tuple[bool, ...] = TTA_FLIPS,
    ) -> Tensor:
        """``Model.forward_augment``: the input rescaled (bilinear, padded to whole stride-64 cells) and optionally
        flipped left-right, each pass's :meth:`dense` output mapped back to the input (coordinates divided by the
        scale; after a flip, x mirrored and the left/right keypoint classes and coordinates swapped by
        ``flip_index``), all passes concatenated."""
        h, w = x.shape[-2:]
        k, flip = self.num_keypoints, list(flip_index)
        out = []
        for scale, flipped in zip(scales, flips, strict=True):
            xi = x.flip(-1) if flipped else x
            if scale != 1.0:
                size = (int(h * scale), int(w * scale))
                xi = F.interpolate(xi, size=size, mode="bilinear", align_corners=False)
                ph, pw = (math.ceil(d * scale / STRIDES[-1]) * STRIDES[-1] for d in (h, w))
                xi = F.pad(xi, [0, pw - size[1], 0, ph - size[0]], value=TTA_PAD)
            p = self.dense(self(xi))
            p = torch.cat((p[..., :4] / scale, p[..., 4 : -2 * k], p[..., -2 * k :] / scale), -1)
            if flipped:
                cls = p[..., 6 : 6 + k][..., flip]  # the keypoint objects' classes, left for right
                kx, ky = w - p[..., -2 * k :: 2], p[..., -2 * k + 1 :: 2]
                kp = torch.stack((kx[..., flip], ky[..., flip]), -1).flatten(-2)
                p = torch.cat((w - p[..., :1], p[..., 1:6], cls, p[..., 6 + k : -2 * k], kp), -1)
            out.append(p)
        return torch.cat(out, 1)

    def _nms(self, pred: Tensor, conf_thres: float, iou_thres: float, person: bool | None, max_det: int) -> Tensor:
        """utils/general.py ``non_max_suppression_kp`` for one image: rows (x1, y1, x2, y2, conf, class, 2K
        keypoint coordinates); ``person`` keeps only pose objects (True), only keypoint objects (False) or both."""
        k2 = 2 * self.num_keypoints
        x = pred[pred[:, 4] > conf_thres]
        cls = x[:, 5:-k2] * x[:, 4:5]
        conf, j = cls.max(1, keepdim=True)
        x = torch.cat((_xywh_to_xyxy(x[:, :4]), conf, j.float(), x[:, -k2:]), 1)[conf.view(-1) > conf_thres]
        if person is not None:
            x = x[(x[:, 5] == 0) == person]
        if len(x) > MAX_NMS:
            x = x[x[:, 4].argsort(descending=True)[:MAX_NMS]]
        if not len(x):
            return x
        keep = nms(x[:, :4] + x[:, 5:6] * CLASS_OFFSET, x[:, 4], iou_thres)
        return x[keep[:max_det]]

    @torch.no_grad()
    def decode(self, outputs: tuple[Tensor, ...], decoding: KAPAODecoding = KAPAODecoding()) -> list[dict[str, Tensor]]:
        """People per image, in input pixels: ``bboxes`` (M, 4) xyxy, rounded and clipped to the input, ``scores``
        (M,), ``keypoints`` (M, K, 2) and ``keypoint_scores`` (M, K): a fused keypoint object's confidence, 0 for a
        keypoint from the pose object alone (val.py's ``run_nms`` and ``post_process_batch``)."""
        h, w = outputs[0].shape[2] * STRIDES[0], outputs[0].shape[3] * STRIDES[0]
        return self.decode_dense(self.dense(outputs), (h, w), decoding)

    @torch.no_grad()
    def decode_dense(
        self,
        dense: Tensor,
        input_hw: tuple[int, int],
        decoding: KAPAODecoding = KAPAODecoding(),
        placements: Sequence[Placement] | None = None,
    ) -> list[dict[str, Tensor]]:
        """:meth:`decode` from :meth:`dense` (or :meth:`dense_augmented`) outputs for an ``input_hw`` input. With
        each image's letterbox ``placements``, boxes and keypoints are mapped to the image before they are clipped
        and fused (``scale_coords`` in ``post_process_batch``: ``overwrite_tol`` is in image pixels), and the
        people are in image pixels."""
        d, k2 = decoding, 2 * self.num_keypoints
        people = []
        for i, pred in enumerate(dense.float()):
            if d.iou_thres == d.iou_thres_kp and d.conf_thres_kp >= d.conf_thres:  # run_nms's combined NMS
                dets = self._nms(pred, d.conf_thres, d.iou_thres, None, d.max_det)
                person, kp = dets[dets[:, 5] == 0], dets[(dets[:, 4] >= d.conf_thres_kp) & (dets[:, 5] > 0)]
            else:
                person = self._nms(pred, d.conf_thres, d.iou_thres, True, d.max_det)
                kp = self._nms(pred, d.conf_thres_kp, d.iou_thres_kp, False, d.max_det)
            h, w = input_hw
            if placements is not None:
                placement = placements[i]
                h, w = placement.image_hw

                def to_image(t: Tensor, placement: Placement = placement) -> Tensor:
                    return placement.to_image(t.unflatten(-1, (-1, 2))).flatten(-2)

                person = torch.cat((to_image(person[:, :4]), person[:, 4:-k2], to_image(person[:, -k2:])), 1)
                kp = torch.cat((to_image(kp[:, :4]), kp[:, 4:]), 1)
            people.append(self._fuse(person, kp, d, h, w))
        return people

    def _fuse(self, person: Tensor, kp: Tensor, d: KAPAODecoding, h: int, w: int) -> dict[str, Tensor]:
        """post_process_batch's single-stage path with the input as the original image."""
        k = self.num_keypoints
        scores = person[:, 4]
        poses = _clip_first_points(person[:, -2 * k :], h, w).view(-1, k, 2).double()
        conf = poses.new_zeros(poses.shape[:2])
        confident = (scores > d.conf_thres_kp_person).nonzero().flatten()
        if len(kp) and len(confident):
            boxes = _clip_first_points(kp[:, :4], h, w).double()
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2
            for (cx, cy), c, cls in zip(centres.tolist(), kp[:, 4].tolist(), kp[:, 5].long().tolist(), strict=True):
                j = cls - 1
                dist = (poses[confident, j] - poses.new_tensor([cx, cy])).norm(dim=-1)
                best = int(dist.argmin())
                i = confident[best]
                if c > conf[i, j] and dist[best] < d.overwrite_tol:
                    poses[i, j] = poses.new_tensor([cx, cy])
                    conf[i, j] = c
        return {
            "bboxes": _clip_first_points(person[:, :4], h, w).round(),
            "scores": scores,
            "keypoints": poses.float(),
            "keypoint_scores": conf.float(),
        }

    @torch.no_grad()
    def predict(
        self,
        x: Tensor,
        decoding: KAPAODecoding = KAPAODecoding(),
        augment: bool = False,
        placements: Sequence[Placement] | None = None,
    ) -> list[dict[str, Tensor]]:
        """``decode(forward(x))``; with ``augment``, decoded from :meth:`dense_augmented` (the published test
        figures' protocol); with each image's letterbox ``placements``, in image pixels."""
        dense = self.dense_augmented(x) if augment else self.dense(self(x))
        return self.decode_dense(dense, tuple(x.shape[-2:]), decoding, placements)


# One explicit factory per size: a whole 1280x1280 image per sample, decoded by KAPAO.decode.
_REGISTRATION = dict(input_size=INPUT_SIZE, whole_image=True, codec="kapao", tags=("table2", "one-stage"))


@register_model("kapao", **_REGISTRATION)
def kapao_s(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> KAPAO:
    """KAPAO-S (models/yolov5s6.yaml, data/coco-kp.yaml: 18 classes, 34 coordinates; 1280x1280 whole image)."""
    return KAPAO(KAPAO_SIZES["s"], num_keypoints, input_size, "kapao_s")


@register_model("kapao", **_REGISTRATION)
def kapao_m(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> KAPAO:
    """KAPAO-M (models/yolov5m6.yaml, 1280x1280 whole image)."""
    return KAPAO(KAPAO_SIZES["m"], num_keypoints, input_size, "kapao_m")


@register_model("kapao", **_REGISTRATION)
def kapao_l(num_keypoints: int = 17, input_size: tuple[int, int] = INPUT_SIZE) -> KAPAO:
    """KAPAO-L (models/yolov5l6.yaml, 1280x1280 whole image)."""
    return KAPAO(KAPAO_SIZES["l"], num_keypoints, input_size, "kapao_l")
