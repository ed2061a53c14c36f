# variants.cmake — shader variants: one SPIR-V module per row, compiled from a shared body with
# glslc -D flags (no stub .comp files). Read by the shader section of CMakeLists.txt.
#
#   vkp_shader_variant(<name> <body>.glsl [DEFINE[=VALUE]]...)
#
# <name> is the pipeline name C code asks for (vkp_rec_dispatch(rec, "<name>", ...)) and the
# module's file stem in the build (shaders/<name>.spv); it must not also be a shaders/<name>.comp.
# Each DEFINE becomes -DDEFINE (values may name constants of the body's push header, e.g.
# VKP_EW_ADD from push/elementwise.h: the macro expands inside the body). Editing a row rebuilds
# that row's module only; editing a body rebuilds every row that compiles it (depfiles).

# ---- binary.glsl: broadcasting elementwise binary ops, one kernel per op (no switch on pc.op)
vkp_shader_variant(binary_add        binary.glsl  VKP_BINARY_OP=VKP_EW_ADD)
vkp_shader_variant(binary_sub        binary.glsl  VKP_BINARY_OP=VKP_EW_SUB)
vkp_shader_variant(binary_mul        binary.glsl  VKP_BINARY_OP=VKP_EW_MUL)
vkp_shader_variant(binary_div        binary.glsl  VKP_BINARY_OP=VKP_EW_DIV)

# ---- unary.glsl: activations and pointwise maps, forward and backward, one kernel per op
vkp_shader_variant(unary_scale       unary.glsl   VKP_UNARY_OP=VKP_EW_SCALE)      # alpha * x + beta
vkp_shader_variant(unary_gelu        unary.glsl   VKP_UNARY_OP=VKP_EW_GELU_ERF)   # GELU, erf form
vkp_shader_variant(unary_gelu_tanh   unary.glsl   VKP_UNARY_OP=VKP_EW_GELU_TANH)  # GELU, tanh form
vkp_shader_variant(unary_silu        unary.glsl   VKP_UNARY_OP=VKP_EW_SILU)
vkp_shader_variant(unary_relu        unary.glsl   VKP_UNARY_OP=VKP_EW_RELU)
vkp_shader_variant(unary_sigmoid     unary.glsl   VKP_UNARY_OP=VKP_EW_SIGMOID)
vkp_shader_variant(unary_tanh        unary.glsl   VKP_UNARY_OP=VKP_EW_TANH)
vkp_shader_variant(unary_exp         unary.glsl   VKP_UNARY_OP=VKP_EW_EXP)
vkp_shader_variant(unary_log         unary.glsl   VKP_UNARY_OP=VKP_EW_LOG)
vkp_shader_variant(unary_sqr         unary.glsl   VKP_UNARY_OP=VKP_EW_SQR)
vkp_shader_variant(unary_sqrt        unary.glsl   VKP_UNARY_OP=VKP_EW_SQRT)

# ---- attention.glsl: fused attention, kernel (ATTN_FWD / ATTN_DQ / ATTN_DKV) x head-dim
# capacity DV; core/ops/attention.c asks for attention_<kernel>_d<DV> with the smallest DV >= D.
# RB=2: the backward kernels up to DV 64 own two rows per invocation (measured faster on lavapipe;
# the forward's online-softmax state made it slower there, so it keeps one).
vkp_shader_variant(attention_fwd_d16   attention.glsl  ATTN_FWD  DV=16)
vkp_shader_variant(attention_fwd_d32   attention.glsl  ATTN_FWD  DV=32)
vkp_shader_variant(attention_fwd_d64   attention.glsl  ATTN_FWD  DV=64)
vkp_shader_variant(attention_fwd_d128  attention.glsl  ATTN_FWD  DV=128)
vkp_shader_variant(attention_fwd_d160  attention.glsl  ATTN_FWD  DV=160)
vkp_shader_variant(attention_dq_d16    attention.glsl  ATTN_DQ   DV=16 RB=2)
vkp_shader_variant(attention_dq_d32    attention.glsl  ATTN_DQ   DV=32 RB=2)
vkp_shader_variant(attention_dq_d64    attention.glsl  ATTN_DQ   DV=64 RB=2)
vkp_shader_variant(attention_dq_d128   attention.glsl  ATTN_DQ   DV=128)
vkp_shader_variant(attention_dq_d160   attention.glsl  ATTN_DQ   DV=160)
vkp_shader_variant(attention_dkv_d16   attention.glsl  ATTN_DKV  DV=16 RB=2)
vkp_shader_variant(attention_dkv_d32   attention.glsl  ATTN_DKV  DV=32 RB=2)
vkp_shader_variant(attention_dkv_d64   attention.glsl  ATTN_DKV  DV=64 RB=2)
vkp_shader_variant(attention_dkv_d128  attention.glsl  ATTN_DKV  DV=128)
vkp_shader_variant(attention_dkv_d160  attention.glsl  ATTN_DKV  DV=160)
# attention_wide.glsl: the same kernels for head dims past 160, each row split over 8 lanes;
# core/ops/attention.c asks for attention_<kernel>_w<DV> with the smallest DV >= D.
vkp_shader_variant(attention_fwd_w256   attention_wide.glsl  ATTN_FWD  DV=256 RB=4)
vkp_shader_variant(attention_fwd_w512   attention_wide.glsl  ATTN_FWD  DV=512 RB=4)
vkp_shader_variant(attention_fwd_w1024  attention_wide.glsl  ATTN_FWD  DV=1024 RB=4)
vkp_shader_variant(attention_dq_w256    attention_wide.glsl  ATTN_DQ   DV=256 RB=4)
vkp_shader_variant(attention_dq_w512    attention_wide.glsl  ATTN_DQ   DV=512 RB=4)
vkp_shader_variant(attention_dq_w1024   attention_wide.glsl  ATTN_DQ   DV=1024 RB=4)
vkp_shader_variant(attention_dkv_w256   attention_wide.glsl  ATTN_DKV  DV=256 RB=4)
vkp_shader_variant(attention_dkv_w512   attention_wide.glsl  ATTN_DKV  DV=512 RB=4)
vkp_shader_variant(attention_dkv_w1024  attention_wide.glsl  ATTN_DKV  DV=1024 RB=4)

# ---- matmul_tile.glsl: register-blocked direct matmul, layout x B storage; TM rows per lane,
# TP B-pair loads per lane and step, UJ inner unroll. core/ops/matmul.c (mm_pick) picks the row
# and sizes the workgroup tile for TM = 8 rows and TC = 2 columns per lane: keep them in step.
vkp_shader_variant(matmul_nn         matmul_tile.glsl  MM_NN                  TM=8 TP=1 UJ=2)
vkp_shader_variant(matmul_nt         matmul_tile.glsl  MM_NT                  TM=8 TP=2 UJ=2)
vkp_shader_variant(matmul_tn         matmul_tile.glsl  MM_TN                  TM=8 TP=1 UJ=2)
vkp_shader_variant(matmul_nn_f16     matmul_tile.glsl  MM_NN MM_B16           TM=8 TP=1 UJ=2)
vkp_shader_variant(matmul_nt_f16     matmul_tile.glsl  MM_NT MM_B16           TM=8 TP=2 UJ=2)
vkp_shader_variant(matmul_nn_bf16    matmul_tile.glsl  MM_NN MM_B16 MM_BF16   TM=8 TP=1 UJ=2)
vkp_shader_variant(matmul_nt_bf16    matmul_tile.glsl  MM_NT MM_B16 MM_BF16   TM=8 TP=2 UJ=2)

# ---- matmul_skinny.glsl: lanes along M for products with few columns (LoRA's rank-r products);
# TR rows per invocation, NB columns per workgroup column block (core/ops/matmul.c, mm_skinny).
vkp_shader_variant(matmul_skinny_ak_bk  matmul_skinny.glsl  SK_AK SK_BK  TR=4 NB=8 WG=8 UK=2)
vkp_shader_variant(matmul_skinny_ak_bn  matmul_skinny.glsl  SK_AK SK_BN  TR=4 NB=8 WG=8 UK=2)
vkp_shader_variant(matmul_skinny_am_bk  matmul_skinny.glsl  SK_AM SK_BK  TR=4 NB=8 WG=8 UK=2)
vkp_shader_variant(matmul_skinny_am_bn  matmul_skinny.glsl  SK_AM SK_BN  TR=4 NB=8 WG=8 UK=2)

# ---- matmul_gpu.glsl: shared-memory tiles, the matmul of the GPU kernel family (vkp_ctx_kernels);
# BM x BN outputs per workgroup, BK k per stage, TM x TN per invocation ((BM/TM)*(BN/TN) invocations,
# 4 * BK * (BM + BN + 2) bytes of shared memory). core/ops/matmul.c (mm_gpu_pick)
# takes the largest tile the device's limits allow that still gives the product enough workgroups.
vkp_shader_variant(matmul_gpu_128  matmul_gpu.glsl  BM=128 BN=128 BK=8  TM=8 TN=8)   # 256 invocations, 8.1 KiB
vkp_shader_variant(matmul_gpu_64   matmul_gpu.glsl  BM=64  BN=64  BK=16 TM=4 TN=4)   # 256 invocations, 8.1 KiB
vkp_shader_variant(matmul_gpu_32   matmul_gpu.glsl  BM=32  BN=32  BK=16 TM=4 TN=4)   # 64 invocations, 4.1 KiB

# ---- group norm fused with SiLU (core/ops/norm.c, vkp_group_norm_silu): the group norm kernels
# themselves as bodies, with -DGN_SILU (forward y = silu(norm), backward through SiLU's derivative
# at the recomputed pre-SiLU value). The plain kernels stay shaders/group_norm*.comp.
vkp_shader_variant(group_norm_silu           group_norm.comp           GN_SILU)
vkp_shader_variant(group_norm_backward_silu  group_norm_backward.comp  GN_SILU)
vkp_shader_variant(group_norm_dwdb_silu      group_norm_dwdb.comp      GN_SILU)

# ---- layer_norm_rows.glsl: layer norm over rows of up to 2 S NP elements kept in registers, one
# subgroup per row (core/ops/norm.c, short_rows): forward and dx, NP pairs per lane.
vkp_shader_variant(layer_norm_fwd_p4    layer_norm_rows.glsl  LN_FWD  NP=4)
vkp_shader_variant(layer_norm_fwd_p12   layer_norm_rows.glsl  LN_FWD  NP=12)
vkp_shader_variant(layer_norm_fwd_p24   layer_norm_rows.glsl  LN_FWD  NP=24)
vkp_shader_variant(layer_norm_fwd_p48   layer_norm_rows.glsl  LN_FWD  NP=48)
vkp_shader_variant(layer_norm_dx_p4     layer_norm_rows.glsl  LN_DX   NP=4)
vkp_shader_variant(layer_norm_dx_p12    layer_norm_rows.glsl  LN_DX   NP=12)
vkp_shader_variant(layer_norm_dx_p24    layer_norm_rows.glsl  LN_DX   NP=24)
vkp_shader_variant(layer_norm_dx_p48    layer_norm_rows.glsl  LN_DX   NP=48)
