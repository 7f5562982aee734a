"""The onnx int8 graph: ONNX Runtime dynamic quantization, weights per channel (QInt8).

Which MatMuls: the exporter tries :func:`candidates` fastest first and keeps the first
whose int8 graph passes the int8 gate (cosine mean >= 0.99, min >= 0.97 to torch fp32) on
the *probe* texts (the tuning set); the graph chosen must then pass the same gate on the
held-out texts, or it is refused. The choice is made on the exporting machine because
int8 kernels, and so agreement, differ by CPU. Cosine of the int8 graph to fp32 (MiniLM):

=====================================  ==============  ===============  =====  ================
MatMuls quantized (per channel, s8)     probe mean/min  held-out m/min   nodes  b32 vs last row
=====================================  ==============  ===============  =====  ================
every weight MatMul                     0.9928/0.9549   0.9931/0.9764    36     ~2.0x
all but the FFN output projections      0.9960/0.9706   0.9963/0.9837    30     ~1.3x
FFN input + attention output            0.9974/0.9767   0.9977/0.9909    12     1
=====================================  ==============  ===============  =====  ================

(Xeon with AVX-512 VNNI/AMX, one thread, texts/s of the graph alone, indicative: a shared
machine.) On an AVX2-only EPYC the probe figures were 0.9919/0.9566, 0.9953/0.9671 and
0.9970/0.9786: only the last set passed there. The FFN *output* projections carry outlier
activations that a dynamic per-tensor scale clips (layer 0's most: leaving only it in
fp32 gave probe min 0.9675); short texts (a one-word reply) suffer most. The attention
score MatMuls (activation x activation) stay fp32. A model without BERT-style names has
one candidate: every weight MatMul.

Tried on MiniLM and not kept (same machine, one thread, batch 32): ``reduce_range`` (every
weight MatMul: held-out min 0.9703 vs 0.9764) and u8 weights (0.9331); SmoothQuant-style
per-channel scaling of the FFN output projections' inputs, calibrated on the probe texts
(alpha 0.5 / 0.7 / 0.85: probe min 0.935 / 0.947 / 0.934, worse); 8-bit ``MatMulNBits``
(block 32, int8 compute: probe min 0.9976, but 0.8x the fp32 graph's speed with ORT 1.32
on x86; block 128: 1.0x); quantizing the graph fused by ``onnxruntime.transformers.
optimizer`` (QAttention): no faster than the plain graph quantized.
"""

from __future__ import annotations

import re
from pathlib import Path

RECIPE = 2          # bump when what is quantized, or how, changes: it is part of the cache key
FFN_INPUT, ATTENTION_OUTPUT = "intermediate/dense/", "attention/output/dense/"
FFN_OUTPUT = re.compile(r"layer\.\d+/output/dense/")


def weight_matmuls(model) -> list[str]:
    """MatMul nodes whose second input is a constant (a weight, not an activation)."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in consts]


def candidates(model) -> list[tuple[str, list[str]]]:
    """``(selection name, node names)``, fastest first; one entry for a non-BERT graph."""
    names = weight_matmuls(model)
    out = [("all-weight-matmuls", names)]
    if not any(FFN_INPUT in n for n in names):
        return out
    out.append(("all-but-ffn-output", [n for n in names if not FFN_OUTPUT.search(n)]))
    out.append(("ffn-input+attention-output", [n for n in names if FFN_INPUT in n or ATTENTION_OUTPUT in n]))
    return out


def quantize(src: Path, dst: Path, nodes: list[str]) -> None:
    """Write the int8 graph of ``src`` with ``nodes`` quantized to ``dst``."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                     extra_options={"MatMulConstBOnly": True})
