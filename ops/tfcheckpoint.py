"""Read a TensorFlow checkpoint (tensor bundle) into numpy arrays, without TensorFlow.

A TF1/TF2 checkpoint ``PREFIX`` is ``PREFIX.index`` plus data shards
``PREFIX.data-0000N-of-0000M``:

* The index is a LevelDB SSTable (github.com/google/leveldb, doc/table_format.md):
  data blocks of prefix-compressed key/value entries, an index block pointing
  at them, and a 48-byte footer ending in the magic ``0xdb4775248b80fb57``.
  Each block is followed by a 1-byte compression type (TF writes 0, none) and
  a masked CRC32C.
* Key ``""`` holds a ``BundleHeaderProto``; every other key is a tensor name
  whose value is a ``BundleEntryProto`` (tensorflow/core/protobuf/
  tensor_bundle.proto): dtype (1), shape (2), shard_id (3), offset (4),
  size (5), crc32c (6, masked), slices (7).
* The tensor is ``size`` raw little-endian bytes at ``offset`` in its shard.

The protobuf messages are decoded by a small varint reader here, so no
generated code or protobuf runtime is needed. Every tensor's bytes are checked
against its CRC32C (computed with numpy, ~0.5 s for 80 MB), so a misread
offset or a damaged file fails loudly instead of giving wrong weights.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from pathlib import Path

import numpy as np

_TABLE_MAGIC = 0xDB4775248B80FB57
_FOOTER_LEN = 48
_BLOCK_TRAILER_LEN = 5  # compression type + masked crc32c

# tensorflow/core/framework/types.proto (the numeric types a checkpoint of
# weights holds; strings/resources are not supported).
_DTYPES: dict[int, np.dtype] = {
    1: np.dtype("<f4"),  # DT_FLOAT
    2: np.dtype("<f8"),  # DT_DOUBLE
    3: np.dtype("<i4"),  # DT_INT32
    4: np.dtype("u1"),  # DT_UINT8
    5: np.dtype("<i2"),  # DT_INT16
    6: np.dtype("i1"),  # DT_INT8
    9: np.dtype("<i8"),  # DT_INT64
    10: np.dtype("?"),  # DT_BOOL
    17: np.dtype("<u2"),  # DT_UINT16
    19: np.dtype("<f2"),  # DT_HALF
    22: np.dtype("<u4"),  # DT_UINT32
    23: np.dtype("<u8"),  # DT_UINT64
}


class CheckpointError(ValueError):
    """The files are not a checkpoint this reader understands, or are damaged."""


# --- protobuf wire format -------------------------------------------------------------


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CheckpointError("truncated varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, pos
        shift += 7


def _fields(buf: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs of a protobuf message: ints for varint and
    fixed fields, bytes for length-delimited ones."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(buf):
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
            out.append((field, value))
        elif wire == 1:
            out.append((field, struct.unpack_from("<Q", buf, pos)[0]))
            pos += 8
        elif wire == 5:
            out.append((field, struct.unpack_from("<I", buf, pos)[0]))
            pos += 4
        elif wire == 2:
            n, pos = _varint(buf, pos)
            out.append((field, bytes(buf[pos : pos + n])))
            pos += n
        else:
            raise CheckpointError(f"unsupported protobuf wire type {wire}")
    return out


def _shape(buf: bytes) -> tuple[int, ...]:
    # TensorShapeProto: repeated Dim dim = 2 { int64 size = 1; string name = 2 }
    dims = []
    for field, value in _fields(buf):
        if field == 2:
            size = next((v for f, v in _fields(value) if f == 1), 0)  # type: ignore[arg-type]
            dims.append(int(size))  # type: ignore[arg-type]
        elif field == 3 and value:
            raise CheckpointError("tensor of unknown rank")
    return tuple(dims)


# --- LevelDB table --------------------------------------------------------------------


def _block(data: bytes, offset: int, size: int) -> bytes:
    if offset + size + _BLOCK_TRAILER_LEN > len(data):
        raise CheckpointError("block handle points past the end of the index")
    if data[offset + size] != 0:
        raise CheckpointError("compressed index blocks are not supported")
    block = data[offset : offset + size]
    (stored,) = struct.unpack_from("<I", data, offset + size + 1)
    # The block crc covers the contents and the compression-type byte.
    if _unmask(stored) != crc32c(data[offset : offset + size + 1]):
        raise CheckpointError("index block checksum mismatch")
    return block


def _block_entries(block: bytes) -> list[tuple[bytes, bytes]]:
    (num_restarts,) = struct.unpack_from("<I", block, len(block) - 4)
    end = len(block) - 4 - 4 * num_restarts
    entries = []
    key = b""
    pos = 0
    while pos < end:
        shared, pos = _varint(block, pos)
        non_shared, pos = _varint(block, pos)
        value_len, pos = _varint(block, pos)
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        entries.append((key, block[pos : pos + value_len]))
        pos += value_len
    return entries


def _table_entries(data: bytes) -> list[tuple[bytes, bytes]]:
    if len(data) < _FOOTER_LEN:
        raise CheckpointError("index file too short")
    footer = data[-_FOOTER_LEN:]
    (magic,) = struct.unpack_from("<Q", footer, _FOOTER_LEN - 8)
    if magic != _TABLE_MAGIC:
        raise CheckpointError("not a TensorFlow checkpoint index (bad table magic)")
    _, pos = _varint(footer, 0)  # metaindex handle (unused: no filters)
    _, pos = _varint(footer, pos)
    index_off, pos = _varint(footer, pos)
    index_size, pos = _varint(footer, pos)
    entries = []
    for _, handle in _block_entries(_block(data, index_off, index_size)):
        off, p = _varint(handle, 0)
        size, _ = _varint(handle, p)
        entries.extend(_block_entries(_block(data, off, size)))
    return entries


# --- CRC32C (Castagnoli), vectorised over lanes ----------------------------------------


@lru_cache(maxsize=1)
def _crc_table() -> np.ndarray:
    poly = 0x82F63B78  # reflected Castagnoli polynomial
    table = np.arange(256, dtype=np.uint32)
    for _ in range(8):
        table = np.where(table & 1, (table >> 1) ^ poly, table >> 1).astype(np.uint32)
    return table


def _raw_crc_lanes(lanes: np.ndarray, init: np.ndarray) -> np.ndarray:
    """Reflected CRC register after feeding each row of ``lanes`` (uint8,
    shape (n, length)) starting from ``init``, no final xor."""
    table = _crc_table()
    crc = init.astype(np.uint32).copy()
    cols = np.ascontiguousarray(lanes.T)
    for col in cols:
        crc = table[(crc ^ col) & 0xFF] ^ (crc >> 8)
    return crc


def crc32c(buf: bytes | np.ndarray) -> int:
    """CRC-32C of ``buf`` (as ``crc32c::Value`` in TF/LevelDB).

    CRC is linear over GF(2), so the data is cut into equal chunks, each
    chunk's CRC is computed from a zero register in parallel (one numpy lane
    per chunk), and the chunk CRCs are combined with the "append L zero
    bytes" operator, a 32x32 bit matrix. Leading zero bytes leave a zero
    register unchanged, which lets the data be left-padded to a whole number
    of chunks; the 0xFFFFFFFF initial register is the same as xoring the
    first four bytes with 0xFF.
    """
    data = np.frombuffer(buf, dtype=np.uint8) if isinstance(buf, bytes | bytearray) else buf
    data = data.reshape(-1).view(np.uint8)
    n = len(data)
    if n < 4:
        crc = 0xFFFFFFFF
        table = _crc_table()
        for b in data.tolist():
            crc = int(table[(crc ^ b) & 0xFF]) ^ (crc >> 8)
        return crc ^ 0xFFFFFFFF
    lanes = max(1, min(8192, n // 256))
    length = -(-n // lanes)
    padded = np.zeros(lanes * length, np.uint8)
    padded[lanes * length - n :] = data
    padded[lanes * length - n : lanes * length - n + 4] ^= 0xFF
    chunk_crcs = _raw_crc_lanes(padded.reshape(lanes, length), np.zeros(lanes, np.uint32))
    # Column j of the shift operator: the register 1<<j after `length` zero bytes.
    basis = np.left_shift(np.uint32(1), np.arange(32, dtype=np.uint32))
    columns = _raw_crc_lanes(np.zeros((32, length), np.uint8), basis).tolist()
    acc = 0
    for c in chunk_crcs.tolist():
        shifted = 0
        j = 0
        while acc:
            if acc & 1:
                shifted ^= columns[j]
            acc >>= 1
            j += 1
        acc = shifted ^ c
    return acc ^ 0xFFFFFFFF


def _unmask(masked: int) -> int:
    # LevelDB/TF crc32c::Unmask: stored checksums are rotated and offset so a
    # CRC of data that embeds CRCs stays well distributed.
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


# --- the bundle -----------------------------------------------------------------------


def _index_path(prefix: Path) -> Path:
    prefix = Path(prefix)
    if prefix.is_dir():
        # A model directory: the "checkpoint" file names the newest prefix.
        state = prefix / "checkpoint"
        name = "model"
        if state.exists():
            for line in state.read_text().splitlines():
                if line.startswith("model_checkpoint_path:"):
                    name = line.split(":", 1)[1].strip().strip('"')
        prefix = prefix / name
    if prefix.suffix == ".index":
        return prefix
    return prefix.with_name(prefix.name + ".index")


def read_checkpoint(prefix: Path, *, verify: bool = True) -> dict[str, np.ndarray]:
    """All tensors of the checkpoint at ``prefix`` as ``{name: array}``.

    ``prefix`` is the checkpoint prefix (``.../model``), its ``.index`` file,
    or a directory holding a ``checkpoint`` state file. Arrays are copies
    (writable, owning their memory) in the stored dtype and shape. With
    ``verify`` every tensor's CRC32C is checked. Raises :class:`CheckpointError`
    for anything that is not a readable, intact bundle.
    """
    index = _index_path(prefix)
    if not index.exists():
        raise CheckpointError(f"no checkpoint index at {index}")
    base = index.with_suffix("")
    entries = _table_entries(index.read_bytes())
    num_shards = 1
    parsed: list[tuple[str, dict[int, list[int | bytes]]]] = []
    for key, value in entries:
        fields: dict[int, list[int | bytes]] = {}
        for f, v in _fields(value):
            fields.setdefault(f, []).append(v)
        if key == b"":
            num_shards = int(fields.get(1, [1])[0])  # type: ignore[arg-type]
            if int(fields.get(2, [0])[0]) != 0:  # type: ignore[arg-type]
                raise CheckpointError("big-endian checkpoints are not supported")
            continue
        parsed.append((key.decode("utf-8"), fields))

    out: dict[str, np.ndarray] = {}
    shards: dict[int, np.memmap] = {}
    for name, fields in parsed:
        if 7 in fields:
            raise CheckpointError(f"{name}: partitioned (sliced) variables are not supported")
        dtype_code = int(fields.get(1, [0])[0])  # type: ignore[arg-type]
        if dtype_code not in _DTYPES:
            raise CheckpointError(f"{name}: unsupported dtype code {dtype_code}")
        dtype = _DTYPES[dtype_code]
        shape = _shape(fields[2][0]) if 2 in fields else ()  # type: ignore[arg-type]
        shard = int(fields.get(3, [0])[0])  # type: ignore[arg-type]
        offset = int(fields.get(4, [0])[0])  # type: ignore[arg-type]
        size = int(fields.get(5, [0])[0])  # type: ignore[arg-type]
        count = int(np.prod(shape, dtype=np.int64))
        if size != count * dtype.itemsize:
            raise CheckpointError(f"{name}: {size} bytes for shape {shape} of {dtype}")
        if shard not in shards:
            path = Path(f"{base}.data-{shard:05d}-of-{num_shards:05d}")
            if not path.exists():
                raise CheckpointError(f"missing data shard {path}")
            shards[shard] = np.memmap(path, dtype=np.uint8, mode="r")
        raw = shards[shard][offset : offset + size]
        if len(raw) != size:
            raise CheckpointError(f"{name}: data shard too short")
        crc = fields.get(6)
        if verify and crc and size and _unmask(int(crc[0])) != crc32c(np.asarray(raw)):  # type: ignore[arg-type]
            raise CheckpointError(f"{name}: checksum mismatch")
        out[name] = np.array(raw).view(dtype).reshape(shape)  # an owning, aligned copy
    return out
