"""Paper cells the suite measured and found not to reproduce, each with the reason in words.

Keyed by (table, row, metric). The reproductions mark these ``xfail(strict=True)``: the row still
runs and is recorded; should a change make it reproduce, the strict xfail fails and this entry must go.
A cell the paper printed for another variant than the row's model (ViTPose-B's 86.0M, the simple decoder's)
is no discrepancy: the paper table's ``compare_with`` column names that variant, and the cell is compared with it.
"""

_HRNET_COUNTER = (
    "the paper's figure comes from the HRNet repository's counter (conv and linear layers only, "
    "a transposed conv charged on its output size, divided by 2^30), not fvcore's multiply-adds; "
    "the report shows both counts"
)
_MAMKPD_GFLOPS = (
    "the reading of the architecture that fits the paper's parameter counts does not give the printed "
    "GFLOPs under fvcore's multiply-add count at 256x192 with the scan counted by Mamba's formula; "
    "the report's readings table shows where every reading lands"
)

_HRNET_FAMILY_384 = (
    "0.7 is {}'s 384x288 figure (README: {}M, from its torchstat-based counter); the row's model at 256x192 "
    "costs {} in its README, {} under fvcore's multiply-adds ({} at 384x288)"
)

KNOWN_DISCREPANCIES: dict[tuple[str, str, str], str] = {
    ("fig1", "Dite-HRNet", "params_m"): "the paper prints Lite-HRNet-30 and Dite-HRNet-30 both as 1.8M (1.764M "
    "rounded, 1.863M truncated), a tie; measured, Dite-HRNet-30 is the larger of the two and ranks one place up",
    ("table2", "MamKPD-S", "params_m"): "Small as described (Base without the stem) has about 0.7M more "
    "parameters than the printed 6.3M under every reading",
    ("table2", "MamKPD-S", "gflops"): "0.5 GFLOPs is below what Small's own blocks and dimensions cost under any "
    "reading of the architecture",
    ("table2", "MamKPD-B", "gflops"): _MAMKPD_GFLOPS,
    ("table2", "MamKPD-L", "gflops"): _MAMKPD_GFLOPS,
    ("table2", "ViTPose-B", "gflops"): "17.1 GFLOPs is the ViT-B backbone alone; the classic decoder adds its "
    "two deconvolutions",
    ("table2", "SBL-Res50", "gflops"): _HRNET_COUNTER,
    ("table2", "SBL-Res152", "gflops"): _HRNET_COUNTER,
    ("table2", "HRNet-W32", "gflops"): _HRNET_COUNTER,
    ("table2", "HRNet-W48", "gflops"): _HRNET_COUNTER,
    ("table2", "TokenPose-S", "gflops"): _HRNET_COUNTER + " (TokenPose-S-v1's 2.2; fvcore adds the attention products)",
    ("table2", "PPT-B", "gflops"): _HRNET_COUNTER + " (5.04 there; fvcore adds the attention products)",
    ("table2", "PPT-L", "gflops"): "the released code prunes a depth-6 transformer once, after layer 3 (pruning_loc "
    "[3, 6, 9]): 8.94 GFLOPs under the HRNet repository's counter, more under fvcore's multiply-adds; the printed "
    "8.7 is what pruning after layers 1, 2 and 3 would give (8.71), which no released config sets",
    ("table2", "TokenPose-L", "gflops"): _HRNET_COUNTER + " (TokenPose-L/D6's 9.1; fvcore adds the attention products)",
    ("table2", "I2R-Net", "gflops"): "12.8 GFLOPs is not what the official build counts under fvcore's multiply-adds "
    "(14.2 per person crop at 256x192, about 1.2 of it HRFormer's window projections of the zero padding of its 7x7 "
    "windows) nor under the repository's own tools/compute_flops.py counter (10.1 per person under torch 2.13: "
    "DETR's jit counter, which skips linear layers, GELU and upsampling)",
    ("table2", "Lite-HRNet", "params_m"): "1.8M is the Lite-HRNet README's rounding of Lite-HRNet-30's 1.764M (the "
    "count its config builds, 2% below the printed figure)",
    ("table2", "Lite-HRNet", "gflops"): _HRNET_FAMILY_384.format("Lite-HRNet-30", 717.8, 0.32, 0.34, 0.77),
    ("table2", "Dite-HRNet", "params_m"): "1.8M is the Dite-HRNet README's truncation of Dite-HRNet-30's 1.863M (the "
    "count its code builds from its config, 3% above the printed figure)",
    ("table2", "Dite-HRNet", "gflops"): _HRNET_FAMILY_384.format("Dite-HRNet-30", 741.7, 0.33, 0.36, "0.80"),
    ("table4", "HRNet-W48", "params_m"): "Table 4 prints HRNet-W32's 28.5M for HRNet-W48 (Table 2 prints 63.6M)",
    # Tables 1 and 5 (MamKPD's own size columns)
    ("table1", "MamKPD-Small", "params_m"): "Small as described (Base without the stem) has about 0.7M more "
    "parameters than the printed 6.3M under every reading",
    ("table1", "MamKPD-Small", "gflops"): "0.5 GFLOPs is below what Small's own blocks and dimensions cost under any "
    "reading of the architecture",
    ("table1", "MamKPD-Base", "gflops"): _MAMKPD_GFLOPS,
    ("table1", "MamKPD-Large", "gflops"): _MAMKPD_GFLOPS,
    ("table5", "(a)", "gflops"): "(a) halves every stage's blocks of MamKPD-B yet is printed at 2.9 GFLOPs against "
    "B's 3.1: the SS2D blocks would have to cost almost nothing, which no reading gives",
    ("table5", "(b)", "gflops"): _MAMKPD_GFLOPS,
    ("table5", "(c)", "gflops"): _MAMKPD_GFLOPS,
    ("table5", "(d)", "gflops"): "(d) doubles B's widths, which roughly quadruples the linear and scan cost of every "
    "block; the printed 7.1 GFLOPs is far below that under any reading",
    ("table5", "Ours", "gflops"): _MAMKPD_GFLOPS,
}
