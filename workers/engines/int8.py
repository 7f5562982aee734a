"""The onnx int8 graph: ONNX Runtime dynamic quantization, weights per channel (QInt8).

Which MatMuls: each block's FFN input projection (``intermediate/dense``) and attention
output projection (``attention/output/dense``), as the torch engine's int8 does. Chosen on
the probe set (``texts.probe_texts()``: 81 texts, MiniLM, an AVX2-only EPYC), cosine of
the int8 graph's embeddings to the fp32 graph's:

=====================================  =======  ======  =======
MatMuls quantized (per channel, s8)     mean     min     nodes
=====================================  =======  ======  =======
every weight MatMul                     0.9919   0.9566  36
all but the FFN output projections      0.9953   0.9671  30
Q, K, V + FFN input                     0.9958   0.9695  24
FFN input + attention output (chosen)   0.9970   0.9786  12
=====================================  =======  ======  =======

Only the chosen set keeps the worst text (a one-word reply: short texts suffer most)
above 0.97. The FFN *output* projections carry outlier activations that a dynamic scale
clips; on AVX2 without VNNI the u8 x s8 kernel can also saturate (ORT's
``reduce_range`` did not help here). The 12 attention score MatMuls (activation x
activation) stay fp32. It is the slowest of the four sets (fewest int8 MatMuls); the
speed is what ``elastiq bench engine`` reports. A model without BERT-style names gets
every weight MatMul quantized, and the held-out gate at export decides whether that graph
may serve. The gate runs on the exporting machine: int8 kernels differ by CPU (VNNI or
not), so a graph exported on one CPU and served on another can agree slightly less.
"""

from __future__ import annotations

from pathlib import Path

PATTERNS = ("intermediate/dense/", "attention/output/dense/")


def weight_matmuls(model) -> list[str]:
    """MatMul nodes whose second input is a constant (a weight, not an activation)."""
    consts = {i.name for i in model.graph.initializer}
    consts |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    return [n.name for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in consts]


def select_nodes(model) -> list[str]:
    names = weight_matmuls(model)
    chosen = [n for n in names if any(p in n for p in PATTERNS)]
    return chosen or names


def quantize(src: Path, dst: Path) -> dict:
    """Write the int8 graph of ``src`` to ``dst``; what was quantized."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = select_nodes(onnx.load(str(src), load_external_data=False))
    quantize_dynamic(str(src), str(dst), per_channel=True, weight_type=QuantType.QInt8,
                     op_types_to_quantize=["MatMul"], nodes_to_quantize=nodes,
                     extra_options={"MatMulConstBOnly": True})
    bert = any(p in n for n in nodes for p in PATTERNS)
    return {"quantized_matmuls": len(nodes), "selection": "bert" if bert else "all-weight-matmuls"}
