"""Published figures of the baselines, kept as data that measurements are compared with, never used as results:
parameter counts (what the official code or the MMPose config builds), GFLOPs where the authors publish them
(with their own counter) and the heads the official ViTPose configs declare. The tolerance of a parameter
comparison is :data:`mamkpd.paper.tolerances.PARAMS_REL_BASELINE`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class PublishedCount:
    params_m: float  # millions, as published (rounded as printed)
    source: str
    gflops: float | None = None  # at the official input size, as published (with the authors' own counter)


_RTMPOSE_README = "MMPose projects/rtmpose/README.md, Model Zoo, Body 2d (17 Keypoints), 256x192"
_TOKENPOSE_PAPER = "TokenPose paper (ICCV 2021) COCO val2017 table, 256x192"
_PPT_PAPER = "PPT paper (ECCV 2022) COCO val2017 table, 256x192, keep ratio 0.7"
_DITEHRNET_CONFIGS = "ZiyiZhang27/Dite-HRNet ditehrnet_{}_coco_256x192.py as its DiteHRNet builds it"
_KAPAO_PAPER = "KAPAO paper (ECCV 2022) COCO table, 1280x1280 whole image"
_LITEHRNET_CONFIGS = "MMPose 1.3.2 td-hm_litehrnet-{}_8xb64-210e_coco-256x192 as its LiteHRNet builds it"

PUBLISHED_PARAMS: dict[str, PublishedCount] = {
    "hrnet_w32": PublishedCount(28.54, "MMPose model zoo, td-hm_hrnet-w32_8xb64-210e_coco-256x192"),
    "hrnet_w48": PublishedCount(63.6, "HRNet README (pose_hrnet_w48 256x192)"),
    "sbl_res50": PublishedCount(34.0, "HRNet README (pose_resnet_50 256x192)"),
    "sbl_res152": PublishedCount(68.6, "HRNet README (pose_resnet_152 256x192)"),
    "vitpose_s": PublishedCount(24.29, "official ViTPose ViTPose_small_coco_256x192 (classic decoder)"),
    "vitpose_b": PublishedCount(89.99, "official ViTPose ViTPose_base_coco_256x192 (classic decoder)"),
    "vitpose_l": PublishedCount(308.5, "official ViTPose ViTPose_large_coco_256x192 (classic decoder)"),
    "vitpose_s_simple": PublishedCount(21.72, "MMPose 1.x td-hm_ViTPose-small-simple (simple decoder)"),
    "vitpose_b_simple": PublishedCount(85.91, "official ViTPose ViTPose_base_simple_coco_256x192"),
    "vitpose_l_simple": PublishedCount(303.5, "official ViTPose ViTPose_large_simple_coco_256x192"),
    "rtmo_s": PublishedCount(9.87, "MMPose 1.x config rtmo-s_8xb32-600e_coco-640x640"),
    "rtmo_m": PublishedCount(22.53, "MMPose 1.x config rtmo-m_16xb16-600e_coco-640x640"),
    "rtmo_l": PublishedCount(44.69, "MMPose 1.x config rtmo-l_16xb16-600e_coco-640x640"),
    # RTMPose is not in the paper; its README's table (MMPose's counter, multiply-adds, at 256x192)
    "rtmpose_t": PublishedCount(3.34, _RTMPOSE_README, gflops=0.36),
    "rtmpose_s": PublishedCount(5.47, _RTMPOSE_README, gflops=0.68),
    "rtmpose_m": PublishedCount(13.59, _RTMPOSE_README, gflops=1.93),
    "rtmpose_l": PublishedCount(27.66, _RTMPOSE_README, gflops=4.16),
    # TokenPose's README has no model table: its paper's (Li et al., ICCV 2021, arXiv 2104.03516) COCO val table;
    # the abstract's reductions against SimpleBaseline-Res50 and HRNet-W48 give the same S-v1 and L/D24 figures
    "tokenpose_s_v1": PublishedCount(6.6, _TOKENPOSE_PAPER, gflops=2.2),
    "tokenpose_b": PublishedCount(13.5, _TOKENPOSE_PAPER, gflops=5.7),
    "tokenpose_l_d6": PublishedCount(20.8, _TOKENPOSE_PAPER, gflops=9.1),
    "tokenpose_l_d24": PublishedCount(27.5, _TOKENPOSE_PAPER, gflops=11.0),
    # PPT's README has no model table either: its paper's (Ma et al., ECCV 2022, arXiv 2209.08194) COCO val table
    "ppt_s": PublishedCount(6.6, _PPT_PAPER, gflops=1.6),
    "ppt_b": PublishedCount(13.5, _PPT_PAPER, gflops=5.0),
    # Lite-HRNet's README prints 1.1M and 1.8M; the exact counts are what its configs build (MMPose 1.3.2's
    # LiteHRNet, the same network); GFLOPs: the README's FLOPs column (205.2M, 319.2M at 256x192), from its
    # torchstat-based tools/summary_network.py (conv, BN, ReLU, pooling and upsampling modules), which gives
    # 215.2M and 334.7M on MMPose 1.3.2's LiteHRNet: the README's figures are not reproduced to the MFLOP
    "litehrnet_18": PublishedCount(1.1308, _LITEHRNET_CONFIGS.format(18), gflops=0.2052),
    "litehrnet_30": PublishedCount(1.7637, _LITEHRNET_CONFIGS.format(30), gflops=0.3192),
    # the same network at 384x288: its README's 717.8M FLOPs (a torchstat-based counter), Table 2's 0.7 GFLOPs
    "litehrnet_30_384x288": PublishedCount(
        1.7637, "HRNet/Lite-HRNet README, litehrnet_30_coco_384x288 (params as MMPose builds -30)", gflops=0.7178
    ),
    # Dite-HRNet's README prints 1.1M and 1.8M (truncated); the exact counts are what its code builds from its
    # configs; GFLOPs: the README's FLOPs column (209.8M, 329.8M at 256x192), from the same torchstat-based
    # tool, which as shipped skips the dynamic convs' kernel-bank conv (198.6M and 311.9M)
    "ditehrnet_18": PublishedCount(1.1869, _DITEHRNET_CONFIGS.format(18), gflops=0.2098),
    "ditehrnet_30": PublishedCount(1.8625, _DITEHRNET_CONFIGS.format(30), gflops=0.3298),
    # the same network at 384x288: its README's 741.7M FLOPs (a torchstat-based counter), Table 2's 0.7 GFLOPs
    "ditehrnet_30_384x288": PublishedCount(
        1.8625,
        "ZiyiZhang27/Dite-HRNet README, ditehrnet_30_coco_384x288 (params as its DiteHRNet builds -30)",
        gflops=0.7417,
    ),
    # KAPAO's README has no model table: its paper's (McNally et al., ECCV 2022, arXiv 2111.08557) COCO table, at
    # 1280x1280; its official build (models/yolov5{s,m,l}6.yaml, 18 classes, 34 coordinates) counts 12,559,980,
    # 35,755,404 and 77,047,852; no GFLOPs published
    "kapao_s": PublishedCount(12.6, _KAPAO_PAPER),
    "kapao_m": PublishedCount(35.8, _KAPAO_PAPER),
    "kapao_l": PublishedCount(77.0, _KAPAO_PAPER),
    # I²R-Net's README has no size column: its paper's (Ding et al., IJCAI 2022, arXiv 2206.10892) COCO val2017
    # table, HRFormer-B first stage at 256x192 (its tools/compute_flops.py: DETR's jit counter over the first 100
    # val2017 images, each image's people one group, divided by the people); the official build of
    # interformer_coco_hrt_192_p2_b12.yaml counts 43,720,943
    "i2rnet_hrformer_b": PublishedCount(
        43.7, "I²R-Net paper (IJCAI 2022) COCO val2017 table, HRFormer-B, 256x192", gflops=12.8
    ),
    # the paper prints TokenPose-L/D6's 20.8M (and 8.7 GFLOPs) for PPT-L; its released L/D6 config builds this
    "ppt_l_d6": PublishedCount(
        20.30, "HowieMa/PPT ppt_L_D6_256_192_patch43_dim192_depth6_heads8.yaml as its code builds it"
    ),
}


@dataclass(frozen=True)
class OfficialHead:
    """A heatmap head as an official config file writes it (TopdownHeatmapSimpleHead arguments)."""

    config: str
    num_deconv_layers: int
    upsample: int
    final_conv_kernel: int


# Transcribed from ViTAE-Transformer/ViTPose configs/body/2d_kpt_sview_rgb_img/topdown_heatmap/coco/.
OFFICIAL_VITPOSE_HEADS: dict[tuple[str, str], OfficialHead] = {
    ("s", "classic"): OfficialHead("ViTPose_small_coco_256x192.py", 2, 0, 1),
    ("s", "simple"): OfficialHead("ViTPose_small_simple_coco_256x192.py", 2, 0, 1),
    ("b", "classic"): OfficialHead("ViTPose_base_coco_256x192.py", 2, 0, 1),
    ("b", "simple"): OfficialHead("ViTPose_base_simple_coco_256x192.py", 0, 4, 3),
    ("l", "classic"): OfficialHead("ViTPose_large_coco_256x192.py", 2, 0, 1),
    ("l", "simple"): OfficialHead("ViTPose_large_simple_coco_256x192.py", 0, 4, 3),
}
