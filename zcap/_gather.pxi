# Batch.field(): one fixed-offset field of every packet, gathered in one C loop.
#
# Included by _ring.pyx.  The dtype is given in numpy's notation; the result
# is a new buffer in native byte order (np.asarray() takes it without a copy),
# one item per packet, `default` where a packet is too short.

import re as _re
import struct as _struct
import sys as _sys

cdef struct _FieldSpec:
    size_t itemsize         # bytes per packet in the result
    size_t width            # bytes of one value (itemsize, or 1 for raw bytes)
    bint swap               # the field's byte order is not the machine's
    bint raw                # "NB": N raw bytes, a 2-D (packets, N) uint8 result
    char fmt[2]             # the result's PEP 3118 format (native)
    const unsigned char *dflt   # itemsize bytes stored for a packet too short

# numpy kind + size -> (struct format char, size)
_FIELD_TYPES = {
    "u1": "B", "u2": "H", "u4": "I", "u8": "Q",
    "i1": "b", "i2": "h", "i4": "i", "i8": "q",
    "f4": "f", "f8": "d",
    "b1": "B",
    "B": "B", "H": "H", "I": "I", "Q": "Q",
    "b": "b", "h": "h", "i": "i", "q": "q",
    "f": "f", "d": "d",
    "uint8": "B", "uint16": "H", "uint32": "I", "uint64": "Q",
    "int8": "b", "int16": "h", "int32": "i", "int64": "q",
    "float32": "f", "float64": "d",
}
_RAW_FIELD = _re.compile(r"^(?:\(\s*(\d+)\s*,?\s*\)|(\d+))\s*(?:B|u1|\|u1|uint8)$")
_NATIVE_LITTLE = _sys.byteorder == "little"


cdef int _parse_field_dtype(object dtype, _FieldSpec *spec) except -1:
    """Fill *spec from a numpy-style dtype ("<u8", ">u2", "u1", "4B", a numpy dtype)."""
    cdef object text = dtype
    sub = getattr(dtype, "subdtype", None)
    if sub is not None:                     # a numpy dtype like np.dtype("4B")
        base, shape = sub
        text = f"{shape[0]}{base.str}" if len(shape) == 1 else repr(dtype)
    elif not isinstance(dtype, str):
        text = getattr(dtype, "str", dtype)  # a numpy dtype or type object
        if not isinstance(text, str):
            text = getattr(getattr(dtype, "dtype", None), "str", repr(dtype))
    text = text.strip()
    raw = _RAW_FIELD.match(text.lstrip("|"))
    if raw:
        n = int(raw.group(1) or raw.group(2))
        if n < 1 or n > 65535:
            raise ValueError(f"raw field width must be 1..65535 bytes, not {n}")
        spec.itemsize = n
        spec.width = 1
        spec.swap = False
        spec.raw = True
        spec.fmt[0] = b"B"[0]
        spec.fmt[1] = 0
        return 0
    order = "="
    if text[:1] in ("<", ">", "=", "|", "!", "@"):
        order, text = text[0], text[1:]
    code = _FIELD_TYPES.get(text)
    if code is None:
        raise ValueError(f"unsupported field dtype {dtype!r}: use an integer or float type in "
                         "numpy notation ('u1', '<u2', '>u8', '<i4', '<f8', ...) or 'NB' for "
                         "N raw bytes")
    spec.itemsize = _struct.calcsize("=" + code)
    spec.width = spec.itemsize
    spec.raw = False
    if spec.itemsize == 1 or order in ("=", "|", "@"):
        spec.swap = False
    else:
        spec.swap = (order == "<") != _NATIVE_LITTLE
    spec.fmt[0] = (<bytes>code.encode())[0]
    spec.fmt[1] = 0
    return 0


@cython.final
cdef class _FieldArray:
    """A new C array with one item (or one row of raw bytes) per packet."""
    cdef unsigned char *data
    cdef Py_ssize_t n
    cdef _FieldSpec spec
    cdef bytes dflt
    cdef Py_ssize_t shape[2]
    cdef Py_ssize_t strides[2]

    def __dealloc__(self):
        free(self.data)

    def __getbuffer__(self, Py_buffer *view, int flags):
        if flags & PyBUF_WRITABLE:
            raise BufferError("field arrays are read-only; copy them to modify")
        self.shape[0] = self.n
        self.strides[0] = self.spec.itemsize
        self.shape[1] = self.spec.itemsize
        self.strides[1] = 1
        view.buf = self.data
        view.len = self.n * self.spec.itemsize
        view.readonly = 1
        view.itemsize = 1 if self.spec.raw else self.spec.itemsize
        view.format = self.spec.fmt if (flags & PyBUF_FORMAT) else NULL
        view.ndim = 2 if self.spec.raw else 1
        view.shape = self.shape if (flags & PyBUF_ND) == PyBUF_ND else NULL
        view.strides = self.strides if (flags & PyBUF_STRIDES) == PyBUF_STRIDES else NULL
        view.suboffsets = NULL
        view.internal = NULL
        view.obj = self


cdef _FieldArray _field_array(_FieldSpec *spec, Py_ssize_t n, object default):
    """An uninitialised array for n packets; spec.dflt is set to `default`'s bytes."""
    cdef _FieldArray a = _FieldArray.__new__(_FieldArray)
    cdef bytes fill
    a.spec = spec[0]
    a.n = n
    a.data = <unsigned char *>malloc(n * spec.itemsize if n else 1)
    if a.data == NULL:
        raise MemoryError(f"field array of {n} packets")
    if spec.raw:
        if isinstance(default, (bytes, bytearray, memoryview)):
            fill = bytes(default)
            if len(fill) != <Py_ssize_t>spec.itemsize:
                raise ValueError(f"default must be {spec.itemsize} bytes, not {len(fill)}")
        else:
            if not 0 <= default <= 255:
                raise ValueError(f"default for raw bytes must be 0..255 or {spec.itemsize} bytes")
            fill = bytes([default]) * spec.itemsize
    else:
        try:
            fill = _struct.pack("=" + chr(spec.fmt[0]), default)
        except _struct.error as exc:
            raise ValueError(f"default {default!r} does not fit the field type: {exc}") from None
    a.dflt = fill
    a.spec.dflt = <const unsigned char *>PyBytes_AS_STRING(fill)
    spec.dflt = a.spec.dflt
    return a


cdef inline void _gather_one(unsigned char *dst, const unsigned char *pkt, uint32_t caplen,
                             size_t offset, const _FieldSpec *spec) noexcept nogil:
    if offset + spec.itemsize <= caplen:
        zcap_gather_item(dst, pkt + offset, spec.itemsize, spec.swap)
    else:
        zcap_gather_item(dst, spec.dflt, spec.itemsize, 0)


cdef void _gather_table(const unsigned char *base, const uint32_t *offsets,
                        const uint32_t *caplen, Py_ssize_t n, size_t offset,
                        const _FieldSpec *spec, unsigned char *out) noexcept nogil:
    """Gather from a packet table (offsets into `base`, already bounds-checked)."""
    cdef Py_ssize_t i
    for i in range(n):
        _gather_one(out + i * spec.itemsize, base + offsets[i], caplen[i], offset, spec)


cdef Py_ssize_t _gather_v3(const unsigned char *blk, size_t bsize, size_t *cur_off,
                           uint32_t *left, const ParseOpts *o, WalkCounts *counts,
                           size_t offset, const _FieldSpec *spec, unsigned char *out,
                           Py_ssize_t cap, size_t *bad_off) noexcept:
    """Gather while walking a V3 block with the ring's walker; returns the count or <0."""
    cdef RawPacket raw
    cdef Py_ssize_t n = 0
    cdef int r
    while n < cap:
        r = _v3_step(<unsigned char *>blk, bsize, cur_off, left, o, &raw, bad_off, counts)
        if r <= 0:
            return r if r < 0 else n
        _gather_one(out + n * spec.itemsize, raw.data, raw.caplen, offset, spec)
        n += 1
    return n


def gather_field(buffer, offsets, caplen, Py_ssize_t offset, dtype, default=0):
    """Batch.field() over any buffer and uint32 offset/caplen columns (offline batches)."""
    cdef _FieldSpec spec
    cdef const unsigned char[::1] buf = memoryview(buffer).cast("B")
    cdef const uint32_t[::1] offs = memoryview(offsets).cast("B").cast("I")
    cdef const uint32_t[::1] lens = memoryview(caplen).cast("B").cast("I")
    cdef Py_ssize_t i, n = offs.shape[0]
    cdef size_t size = buf.shape[0]
    if lens.shape[0] != n:
        raise ValueError("offsets and caplen have different lengths")
    if offset < 0:
        raise ValueError(f"field offset must be >= 0, not {offset}")
    _parse_field_dtype(dtype, &spec)
    cdef _FieldArray out = _field_array(&spec, n, default)
    if n == 0:
        return memoryview(out)
    for i in range(n):
        if <size_t>offs[i] + lens[i] > size:
            raise ValueError(f"packet {i} runs past the end of the buffer")
    _gather_table(&buf[0], &offs[0], &lens[0], n, <size_t>offset, &spec, out.data)
    return memoryview(out)
