"""Hypothesis strategies for random sparse layouts (shared by the IR and adapter tests)."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from sparse_import import Level, LevelFormat, LevelPart
from sparse_import.layouts import coo_layout

VALUE_DTYPES = [np.float32, np.float16, np.float64, np.int8, np.uint8, np.int32, np.int64, np.bool_]


@st.composite
def layouts(
    draw,
    max_rank: int = 4,
    max_dim: int = 6,
    allow_coo: bool = True,
    tflite: bool = False,
    compressed_in_block: bool = False,
):
    """Draw ``(shape, levels)``: random ranks, blocks, level orders and formats.

    With ``tflite=True`` only layouts TFLite's runtime decodes: no COO, in-block levels dense;
    ``compressed_in_block=True`` adds what the format also allows, a compressed in-block level
    below a dense block level (whose size states the block size).
    """
    rank = draw(st.integers(1, max_rank))
    shape = tuple(draw(st.integers(1, max_dim)) for _ in range(rank))
    if allow_coo and not tflite and draw(st.booleans()) and draw(st.booleans()):
        return shape, coo_layout(rank)
    pieces = []
    for d, n in enumerate(shape):
        divisors = [b for b in range(2, n + 1) if n % b == 0]
        if divisors and draw(st.booleans()):
            b = draw(st.sampled_from(divisors))
            pieces += [(d, LevelPart.BLOCK, b), (d, LevelPart.ELEMENT, b)]
        else:
            pieces.append((d, LevelPart.WHOLE, 1))
    order = draw(st.permutations(pieces))
    # floordiv before mod: swap the pair into place when drawn the other way round
    seen: set[int] = set()
    fixed = []
    for d, part, b in order:
        if part is LevelPart.ELEMENT and d not in seen:
            part = LevelPart.BLOCK
        elif part is LevelPart.BLOCK and d in seen:
            part = LevelPart.ELEMENT
        seen.add(d)
        fixed.append((d, part, b))
    formats = draw(
        st.lists(
            st.sampled_from([LevelFormat.DENSE, LevelFormat.COMPRESSED]),
            min_size=len(fixed),
            max_size=len(fixed),
        )
    )
    if tflite:
        outer = {d: f for (d, p, _), f in zip(fixed, formats, strict=True) if p is LevelPart.BLOCK}
        formats = [
            LevelFormat.DENSE
            if p is LevelPart.ELEMENT
            and not (compressed_in_block and outer[d] is LevelFormat.DENSE)
            else f
            for (d, p, _), f in zip(fixed, formats, strict=True)
        ]
    levels = tuple(Level(d, f, p, b) for (d, p, b), f in zip(fixed, formats, strict=True))
    return shape, levels


@st.composite
def dense_arrays(draw, shape: tuple[int, ...], dtypes=VALUE_DTYPES):
    """A dense array of ``shape`` with a random density and dtype."""
    dtype = np.dtype(draw(st.sampled_from(dtypes)))
    density = draw(st.sampled_from([0.0, 0.1, 0.3, 0.7, 1.0]))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    values = rng.integers(1, 100, size=shape)
    values = np.where(rng.random(shape) < density, values, 0).astype(dtype)
    return values


def index_dtype_for(levels, shape) -> list[np.dtype]:
    """Index dtypes wide enough for a layout (uint8 / uint16 / int32 / int64)."""
    limit = int(np.prod(shape)) + 1
    return [
        np.dtype(t) for t in (np.uint8, np.uint16, np.int32, np.int64) if np.iinfo(t).max >= limit
    ]
