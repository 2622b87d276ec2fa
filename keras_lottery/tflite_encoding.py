"""Re-encoding a TFLite file's sparse weights in the smaller layout.

TFLite's `EXPERIMENTAL_SPARSITY` converter encodes a sparse tensor either
as CSR over single weights (every dimension dense but the last; a value
plus an index per nonzero) or as CSR over 1×4 blocks (four values per
nonzero block plus an index per block). It picks blocks when the share of
all-zero blocks is at least 90% of the share of zero weights (TensorFlow
2.21's dense-to-sparse pass), which for the *random* sparsity of a
magnitude-pruned ticket happens at high sparsity: at 3% of the weights
left, about 12% of the blocks are nonzero, so the block layout stores ~4×
the values the single-weight layout would. A ticket's file then grows as
it gets sparser.

`prefer_smaller_layout` rewrites each block-encoded tensor as single-weight
CSR where that is smaller (the values are the same; the interpreter
densifies both layouts, or runs TFLite's fully connected kernel on either),
so the file size follows the ticket's sparsity.
"""

from __future__ import annotations

import numpy as np

from keras_lottery import compat


def _index_vectors(schema) -> list[tuple[np.dtype, int, type]]:
    """TFLite's index vector types, smallest first: (dtype, the
    `SparseIndexVector` tag, the object-API class)."""
    return [(np.dtype(np.uint8), schema.SparseIndexVector.Uint8Vector, schema.Uint8VectorT),
            (np.dtype(np.uint16), schema.SparseIndexVector.Uint16Vector, schema.Uint16VectorT),
            (np.dtype(np.int32), schema.SparseIndexVector.Int32Vector, schema.Int32VectorT)]


def _indices(schema, vector_type: int, vector) -> np.ndarray:
    dtype = next(d for d, kind, _ in _index_vectors(schema) if kind == vector_type)
    return np.asarray(vector.values, dtype).astype(np.int64)


def _index_vector(schema, values: np.ndarray, limit: int):
    """The smallest index vector holding `values` (all below `limit`)."""
    dtype, kind, cls = next(entry for entry in _index_vectors(schema)
                            if limit <= np.iinfo(entry[0]).max + 1)
    vector = cls()
    vector.values = np.asarray(values, dtype)
    return kind, vector, vector.values.nbytes


def densify(schema, shape: tuple[int, ...], sparsity, values: np.ndarray) -> np.ndarray:
    """The dense tensor of a TFLite sparse encoding.

    Args:
        schema: the TFLite schema module (`compat.tflite_flatbuffers()[0]`).
        shape: the tensor's dense shape.
        sparsity: its `SparsityParametersT` (traversal order, block map,
            one `DimensionMetadataT` per traversed dimension).
        values: the stored values, in traversal order.

    Returns:
        The dense array.

    Example:
    >>> dense = densify(schema, (256, 784), tensor.sparsity, values)
    """
    rank = len(shape)
    order = list(sparsity.traversalOrder)
    block_map = list(sparsity.blockMap) if sparsity.blockMap is not None else []
    dims = sparsity.dimMetadata
    positions = np.zeros(1, np.int64)  # for each path so far: its position in the next level
    coordinates: list[np.ndarray] = []  # per traversed level, the path's coordinate
    for metadata in dims:
        if metadata.format == schema.DimensionType.DENSE:
            n = metadata.denseSize
            coordinates = [np.repeat(c, n) for c in coordinates]
            coordinates.append(np.tile(np.arange(n), len(positions)))
            positions = (positions[:, None] * n + np.arange(n)[None, :]).ravel()
        else:
            segments = _indices(schema, metadata.arraySegmentsType, metadata.arraySegments)
            indices = _indices(schema, metadata.arrayIndicesType, metadata.arrayIndices)
            counts = segments[positions + 1] - segments[positions]
            first = np.repeat(segments[positions], counts)
            offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
            positions = first + offsets
            coordinates = [np.repeat(c, counts) for c in coordinates]
            coordinates.append(indices[positions])
    expanded = [None] * len(order)
    for level, values_at in enumerate(coordinates):
        expanded[order[level]] = values_at
    index = []
    for d in range(rank):
        if d in block_map:
            k = block_map.index(d)
            block = dims[order.index(rank + k)].denseSize
            index.append(expanded[d] * block + expanded[rank + k])
        else:
            index.append(expanded[d])
    dense = np.zeros(shape, values.dtype)
    dense[tuple(index)] = values[positions]
    return dense


def single_weight_csr(schema, dense: np.ndarray):
    """`(sparsity, values, index_bytes)`: `dense` as CSR over single weights
    (every dimension dense but the last, the layout TFLite uses for random
    sparsity)."""
    rows = dense.reshape(-1, dense.shape[-1])
    nonzero = rows != 0
    segments = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
    sparsity = schema.SparsityParametersT()
    sparsity.traversalOrder = list(range(dense.ndim))
    sparsity.blockMap = None
    sparsity.dimMetadata = []
    for size in dense.shape[:-1]:
        metadata = schema.DimensionMetadataT()
        metadata.format, metadata.denseSize = schema.DimensionType.DENSE, size
        sparsity.dimMetadata.append(metadata)
    last = schema.DimensionMetadataT()
    last.format = schema.DimensionType.SPARSE_CSR
    last.arraySegmentsType, last.arraySegments, segment_bytes = _index_vector(
        schema, segments, int(segments[-1]) + 1)
    last.arrayIndicesType, last.arrayIndices, index_bytes = _index_vector(
        schema, np.nonzero(nonzero)[1], dense.shape[-1])
    sparsity.dimMetadata.append(last)
    return sparsity, rows[nonzero], segment_bytes + index_bytes


def prefer_smaller_layout(content: bytes) -> tuple[bytes, int]:
    """Rewrites block-encoded sparse float tensors as single-weight CSR where smaller.

    Args:
        content: a `.tflite` file converted with `EXPERIMENTAL_SPARSITY`.

    Returns:
        `(content, rewritten)`: the new file's bytes (the input unchanged if
        no tensor is rewritten) and how many tensors were rewritten.

    Example:
    >>> content, rewritten = prefer_smaller_layout(converter.convert())
    """
    schema, utils = compat.tflite_flatbuffers()
    model = utils.convert_bytearray_to_object(bytearray(content))
    rewritten = 0
    for subgraph in model.subgraphs:
        for tensor in subgraph.tensors:
            sparsity = tensor.sparsity
            if (sparsity is None or sparsity.blockMap is None or len(sparsity.blockMap) == 0
                    or tensor.type != schema.TensorType.FLOAT32):
                continue
            buffer = model.buffers[tensor.buffer]
            values = np.frombuffer(bytes(bytearray(buffer.data)), np.float32)
            dense = densify(schema, tuple(tensor.shape), sparsity, values)
            new_sparsity, new_values, index_bytes = single_weight_csr(schema, dense)
            if new_values.nbytes + index_bytes < values.nbytes:  # the old indices not even counted
                tensor.sparsity = new_sparsity
                buffer.data = np.frombuffer(new_values.astype(np.float32).tobytes(), np.uint8)
                rewritten += 1
    if not rewritten:
        return content, 0
    return bytes(utils.convert_object_to_bytearray(model)), rewritten
