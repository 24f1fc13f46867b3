# cython: language_level=3, boundscheck=False, wraparound=False, cdivision=True
# cython: initializedcheck=False
#
# boundscheck/wraparound are off because the engine indexes only raw C
# pointers, and every packet offset is checked against caplen before it is
# dereferenced.  cdivision is on so that `//` is C's unsigned division; the
# engine tests every divisor for zero itself, as classic BPF requires.
"""Classic BPF programs: validation, a userspace engine, disassembly.

A BPFProgram is a checked array of `struct sock_filter`, the form Linux's
SO_ATTACH_FILTER takes.  It is validated once, on construction, with the rules
of the kernel's bpf_check_classic(), so a program that exists can both be
attached to a socket and run here by bpf_run() without further checks.

bpf_run() follows the kernel's semantics where the kernel and libpcap's
bpf_filter() differ (only for programs libpcap never generates):

* ancillary loads (`ld [SKF_AD_OFF + n]`) read packet metadata (BPFAux);
  bpf_filter() rejects the packet instead;
* loads at negative offsets SKF_LL_OFF + n / SKF_NET_OFF + n are relative to
  the link-layer / network header, and an indirect offset X + k wraps at 2**32
  as the kernel's 32-bit arithmetic does; bpf_filter() rejects both;
* a shift by X uses the low five bits of X (what the kernel's interpreter and
  JITs do); bpf_filter() yields 0 for X >= 32.

Two kinds of program libpcap generates are valid here though Linux refuses
to attach them (BPFProgram.kernel_refusal says why; a capture then runs them
in user space):

* a `ja` with a negative offset, a backward jump (`protochain`): bpf_run()
  takes it as libpcap's bpf_filter() does (the offset sign-extended).  To
  bound a hostile program, each backward jump is charged the program's
  length against a budget of BPF_RUN_BUDGET (4,194,304) instructions per
  packet; a packet that exhausts it is rejected.  `protochain` walks at most
  one header per 8 bytes, so no real packet comes near it;
* a read of a scratch word M[k] that is not written first on every path
  (libpcap's live `vlan and vlan and pppoes and tcp`): an unset word reads
  as 0, as the kernel's checker and libpcap's bpf_filter() assume.
"""

from cpython.buffer cimport PyObject_GetBuffer, PyBuffer_Release, PyBUF_SIMPLE
from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t, int64_t
from libc.string cimport memset, memcpy

from zcap.includes.bpf cimport *
from zcap.includes.linux cimport sock_filter

from zcap.errors import FilterError

# Every opcode Linux accepts (net/core/filter.c chk_code_allowed), an ALU or
# jump operation's two forms (operand k or X) side by side.  Named so that the
# engine's if/elif chain below compiles to one C switch.  The six packet loads
# keep a case each: with the byte count a constant, _load() compiles to one
# read (folding them into two cases cost ~59 more instructions per match()).
cdef enum:
    OP_RET_K = BPF_RET | BPF_K
    OP_RET_A = BPF_RET | BPF_A
    OP_LD_W_ABS = BPF_LD | BPF_W | BPF_ABS
    OP_LD_H_ABS = BPF_LD | BPF_H | BPF_ABS
    OP_LD_B_ABS = BPF_LD | BPF_B | BPF_ABS
    OP_LD_W_IND = BPF_LD | BPF_W | BPF_IND
    OP_LD_H_IND = BPF_LD | BPF_H | BPF_IND
    OP_LD_B_IND = BPF_LD | BPF_B | BPF_IND
    OP_LD_W_LEN = BPF_LD | BPF_W | BPF_LEN
    OP_LDX_W_LEN = BPF_LDX | BPF_W | BPF_LEN
    OP_LDX_B_MSH = BPF_LDX | BPF_B | BPF_MSH
    OP_LD_IMM = BPF_LD | BPF_IMM
    OP_LDX_IMM = BPF_LDX | BPF_IMM
    OP_LD_MEM = BPF_LD | BPF_MEM
    OP_LDX_MEM = BPF_LDX | BPF_MEM
    OP_ST = BPF_ST
    OP_STX = BPF_STX
    OP_ADD_K = BPF_ALU | BPF_ADD | BPF_K, OP_ADD_X = BPF_ALU | BPF_ADD | BPF_X
    OP_SUB_K = BPF_ALU | BPF_SUB | BPF_K, OP_SUB_X = BPF_ALU | BPF_SUB | BPF_X
    OP_MUL_K = BPF_ALU | BPF_MUL | BPF_K, OP_MUL_X = BPF_ALU | BPF_MUL | BPF_X
    OP_DIV_K = BPF_ALU | BPF_DIV | BPF_K, OP_DIV_X = BPF_ALU | BPF_DIV | BPF_X
    OP_MOD_K = BPF_ALU | BPF_MOD | BPF_K, OP_MOD_X = BPF_ALU | BPF_MOD | BPF_X
    OP_AND_K = BPF_ALU | BPF_AND | BPF_K, OP_AND_X = BPF_ALU | BPF_AND | BPF_X
    OP_OR_K = BPF_ALU | BPF_OR | BPF_K, OP_OR_X = BPF_ALU | BPF_OR | BPF_X
    OP_XOR_K = BPF_ALU | BPF_XOR | BPF_K, OP_XOR_X = BPF_ALU | BPF_XOR | BPF_X
    OP_LSH_K = BPF_ALU | BPF_LSH | BPF_K, OP_LSH_X = BPF_ALU | BPF_LSH | BPF_X
    OP_RSH_K = BPF_ALU | BPF_RSH | BPF_K, OP_RSH_X = BPF_ALU | BPF_RSH | BPF_X
    OP_NEG = BPF_ALU | BPF_NEG
    OP_JA = BPF_JMP | BPF_JA
    OP_JEQ_K = BPF_JMP | BPF_JEQ | BPF_K, OP_JEQ_X = BPF_JMP | BPF_JEQ | BPF_X
    OP_JGT_K = BPF_JMP | BPF_JGT | BPF_K, OP_JGT_X = BPF_JMP | BPF_JGT | BPF_X
    OP_JGE_K = BPF_JMP | BPF_JGE | BPF_K, OP_JGE_X = BPF_JMP | BPF_JGE | BPF_X
    OP_JSET_K = BPF_JMP | BPF_JSET | BPF_K, OP_JSET_X = BPF_JMP | BPF_JSET | BPF_X
    OP_TAX = BPF_MISC | BPF_TAX
    OP_TXA = BPF_MISC | BPF_TXA

# Instructions bpf_run may execute per packet in a program with backward jumps.
cdef enum:
    BPF_RUN_BUDGET = 1 << 22
RUN_BUDGET = BPF_RUN_BUDGET
cdef uint32_t _AD_OFF = <uint32_t>SKF_AD_OFF       # 0xfffff000: `ld` at or above it is ancillary
cdef Py_ssize_t _MAX_U32 = 0xffffffff
cdef BPFAux _NO_AUX
bpf_aux_clear(&_NO_AUX)


# ---------------------------------------------------------------- the engine

cdef inline int64_t _load(const unsigned char *pkt, uint32_t caplen, uint32_t k, uint32_t size,
                          int32_t net_offset) noexcept nogil:
    """`size` big-endian bytes at offset k, or -1 when they are not all in pkt.

    k is a signed 32-bit offset as in the kernel: negative ones are relative to
    the network header (SKF_NET_OFF + n) or the link-layer header, which is
    where pkt starts (SKF_LL_OFF + n); anything else below 0 is out of bounds.
    """
    cdef int64_t off = <int32_t>k
    cdef const unsigned char *p
    if off < 0:
        if off >= SKF_NET_OFF:
            if net_offset < 0:
                return -1
            off = off - SKF_NET_OFF + net_offset
        elif off >= SKF_LL_OFF:
            off = off - SKF_LL_OFF
        else:
            return -1
    if off + size > caplen:
        return -1
    p = pkt + off
    if size == 4:
        return (<uint32_t>p[0] << 24) | (<uint32_t>p[1] << 16) | (<uint32_t>p[2] << 8) | p[3]
    if size == 2:
        return (<uint32_t>p[0] << 8) | p[1]
    return p[0]


cdef inline int64_t _ancillary(uint32_t k, uint32_t A, uint32_t X, const BPFAux *aux) noexcept nogil:
    """The value of `ld [SKF_AD_OFF + n]`, whatever the load's size; -1 rejects.

    As net/core/filter.c converts them: VLAN fields read 0 when no tag was
    stripped, the packet type is masked to its 3 bits.
    """
    cdef uint32_t which = k - <uint32_t>SKF_AD_OFF
    if which == SKF_AD_PROTOCOL:
        return aux.protocol
    elif which == SKF_AD_PKTTYPE:
        return aux.pkttype & 7
    elif which == SKF_AD_IFINDEX:
        return aux.ifindex
    elif which == SKF_AD_MARK:
        return aux.mark
    elif which == SKF_AD_QUEUE:
        return aux.queue
    elif which == SKF_AD_HATYPE:
        return aux.hatype
    elif which == SKF_AD_RXHASH:
        return aux.rxhash
    elif which == SKF_AD_ALU_XOR_X:
        return A ^ X
    elif which == SKF_AD_VLAN_TAG:
        return aux.vlan_tci if aux.vlan_present else 0
    elif which == SKF_AD_VLAN_TAG_PRESENT:
        return 1 if aux.vlan_present else 0
    elif which == SKF_AD_VLAN_TPID:
        return aux.vlan_tpid if aux.vlan_present else 0
    return -1       # kernel-only (NLATTR, NLATTR_NEST, PAY_OFFSET, CPU, RANDOM) or unknown


cdef inline int64_t _load_abs(const unsigned char *pkt, uint32_t caplen, uint32_t k, uint32_t size,
                              uint32_t A, uint32_t X, const BPFAux *aux) noexcept nogil:
    """`ld [k]`: ancillary data at SKF_AD_OFF and above, else packet bytes."""
    if k >= <uint32_t>SKF_AD_OFF:
        return _ancillary(k, A, X, aux)
    return _load(pkt, caplen, k, size, aux.net_offset)


cdef uint32_t bpf_run(const sock_filter *insns, Py_ssize_t n, const unsigned char *pkt,
                      uint32_t caplen, uint32_t wirelen, const BPFAux *aux) noexcept nogil:
    cdef int64_t budget = BPF_RUN_BUDGET
    cdef uint32_t A = 0
    cdef uint32_t X = 0
    cdef uint32_t k
    cdef uint16_t code
    cdef int64_t v
    cdef uint32_t mem[16]               # BPF_MEMWORDS
    cdef const sock_filter *f = insns
    cdef const sock_filter *end = insns + n
    if aux == NULL:
        aux = &_NO_AUX
    # An unset scratch word reads as 0 (see the module docstring).
    memset(mem, 0, sizeof(mem))
    while f < end:
        code = f.code
        k = f.k
        if code == OP_RET_K:
            return k
        elif code == OP_RET_A:
            return A
        elif code == OP_LD_W_ABS:
            v = _load_abs(pkt, caplen, k, 4, A, X, aux)
            if v < 0:
                return 0
            A = <uint32_t>v
        elif code == OP_LD_H_ABS:
            v = _load_abs(pkt, caplen, k, 2, A, X, aux)
            if v < 0:
                return 0
            A = <uint32_t>v
        elif code == OP_LD_B_ABS:
            v = _load_abs(pkt, caplen, k, 1, A, X, aux)
            if v < 0:
                return 0
            A = <uint32_t>v
        elif code == OP_LD_W_IND:
            v = _load(pkt, caplen, X + k, 4, aux.net_offset)
            if v < 0:
                return 0
            A = <uint32_t>v
        elif code == OP_LD_H_IND:
            v = _load(pkt, caplen, X + k, 2, aux.net_offset)
            if v < 0:
                return 0
            A = <uint32_t>v
        elif code == OP_LD_B_IND:
            v = _load(pkt, caplen, X + k, 1, aux.net_offset)
            if v < 0:
                return 0
            A = <uint32_t>v
        elif code == OP_LDX_B_MSH:
            v = _load(pkt, caplen, k, 1, aux.net_offset)
            if v < 0:
                return 0
            X = (<uint32_t>v & 0xf) << 2
        elif code == OP_LD_W_LEN:
            A = wirelen
        elif code == OP_LDX_W_LEN:
            X = wirelen
        elif code == OP_LD_IMM:
            A = k
        elif code == OP_LDX_IMM:
            X = k
        elif code == OP_LD_MEM:
            A = mem[k & 15]
        elif code == OP_LDX_MEM:
            X = mem[k & 15]
        elif code == OP_ST:
            mem[k & 15] = A
        elif code == OP_STX:
            mem[k & 15] = X
        elif code == OP_ADD_K:
            A = A + k
        elif code == OP_ADD_X:
            A = A + X
        elif code == OP_SUB_K:
            A = A - k
        elif code == OP_SUB_X:
            A = A - X
        elif code == OP_MUL_K:
            A = A * k
        elif code == OP_MUL_X:
            A = A * X
        elif code == OP_DIV_K:
            if k == 0:
                return 0
            A = A // k
        elif code == OP_DIV_X:
            if X == 0:
                return 0
            A = A // X
        elif code == OP_MOD_K:
            if k == 0:
                return 0
            A = A % k
        elif code == OP_MOD_X:
            if X == 0:
                return 0
            A = A % X
        elif code == OP_AND_K:
            A = A & k
        elif code == OP_AND_X:
            A = A & X
        elif code == OP_OR_K:
            A = A | k
        elif code == OP_OR_X:
            A = A | X
        elif code == OP_XOR_K:
            A = A ^ k
        elif code == OP_XOR_X:
            A = A ^ X
        elif code == OP_LSH_K:
            A = A << (k & 31)
        elif code == OP_LSH_X:
            A = A << (X & 31)
        elif code == OP_RSH_K:
            A = A >> (k & 31)
        elif code == OP_RSH_X:
            A = A >> (X & 31)
        elif code == OP_NEG:
            A = ~A + 1
        elif code == OP_JA:
            if <int32_t>k < 0:
                # a backward jump (validated to land inside the program):
                # charge the longest forward run that can follow it
                budget -= n
                if budget < 0:
                    return 0
            f += <int32_t>k
        elif code == OP_JEQ_K:
            f += f.jt if A == k else f.jf
        elif code == OP_JEQ_X:
            f += f.jt if A == X else f.jf
        elif code == OP_JGT_K:
            f += f.jt if A > k else f.jf
        elif code == OP_JGT_X:
            f += f.jt if A > X else f.jf
        elif code == OP_JGE_K:
            f += f.jt if A >= k else f.jf
        elif code == OP_JGE_X:
            f += f.jt if A >= X else f.jf
        elif code == OP_JSET_K:
            f += f.jt if (A & k) != 0 else f.jf
        elif code == OP_JSET_X:
            f += f.jt if (A & X) != 0 else f.jf
        elif code == OP_TAX:
            X = A
        elif code == OP_TXA:
            A = X
        else:
            return 0
        f += 1
    return 0


# ---------------------------------------------------------------- validation

_ALLOWED = frozenset({
    OP_RET_K, OP_RET_A, OP_LD_W_ABS, OP_LD_H_ABS, OP_LD_B_ABS, OP_LD_W_IND, OP_LD_H_IND,
    OP_LD_B_IND, OP_LD_W_LEN, OP_LDX_W_LEN, OP_LDX_B_MSH, OP_LD_IMM, OP_LDX_IMM, OP_LD_MEM,
    OP_LDX_MEM, OP_ST, OP_STX, OP_ADD_K, OP_ADD_X, OP_SUB_K, OP_SUB_X, OP_MUL_K, OP_MUL_X,
    OP_DIV_K, OP_DIV_X, OP_MOD_K, OP_MOD_X, OP_AND_K, OP_AND_X, OP_OR_K, OP_OR_X, OP_XOR_K,
    OP_XOR_X, OP_LSH_K, OP_LSH_X, OP_RSH_K, OP_RSH_X, OP_NEG, OP_JA, OP_JEQ_K, OP_JEQ_X,
    OP_JGT_K, OP_JGT_X, OP_JGE_K, OP_JGE_X, OP_JSET_K, OP_JSET_X, OP_TAX, OP_TXA,
})
_CONDITIONAL = frozenset({OP_JEQ_K, OP_JEQ_X, OP_JGT_K, OP_JGT_X, OP_JGE_K, OP_JGE_X,
                          OP_JSET_K, OP_JSET_X})
_SCRATCH = frozenset({OP_LD_MEM, OP_LDX_MEM, OP_ST, OP_STX})
_ABS_LOADS = frozenset({OP_LD_W_ABS, OP_LD_H_ABS, OP_LD_B_ABS})

# Ancillary offsets Linux knows, with the names tcpdump -d prints for them.
_ANCILLARY_NAMES = {
    SKF_AD_PROTOCOL: "proto", SKF_AD_PKTTYPE: "type", SKF_AD_IFINDEX: "ifidx",
    SKF_AD_NLATTR: "nla", SKF_AD_NLATTR_NEST: "nlan", SKF_AD_MARK: "mark",
    SKF_AD_QUEUE: "queue", SKF_AD_HATYPE: "hatype", SKF_AD_RXHASH: "rxhash",
    SKF_AD_CPU: "cpu", SKF_AD_ALU_XOR_X: "xor_x", SKF_AD_VLAN_TAG: "vlan_tci",
    SKF_AD_VLAN_TAG_PRESENT: "vlanp", SKF_AD_PAY_OFFSET: "poff", SKF_AD_RANDOM: "random",
    SKF_AD_VLAN_TPID: "vlan_tpid",
}
# Kernel state no user space can reproduce: a netlink attribute walk, the flow
# dissector's payload offset, the CPU running the filter, the kernel's PRNG.
_KERNEL_ONLY = frozenset({SKF_AD_NLATTR, SKF_AD_NLATTR_NEST, SKF_AD_PAY_OFFSET, SKF_AD_CPU,
                          SKF_AD_RANDOM})
_KERNEL_ONLY_NAMES = {SKF_AD_NLATTR: "SKF_AD_NLATTR", SKF_AD_NLATTR_NEST: "SKF_AD_NLATTR_NEST",
                      SKF_AD_PAY_OFFSET: "SKF_AD_PAY_OFFSET", SKF_AD_CPU: "SKF_AD_CPU",
                      SKF_AD_RANDOM: "SKF_AD_RANDOM"}


cdef object _invalid(Py_ssize_t pc, tuple insn, str problem):
    return FilterError(f"invalid BPF program: instruction {pc} ({_mnemonic(pc, insn)}): {problem}")


cdef int _validate(BPFProgram prog) except -1:
    """Accept what Linux's bpf_check_classic() accepts, plus backward jumps and
    reads of unset scratch words (kernel_refusal says why Linux refuses those);
    set the flags."""
    cdef tuple insns = prog._instructions
    cdef Py_ssize_t n = len(insns), pc
    cdef uint32_t code, jt, jf, k
    cdef bint backward = False
    refusal = None
    if not 1 <= n <= BPF_MAXINSNS:
        raise FilterError(f"invalid BPF program: it has {n} instructions; Linux takes 1 to "
                          f"{BPF_MAXINSNS}")
    for pc in range(n):
        insn = insns[pc]
        code, jt, jf, k = insn
        if code not in _ALLOWED:
            raise _invalid(pc, insn, f"opcode {code:#x} is not a classic BPF instruction Linux accepts")
        if (code == OP_DIV_K or code == OP_MOD_K) and k == 0:
            raise _invalid(pc, insn, "division by the constant 0")
        elif (code == OP_LSH_K or code == OP_RSH_K) and k >= 32:
            raise _invalid(pc, insn, f"shift by {k}; a constant shift must be 0..31")
        elif code in _SCRATCH and k >= BPF_MEMWORDS:
            raise _invalid(pc, insn, f"scratch memory has M[0]..M[{BPF_MEMWORDS - 1}], not M[{k}]")
        elif code == OP_JA and k >= <uint32_t>(n - pc - 1):
            if k >= 0x80000000:
                if pc + 1 + _signed(k) < 0:
                    raise _invalid(pc, insn, f"jumps to {pc + 1 + _signed(k)}, before the first "
                                             f"instruction")
                if refusal is None:
                    refusal = (f"instruction {pc} ({_mnemonic(pc, insn)}) jumps backwards, which "
                               f"Linux refuses (libpcap needs it for 'protochain')")
                backward = True
            else:
                raise _invalid(pc, insn, f"jumps to {pc + 1 + k}, past the last instruction ({n - 1})")
        elif code in _CONDITIONAL and (pc + jt + 1 >= n or pc + jf + 1 >= n):
            raise _invalid(pc, insn, f"jumps to {pc + 1 + max(jt, jf)}, past the last "
                                     f"instruction ({n - 1})")
        elif code in _ABS_LOADS and k >= _AD_OFF:
            which = k - _AD_OFF
            if which not in _ANCILLARY_NAMES:
                raise _invalid(pc, insn, f"SKF_AD_OFF + {which} is not an ancillary load Linux knows "
                                         f"(offsets 0, 4, .. {SKF_AD_MAX - 4})")
            prog.uses_ancillary = True
            if which in _KERNEL_ONLY:
                prog.kernel_only = True
    code, jt, jf, k = insns[n - 1]
    if code != OP_RET_K and code != OP_RET_A:
        raise _invalid(n - 1, insns[n - 1], "the last instruction must be a ret, or a packet "
                                            "could run past the end")
    if not backward:
        refusal = _check_scratch_reads(insns)
    prog.kernel_refusal = refusal
    return 0


cdef object _check_scratch_reads(tuple insns):
    """Why Linux refuses the program's scratch reads, or None.

    No scratch word may be read before it is written, on any path to the read:
    the kernel's check_load_and_stores(), statement for statement (Linux does
    not clear M[] per packet; bpf_run does).  Only for forward-only programs.
    """
    cdef Py_ssize_t n = len(insns), pc
    cdef uint32_t code, jt, jf, k
    cdef uint32_t valid = 0
    masks = [0xffff] * n
    for pc in range(n):
        valid &= masks[pc]
        code, jt, jf, k = insns[pc]
        if code == OP_ST or code == OP_STX:
            valid |= (<uint32_t>1) << k
        elif code == OP_LD_MEM or code == OP_LDX_MEM:
            if not valid & ((<uint32_t>1) << k):
                return (f"instruction {pc} ({_mnemonic(pc, insns[pc])}) reads M[{k}] before it "
                        f"is written on some path, which Linux refuses (libpcap issue #834)")
        elif code == OP_JA:
            masks[pc + 1 + k] &= valid
            valid = 0xffff
        elif code in _CONDITIONAL:
            masks[pc + 1 + jt] &= valid
            masks[pc + 1 + jf] &= valid
            valid = 0xffff
    return None


# ---------------------------------------------------------------- disassembly

cdef inline long _signed(uint32_t k):
    return <int32_t>k


def _operation(Py_ssize_t pc, tuple insn):
    """(operation, operand) as libpcap's bpf_image() prints them (`tcpdump -d`)."""
    cdef uint32_t code, jt, jf, k
    code, jt, jf, k = insn
    cls = code & 0x07
    if code == OP_RET_K:
        return "ret", f"#{_signed(k)}"
    if code == OP_RET_A:
        return "ret", ""
    if code in _ABS_LOADS:
        op = {OP_LD_W_ABS: "ld", OP_LD_H_ABS: "ldh", OP_LD_B_ABS: "ldb"}[code]
        if k >= _AD_OFF and (k - _AD_OFF) in _ANCILLARY_NAMES:
            return op, f"[{_ANCILLARY_NAMES[k - _AD_OFF]}]"
        return op, f"[{_signed(k)}]"
    if code in (OP_LD_W_IND, OP_LD_H_IND, OP_LD_B_IND):
        return {OP_LD_W_IND: "ld", OP_LD_H_IND: "ldh", OP_LD_B_IND: "ldb"}[code], f"[x + {_signed(k)}]"
    if code == OP_LD_W_LEN:
        return "ld", "#pktlen"
    if code == OP_LDX_W_LEN:
        return "ldx", "#pktlen"         # bpf_image() prints "unimp"; libpcap never emits it
    if code == OP_LDX_B_MSH:
        return "ldxb", f"4*([{_signed(k)}]&0xf)"
    if code == OP_LD_IMM or code == OP_LDX_IMM:
        return ("ld" if code == OP_LD_IMM else "ldx"), f"#{k:#x}"
    if code in _SCRATCH:
        return {OP_LD_MEM: "ld", OP_LDX_MEM: "ldx", OP_ST: "st", OP_STX: "stx"}[code], f"M[{_signed(k)}]"
    if code == OP_JA:
        return "ja", f"{pc + 1 + _signed(k)}"
    if code in _CONDITIONAL:
        op = {BPF_JEQ: "jeq", BPF_JGT: "jgt", BPF_JGE: "jge", BPF_JSET: "jset"}[code & 0xf0]
        return op, ("x" if code & BPF_X else f"#{k:#x}")
    if code == OP_NEG:
        return "neg", ""
    if code == OP_TAX or code == OP_TXA:
        return ("tax" if code == OP_TAX else "txa"), ""
    if cls == BPF_ALU and code in _ALLOWED:
        op = {BPF_ADD: "add", BPF_SUB: "sub", BPF_MUL: "mul", BPF_DIV: "div", BPF_MOD: "mod",
              BPF_AND: "and", BPF_OR: "or", BPF_XOR: "xor", BPF_LSH: "lsh", BPF_RSH: "rsh"}[code & 0xf0]
        if code & BPF_X:
            return op, "x"
        if code & 0xf0 in (BPF_AND, BPF_OR, BPF_XOR):
            return op, f"#{k:#x}"
        return op, f"#{_signed(k)}"
    return "unimp", f"{code:#x}"


cdef str _mnemonic(Py_ssize_t pc, tuple insn):
    op, operand = _operation(pc, insn)
    return f"{op} {operand}".rstrip()


cdef str _image(Py_ssize_t pc, tuple insn):
    """One line of `tcpdump -d`."""
    op, operand = _operation(pc, insn)
    code = insn[0]
    if code in _CONDITIONAL:
        return f"({pc:03d}) {op:<8} {operand:<16} jt {pc + 1 + insn[1]}\tjf {pc + 1 + insn[2]}"
    return f"({pc:03d}) {op:<8} {operand}"


# ---------------------------------------------------------------- raw forms

cdef tuple _checked_insn(Py_ssize_t pc, object item):
    """One (code, jt, jf, k) with each field in range; k may be given signed."""
    try:
        code, jt, jf, k = item
        code, jt, jf, k = int(code), int(jt), int(jf), int(k)
    except (TypeError, ValueError):
        raise FilterError(f"invalid BPF program: instruction {pc} is {item!r}, not four integers "
                          f"(code, jt, jf, k)") from None
    if not 0 <= code <= 0xffff:
        raise FilterError(f"invalid BPF program: instruction {pc}: code {code} does not fit 16 bits")
    if not 0 <= jt <= 0xff or not 0 <= jf <= 0xff:
        raise FilterError(f"invalid BPF program: instruction {pc}: jt {jt} / jf {jf} must be 0..255")
    if not -0x80000000 <= k <= 0xffffffff:
        raise FilterError(f"invalid BPF program: instruction {pc}: k {k} does not fit 32 bits")
    return (code, jt, jf, k & 0xffffffff)


def _parse_ddd(str text):
    """The instructions of `tcpdump -ddd` output: a count, then "code jt jf k" lines.

    Commas separate instructions as well as newlines, so the one-line form
    iptables' bpf match and tc use ("4,40 0 0 12,21 0 1 2048,...") parses too.
    """
    lines = [line.strip() for line in text.replace(",", "\n").splitlines()]
    lines = [line for line in lines if line]
    if not lines:
        raise FilterError("no BPF program in an empty text; expected `tcpdump -ddd` output")
    try:
        count = int(lines[0])
    except ValueError:
        raise FilterError(f"BPF program text must start with the instruction count, as "
                          f"`tcpdump -ddd` prints it; got {lines[0]!r}") from None
    if count != len(lines) - 1:
        raise FilterError(f"BPF program text announces {count} instructions but has "
                          f"{len(lines) - 1}")
    insns = []
    for pc, line in enumerate(lines[1:]):
        fields = line.split()
        try:
            if len(fields) != 4:
                raise ValueError
            insns.append(tuple(int(x) for x in fields))
        except ValueError:
            raise FilterError(f"BPF program text, instruction {pc}: expected 'code jt jf k' "
                              f"(four decimal integers), got {line!r}") from None
    return insns


def _kernel_only_loads(tuple insns):
    used = {k - _AD_OFF for code, _, _, k in insns if code in _ABS_LOADS and k >= _AD_OFF}
    return ", ".join(sorted(_KERNEL_ONLY_NAMES[w] for w in used & _KERNEL_ONLY))


def _rebuild(instructions, linktype, snaplen, expression):
    return BPFProgram(instructions, linktype=linktype, snaplen=snaplen, expression=expression)


# ---------------------------------------------------------------- the program

cdef class BPFProgram:
    """A validated classic BPF program: attach it to a socket, or run it here.

    Build one with zcap.bpf.compile_filter(), or from a raw program:
    BPFProgram.from_tuples(), from_text() (`tcpdump -ddd` output), from_bytes()
    (packed struct sock_filter), or parse() for any of these.  Construction
    validates it as Linux does, except that backward jumps and reads of unset
    scratch words (which libpcap generates, and runs in user space) are
    accepted: `kernel_refusal` then says why SO_ATTACH_FILTER would refuse
    it (None: Linux attaches it).  A program never changes afterwards.
    """

    def __init__(self, instructions, *, linktype=1, snaplen=None, expression=None):
        if self.insns != NULL:
            raise TypeError("a BPFProgram cannot be changed; build a new one")
        insns = tuple(_checked_insn(pc, item) for pc, item in enumerate(instructions))
        self._instructions = insns
        self._linktype = int(linktype)
        self._snaplen = None if snaplen is None else int(snaplen)
        self._expression = expression
        _validate(self)
        cdef Py_ssize_t n = len(insns), i
        cdef sock_filter *array = <sock_filter *>PyMem_Malloc(n * sizeof(sock_filter))
        if array == NULL:
            raise MemoryError()
        for i in range(n):
            array[i].code, array[i].jt, array[i].jf, array[i].k = insns[i]
        self.insns = array
        self.n = n

    def __dealloc__(self):
        PyMem_Free(self.insns)

    @classmethod
    def from_tuples(cls, instructions, *, linktype=1, snaplen=None, expression=None):
        """From (code, jt, jf, k) tuples, as `tcpdump -ddd` numbers them."""
        return cls(instructions, linktype=linktype, snaplen=snaplen, expression=expression)

    @classmethod
    def from_text(cls, str text, *, linktype=1, snaplen=None):
        """From `tcpdump -ddd` output: the instruction count, then "code jt jf k" lines."""
        return cls(_parse_ddd(text), linktype=linktype, snaplen=snaplen)

    @classmethod
    def from_bytes(cls, data, *, linktype=1, snaplen=None, expression=None):
        """From a packed struct sock_filter array (what as_bytes() returns)."""
        cdef const unsigned char[::1] raw = memoryview(data).cast("B")
        cdef Py_ssize_t size = raw.shape[0], i
        cdef sock_filter insn
        if size % sizeof(sock_filter):
            raise FilterError(f"a packed BPF program is a multiple of {sizeof(sock_filter)} bytes, "
                              f"not {size}")
        insns = []
        for i in range(0, size, sizeof(sock_filter)):
            memcpy(&insn, &raw[i], sizeof(sock_filter))
            insns.append((insn.code, insn.jt, insn.jf, insn.k))
        return cls(insns, linktype=linktype, snaplen=snaplen, expression=expression)

    @classmethod
    def parse(cls, obj, *, linktype=1, snaplen=None):
        """A BPFProgram from any raw form: a BPFProgram (returned as is), `tcpdump
        -ddd` text, packed bytes, or a sequence of (code, jt, jf, k).

        Filter expressions are not raw programs: compile them with
        zcap.bpf.compile_filter().
        """
        if isinstance(obj, BPFProgram):
            return obj
        if isinstance(obj, str):
            first = obj.strip().replace(",", "\n").split("\n", 1)[0].strip()
            if not first.isdigit():
                raise FilterError(f"{obj!r} is not `tcpdump -ddd` output; compile a filter "
                                  f"expression with zcap.bpf.compile_filter()")
            return cls.from_text(obj, linktype=linktype, snaplen=snaplen)
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return cls.from_bytes(obj, linktype=linktype, snaplen=snaplen)
        return cls.from_tuples(obj, linktype=linktype, snaplen=snaplen)

    @property
    def kernel_ok(self):
        """True if Linux attaches the program (kernel_refusal is None)."""
        return self.kernel_refusal is None

    @property
    def instructions(self):
        """The program as a tuple of (code, jt, jf, k)."""
        return self._instructions

    @property
    def linktype(self):
        """LINKTYPE_* of the packets the program expects (1: Ethernet)."""
        return self._linktype

    @property
    def snaplen(self):
        """The snapshot length it was compiled for (None for a raw program)."""
        return self._snaplen

    @property
    def expression(self):
        """The filter expression it was compiled from (None for a raw program)."""
        return self._expression

    def __len__(self):
        return self.n

    def __eq__(self, other):
        if not isinstance(other, BPFProgram):
            return NotImplemented
        return self._instructions == (<BPFProgram>other)._instructions

    def __hash__(self):
        return hash(self._instructions)

    def __repr__(self):
        what = "" if self._expression is None else f" {self._expression!r}"
        snap = "" if self._snaplen is None else f", snaplen {self._snaplen}"
        return f"<BPFProgram{what}: {self.n} instructions, linktype {self._linktype}{snap}>"

    def __reduce__(self):
        return _rebuild, (self._instructions, self._linktype, self._snaplen, self._expression)

    def as_bytes(self):
        """The packed struct sock_filter array SO_ATTACH_FILTER takes (8 bytes each)."""
        return PyBytes_FromStringAndSize(<char *>self.insns, self.n * sizeof(sock_filter))

    def dump(self):
        """The program as `tcpdump -d` prints it, one instruction a line."""
        return "".join(_image(pc, insn) + "\n" for pc, insn in enumerate(self._instructions))

    def dump_ddd(self):
        """The program as `tcpdump -ddd` prints it (what from_text() reads)."""
        lines = [f"{self.n}"] + [f"{c} {jt} {jf} {k}" for c, jt, jf, k in self._instructions]
        return "\n".join(lines) + "\n"

    def match(self, buf, wirelen=None, *, vlan_tci=None, uint16_t vlan_tpid=0x8100,
              uint32_t ifindex=0, uint16_t protocol=0, uint8_t pkttype=0, uint16_t hatype=0,
              uint32_t mark=0, uint32_t rxhash=0, uint16_t queue=0, net_offset=None):
        """Run the program on one packet; return its result (0: rejected).

        The result is what the Linux kernel's socket filter returns for the
        packet: 0 to drop it, else how many bytes to keep.  `buf` is any
        buffer (bytes, memoryview, a zcap Packet) holding the packet from its
        link-layer header; `wirelen` is its length on the wire (default: the
        object's `wirelen` attribute if it has one, as a Packet does, else
        len(buf)).  The keywords are the kernel metadata Linux ancillary
        loads read: vlan_tci (None: no tag was stripped), vlan_tpid, ifindex,
        protocol (the ethertype), pkttype (PACKET_*), hatype, mark, rxhash,
        queue, and net_offset (where the network header starts, for loads at
        SKF_NET_OFF + n; None: unknown, such loads reject).
        """
        cdef BPFAux aux
        cdef Py_buffer view
        cdef uint32_t caplen, wire, result
        if self.kernel_only:
            raise FilterError(f"{self!r} reads {_kernel_only_loads(self._instructions)}, which "
                              f"only the kernel has; attach it to a socket instead of running it here")
        aux.ifindex = ifindex
        aux.mark = mark
        aux.rxhash = rxhash
        aux.net_offset = -1 if net_offset is None else net_offset
        aux.protocol = protocol
        aux.hatype = hatype
        aux.queue = queue
        aux.pkttype = pkttype
        if vlan_tci is None:
            aux.vlan_present = 0
            aux.vlan_tci = 0
            aux.vlan_tpid = 0
        else:
            aux.vlan_present = 1
            aux.vlan_tci = vlan_tci
            aux.vlan_tpid = vlan_tpid
        if wirelen is None and not (type(buf) is bytes or type(buf) is memoryview
                                    or type(buf) is bytearray):
            wirelen = getattr(buf, "wirelen", None)
            if not isinstance(wirelen, int):
                wirelen = None          # not a packet's length (a Batch has a wirelen column)
        PyObject_GetBuffer(buf, &view, PyBUF_SIMPLE)
        try:
            caplen = <uint32_t>view.len if view.len <= _MAX_U32 else <uint32_t>_MAX_U32
            wire = caplen if wirelen is None else wirelen
            result = bpf_run(self.insns, self.n, <const unsigned char *>view.buf, caplen, wire, &aux)
        finally:
            PyBuffer_Release(&view)
        return result
