"""A strict reader of GGUF headers: metadata and tensor infos, no tensor data, no numpy.

The layout is the one `ggml/src/gguf.cpp` (`gguf_init_from_file_impl`) reads and `ggml/include/gguf.h`
documents, little-endian throughout:

    magic "GGUF" | version u32 (2 or 3) | n_tensors u64 | n_kv u64
    n_kv x (key: string, value type u32, value)          string = u64 length + UTF-8 bytes
    n_tensors x (name: string, n_dims u32, ne[n_dims] u64, ggml type u32, offset u64)
    padding to `general.alignment` (default 32), then the tensor data, offsets relative to its start

Value types (gguf.h `enum gguf_type`): 0 u8, 1 i8, 2 u16, 3 i16, 4 u32, 5 i32, 6 f32, 7 bool,
8 string, 9 array (element type u32, count u64, elements), 10 u64, 11 i64, 12 f64.

Every way a file can be wrong (not a GGUF, an unsupported version, cut short in the header, the tensor
table or the data, an unknown tensor type) raises `SourceError` with one line naming the file.
Split models (`NAME-00001-of-00003.gguf`, llama.cpp `llama_split_path`) are read shard by shard.
"""

from __future__ import annotations

import os
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from vramplan.errors import SourceError
from vramplan.precision import GGML_TYPES_BY_ID, GGMLType, ggml_tensor_bytes

MAGIC = b"GGUF"
SUPPORTED_VERSIONS = (2, 3)  # gguf.cpp rejects v1 ("no longer supported") and anything above 3
DEFAULT_ALIGNMENT = 32  # gguf.h GGUF_DEFAULT_ALIGNMENT
MAX_DIMS = 4  # ggml.h GGML_MAX_DIMS

# struct formats of the fixed-size value types (gguf.h enum gguf_type)
_SCALARS: dict[int, str] = {
    0: "<B",
    1: "<b",
    2: "<H",
    3: "<h",
    4: "<I",
    5: "<i",
    6: "<f",
    7: "<?",
    10: "<Q",
    11: "<q",
    12: "<d",
}
_STRING, _ARRAY = 8, 9

# Arrays under these keys (the tokenizer's vocabulary, scores and merges: hundreds of thousands of
# entries) are skipped over; only their length is kept, as an int, under the same key + "#count".
_SKIPPED_ARRAYS = ("tokenizer.ggml.",)


@dataclass(frozen=True)
class TensorInfo:
    name: str
    shape: tuple[int, ...]  # ggml order: ne0 (the row) first
    ggml_type: GGMLType
    offset: int  # from the start of the data section

    @property
    def nbytes(self) -> int:
        """ggml_nbytes: whole rows of ne0 elements in the tensor's type."""
        return ggml_tensor_bytes(self.ggml_type, self.shape)


@dataclass(frozen=True)
class GGUFHeader:
    path: Path
    version: int
    metadata: dict[str, Any]
    tensors: tuple[TensorInfo, ...]
    data_offset: int  # where the tensor data starts
    file_size: int


class _Reader:
    """Reads little-endian values from a file; running out of bytes is a `_Truncated`."""

    def __init__(self, f: BinaryIO, size: int) -> None:
        self.f, self.size = f, size
        self.part = "the preamble"  # what is being read, for the error message

    def tell(self) -> int:
        return self.f.tell()

    def take(self, n: int) -> bytes:
        if n < 0 or self.tell() + n > self.size:
            raise _Truncated
        data = self.f.read(n)
        if len(data) != n:
            raise _Truncated
        return data

    def skip(self, n: int) -> None:
        if n < 0 or self.tell() + n > self.size:
            raise _Truncated
        self.f.seek(n, os.SEEK_CUR)

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def u32(self) -> int:
        return int(self.scalar("<I"))

    def u64(self) -> int:
        return int(self.scalar("<Q"))

    def string(self) -> str:
        n = self.u64()
        raw = self.take(n)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Malformed("a string that is not UTF-8") from None

    def skip_string(self) -> None:
        self.skip(self.u64())


class _Truncated(Exception):
    pass


class _Malformed(Exception):
    pass


def _value(r: _Reader, vtype: int, key: str) -> Any:
    if vtype in _SCALARS:
        return r.scalar(_SCALARS[vtype])
    if vtype == _STRING:
        return r.string()
    if vtype == _ARRAY:
        etype, count = r.u32(), r.u64()
        if etype == _ARRAY:
            raise _Malformed(f"key {key!r} holds an array of arrays")
        if etype in _SCALARS:
            width = struct.calcsize(_SCALARS[etype])
            if count * width > r.size - r.tell():
                raise _Truncated
            if key.startswith(_SKIPPED_ARRAYS):
                r.skip(count * width)
                return _Skipped(count)
            fmt = _SCALARS[etype]
            return list(struct.unpack(f"<{count}{fmt[1]}", r.take(count * width)))
        if etype == _STRING:
            if count * 8 > r.size - r.tell():  # each string takes at least its u64 length
                raise _Truncated
            if key.startswith(_SKIPPED_ARRAYS):
                for _ in range(count):
                    r.skip_string()
                return _Skipped(count)
            return [r.string() for _ in range(count)]
        raise _Malformed(f"key {key!r} holds an array of unknown value type {etype}")
    raise _Malformed(f"key {key!r} has unknown value type {vtype}")


@dataclass(frozen=True)
class _Skipped:
    """An array that was skipped over (tokenizer data): only its length is kept."""

    count: int


def read_header(path: str | Path) -> GGUFHeader:
    """The header of one GGUF file (one shard of a split model)."""
    p = Path(path)
    try:
        f = p.open("rb")
    except FileNotFoundError:
        raise SourceError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise SourceError(f"{p}: is a directory, not a GGUF file") from None
    except OSError as exc:
        raise SourceError(f"{p}: cannot read it ({exc.strerror})") from None
    with f:
        size = os.fstat(f.fileno()).st_size
        r = _Reader(f, size)
        try:
            return _parse(r, p, size)
        except _Truncated:
            raise SourceError(
                f"{p}: truncated GGUF file: it ends at byte {size}, in the middle of {r.part}"
            ) from None
        except _Malformed as exc:
            raise SourceError(f"{p}: malformed GGUF header: {exc}") from None


def _parse(r: _Reader, p: Path, size: int) -> GGUFHeader:
    magic = r.f.read(4)
    if magic and len(magic) < 4 and MAGIC.startswith(magic):
        raise _Truncated
    if magic != MAGIC:
        what = "an empty file" if not magic else f"it starts with {magic!r}, not b'GGUF'"
        raise SourceError(f"{p}: not a GGUF file ({what})")
    version = r.u32()
    if version & 0xFFFF == 0 and version:
        raise SourceError(f"{p}: a big-endian GGUF file; vramplan reads little-endian GGUF files only")
    if version not in SUPPORTED_VERSIONS:
        raise SourceError(f"{p}: GGUF version {version} is not supported (versions 2 and 3 are)")
    n_tensors, n_kv = r.u64(), r.u64()
    # every entry takes more than 8 bytes, so counts beyond the file's size mean a cut or corrupt file
    if n_tensors > size or n_kv > size:
        raise _Truncated
    meta: dict[str, Any] = {}
    r.part = "the metadata"
    for _ in range(n_kv):
        key = r.string()
        if key in meta:
            raise _Malformed(f"duplicate key {key!r}")
        vtype = r.u32()
        value = _value(r, vtype, key)
        meta[key] = value
    alignment = meta.get("general.alignment", DEFAULT_ALIGNMENT)
    if not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise _Malformed(f"general.alignment {alignment!r} is not a power of 2")
    infos: list[TensorInfo] = []
    names: set[str] = set()
    r.part = "the tensor table"
    for _ in range(n_tensors):
        name = r.string()
        if name in names:
            raise _Malformed(f"duplicate tensor {name!r}")
        names.add(name)
        n_dims = r.u32()
        if not 1 <= n_dims <= MAX_DIMS:
            raise _Malformed(f"tensor {name!r} has {n_dims} dimensions (1 to {MAX_DIMS} allowed)")
        shape = tuple(r.u64() for _ in range(n_dims))
        if any(d >= 1 << 62 for d in shape):  # gguf.cpp refuses sizes that overflow int64
            raise _Malformed(f"tensor {name!r} has a bad shape {shape}")
        type_id = r.u32()
        if type_id not in GGML_TYPES_BY_ID:
            raise _Malformed(f"tensor {name!r} has unknown ggml type {type_id}")
        gtype = GGML_TYPES_BY_ID[type_id]
        if shape[0] % gtype.block_size:
            raise _Malformed(
                f"tensor {name!r}: a row of {shape[0]} elements is not whole {gtype.name} blocks"
            )
        offset = r.u64()
        if offset % alignment:
            raise _Malformed(f"tensor {name!r} data offset {offset} is not aligned to {alignment}")
        infos.append(TensorInfo(name, shape, gtype, offset))
    data_offset = -(-r.tell() // alignment) * alignment
    for t in infos:
        end = data_offset + t.offset + t.nbytes
        if end > size:
            raise SourceError(
                f"{p}: truncated GGUF file: tensor {t.name} ends at byte {end} but the file has {size} bytes"
            )
    return GGUFHeader(p, version, meta, tuple(infos), data_offset, size)


SPLIT_NAME = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")


def read_model(path: str | Path) -> tuple[GGUFHeader, tuple[TensorInfo, ...]]:
    """The first shard's header (it holds the metadata) and the tensors of every shard.

    A split model's shards are named `PREFIX-%05d-of-%05d.gguf` (llama.cpp `llama_split_path`) and carry
    `split.no`, `split.count` and `split.tensors.count`; any shard may be named, and every shard must
    be there.
    """
    first = read_header(path)
    count = first.metadata.get("split.count")
    if count is None or count == 1:
        return first, first.tensors
    p = Path(path)
    m = SPLIT_NAME.match(p.name)
    if not m or int(m["count"]) != count:
        raise SourceError(
            f"{p}: shard of a {count}-file split model, but its name does not follow "
            f"PREFIX-00001-of-{count:05d}.gguf, so the other shards cannot be found"
        )
    shards = [p.with_name(f"{m['prefix']}-{i:05d}-of-{count:05d}.gguf") for i in range(1, count + 1)]
    missing = [s.name for s in shards if not s.exists()]
    if missing:
        raise SourceError(f"{p}: split model of {count} files; missing {', '.join(missing)} (in {p.parent})")
    headers = [first if s == p else read_header(s) for s in shards]
    for i, h in enumerate(headers):
        if h.metadata.get("split.no", i) != i or h.metadata.get("split.count") != count:
            raise SourceError(f"{h.path}: its split.no / split.count do not make it shard {i + 1} of {count}")
    tensors = tuple(t for h in headers for t in h.tensors)
    expected = headers[0].metadata.get("split.tensors.count")
    if expected is not None and expected != len(tensors):
        raise SourceError(
            f"{shards[0]}: the shards hold {len(tensors)} tensors, split.tensors.count says {expected}"
        )
    return headers[0], tensors
