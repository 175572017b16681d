"""Olive's own quantized checkpoints (``quant_method: olive``: what its gptq and rtn passes
write), unpacked by Olive's own QuantLinear, so the layout is Olive's by construction."""
from __future__ import annotations


class OliveUnpacker:
    """``dequantize(module_name, qweight, scales, qzeros)`` -> float [out, in] for one module."""

    def __init__(self, quantization_config: dict):
        from olive.common.quant.hf_utils import OliveHfQuantizationConfig

        q = {k: v for k, v in quantization_config.items() if k != "quant_method"}
        self.config = OliveHfQuantizationConfig(**q)

    def dequantize(self, name: str, qweight, scales, qzeros):
        from olive.common.quant.nn import QuantLinear

        args = self.config.get_qlinear_init_args(name)
        bits, group = int(args["bits"]), int(args["group_size"])
        rows = qweight.shape[0]
        cols = scales.shape[1] * group if group > 0 else qweight.shape[1] * 8 // bits
        module = QuantLinear(cols, rows, bits=bits, symmetric=bool(args["symmetric"]), group_size=group, bias=False,
                             device=qweight.device, dtype=scales.dtype)
        return module.unpack_and_dequantize(qweight, scales, qzeros)
