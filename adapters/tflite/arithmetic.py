"""LiteRT's integer arithmetic that needs no compiler: multipliers, scales, activation ranges.

NumPy only, so both backends use it: the Relay converter (:mod:`.quantized`, :mod:`.hybrid`)
and the Relax one (:mod:`sparse_import.relax_backend.quantized`).
"""

from __future__ import annotations

import numpy as np

__all__ = ["activation_range", "effective_scales", "quantize_multiplier"]


def quantize_multiplier(scale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """TFLite's ``QuantizeMultiplier``: ``scale ~= M * 2**(shift - 31)``, ``M`` in
    ``[2**30, 2**31)``.

    Parameters
    ----------
    scale : numpy.ndarray
        Effective scales (float64, non-negative), any shape.

    Returns
    -------
    multiplier, shift : numpy.ndarray
        int64 arrays of ``scale``'s shape; both 0 where ``scale`` is 0 or below ``2**-32``.

    Examples
    --------
    >>> import numpy as np
    >>> from sparse_import.adapters.tflite.arithmetic import quantize_multiplier
    >>> quantize_multiplier(np.array([0.5, 0.75]))
    (array([1073741824, 1610612736]), array([0, 0]))
    """
    fraction, exponent = np.frexp(np.asarray(scale, dtype=np.float64))
    fixed = np.floor(fraction * 2.0**31 + 0.5)  # std::round of a non-negative value
    carry = fixed == 2.0**31
    fixed = np.where(carry, fixed / 2, fixed).astype(np.int64)
    exponent = np.where(carry, exponent + 1, exponent).astype(np.int64)
    tiny = exponent < -31
    return np.where(tiny, 0, fixed), np.where(tiny, 0, exponent)


def effective_scales(
    input_scale: float, weight_scales: np.ndarray, output_scale: float, *, float_product: bool
) -> np.ndarray:
    """``input_scale * weight_scale / output_scale`` per output channel, as LiteRT rounds it.

    ``float_product``: multiply the two float32 scales in float32 before widening (LiteRT's
    per-tensor ``FULLY_CONNECTED``); otherwise every step is in float64.
    """
    weight = np.asarray(weight_scales, dtype=np.float32).reshape(-1)
    if float_product:
        product = (np.float32(input_scale) * weight).astype(np.float64)
    else:
        product = np.float64(np.float32(input_scale)) * weight.astype(np.float64)
    return product / np.float64(np.float32(output_scale))


def activation_range(fused: int, scale: float, zero_point: int, dtype: str) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized`` for a fused activation.

    Parameters
    ----------
    fused : int
        ``ActivationFunctionType`` of the op (``NONE``, ``RELU``, ``RELU_N1_TO_1``, ``RELU6``).
    scale, zero_point : float, int
        The output's quantization.
    dtype : str
        The output dtype.

    Raises
    ------
    NotImplementedError
        For activations quantized ops cannot fuse (``TANH``, ``SIGN_BIT``).
    """
    info = np.iinfo(dtype)
    low, high = int(info.min), int(info.max)

    def quantize(value: float) -> int:
        scaled = np.float32(value) / np.float32(scale)
        return zero_point + int(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5))

    bounds = {0: (None, None), 1: (0.0, None), 2: (-1.0, 1.0), 3: (0.0, 6.0)}
    if fused not in bounds:
        raise NotImplementedError(f"fused activation {fused} on a quantized operator")
    below, above = bounds[fused]
    if below is not None:
        low = max(low, quantize(below))
    if above is not None:
        high = min(high, quantize(above))
    return low, high
