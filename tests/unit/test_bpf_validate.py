"""BPFProgram accepts exactly the programs Linux accepts, and says why not.

The running kernel is the reference: SO_ATTACH_FILTER on an ordinary UDP
socket (no privilege needed) runs net/core/filter.c's bpf_check_classic() and
fails with EINVAL for a program it refuses.
"""

from __future__ import annotations

import ctypes
import errno
import pickle
import socket
import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from zcap.bpf import BPFProgram, FilterError, compile_filter

SO_ATTACH_FILTER = 26
SKF_AD_OFF = 0xFFFFF000
RET_K, RET_A, LD_IMM, LD_MEM, LDX_MEM, ST, STX = 0x06, 0x16, 0x00, 0x60, 0x61, 0x02, 0x03
JA, JEQ_K, DIV_K, MOD_K, LSH_K, RSH_K, LDB_ABS = 0x05, 0x15, 0x34, 0x94, 0x64, 0x74, 0x30
ADD_K = 0x04

ACCEPT = (RET_K, 0, 0, 0xFFFF)
# Every opcode Linux accepts (chk_code_allowed in net/core/filter.c).
LINUX_OPCODES = sorted({
    0x04, 0x0C, 0x14, 0x1C, 0x24, 0x2C, 0x34, 0x3C, 0x94, 0x9C, 0x54, 0x5C, 0x44, 0x4C, 0xA4, 0xAC,
    0x64, 0x6C, 0x74, 0x7C, 0x84,                                   # ALU
    0x20, 0x28, 0x30, 0x80, 0x40, 0x48, 0x50, 0x00, 0x60,            # LD
    0x81, 0xB1, 0x01, 0x61, 0x02, 0x03, 0x07, 0x87, 0x06, 0x16,      # LDX, ST, STX, MISC, RET
    0x05, 0x15, 0x1D, 0x35, 0x3D, 0x25, 0x2D, 0x45, 0x4D,            # JMP
})


def attach_filter(sock: socket.socket, code: bytes) -> None:
    """SO_ATTACH_FILTER `code` (packed struct sock_filter) to `sock`; OSError if refused."""
    buf = ctypes.create_string_buffer(code, max(len(code), 1))
    fprog = struct.pack("HL", len(code) // 8, ctypes.addressof(buf))     # struct sock_fprog
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


@pytest.fixture(scope="module")
def udp_socket():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        yield sock


def kernel_accepts(sock: socket.socket, insns) -> bool:
    try:
        attach_filter(sock, b"".join(struct.pack("=HBBI", *i) for i in insns))
    except OSError as exc:
        assert exc.errno == errno.EINVAL, exc
        return False
    return True


# (program, what the message must say); each one Linux refuses too.
INVALID = [
    ([], "it has 0 instructions"),
    ([ACCEPT] * 4097, "it has 4097 instructions"),
    ([(0x0E, 0, 0, 0)], "opcode 0xe is not"),                          # BPF_RET|BPF_X
    ([(0x21, 0, 0, 0), ACCEPT], "opcode 0x21 is not"),                 # LDX|W|ABS (seccomp only)
    ([(0x30 | 0x80, 0, 0, 0), ACCEPT], "opcode 0xb0 is not"),
    ([(0x10000 - 1, 0, 0, 0), ACCEPT], "opcode 0xffff is not"),
    ([(LD_IMM, 0, 0, 7), (DIV_K, 0, 0, 0), ACCEPT], "division by the constant 0"),
    ([(MOD_K, 0, 0, 0), ACCEPT], "division by the constant 0"),
    ([(LSH_K, 0, 0, 32), ACCEPT], "shift by 32"),
    ([(RSH_K, 0, 0, 0xFFFFFFFF), ACCEPT], "shift by 4294967295"),
    ([(ST, 0, 0, 16), ACCEPT], "not M[16]"),
    ([(ST, 0, 0, 0), (LD_MEM, 0, 0, 99), ACCEPT], "not M[99]"),
    ([(JA, 0, 0, 1), ACCEPT], "jumps to 2, past the last instruction (1)"),
    ([(JA, 0, 0, 0xFFFFFFFE), ACCEPT], "jumps to -1, before the first instruction"),
    ([ACCEPT, (JA, 0, 0, 0xFFFFFFF0), ACCEPT], "jumps to -14, before the first instruction"),
    ([(JEQ_K, 1, 0, 0), ACCEPT], "past the last instruction"),
    ([(JEQ_K, 0, 200, 0), ACCEPT, ACCEPT], "jumps to 201"),
    ([(LD_IMM, 0, 0, 0)], "the last instruction must be a ret"),
    ([ACCEPT, (LD_IMM, 0, 0, 0)], "the last instruction must be a ret"),
    ([(LDB_ABS, 0, 0, SKF_AD_OFF + 1), ACCEPT], "SKF_AD_OFF + 1 is not an ancillary load"),
    ([(0x20, 0, 0, SKF_AD_OFF + 64), ACCEPT], "SKF_AD_OFF + 64 is not"),
]

# Programs libpcap generates that Linux refuses to attach: valid here (zcap runs
# them in user space), with the reason in kernel_refusal.
KERNEL_REFUSED = [
    ([(JA, 0, 0, 0xFFFFFFFF), ACCEPT], "jumps backwards"),
    ([ACCEPT, (LD_IMM, 0, 0, 1), (JA, 0, 0, 0xFFFFFFFD), ACCEPT], "jumps backwards"),
    ([(LD_MEM, 0, 0, 3), ACCEPT], "reads M[3] before it is written"),
    # M[1] is written on one path only.
    ([(JEQ_K, 0, 1, 5), (ST, 0, 0, 1), (LDX_MEM, 0, 0, 1), ACCEPT], "reads M[1] before"),
]


@pytest.mark.parametrize(("insns", "problem"), KERNEL_REFUSED, ids=[p for _, p in KERNEL_REFUSED])
def test_program_linux_refuses_is_valid_with_the_reason(udp_socket, insns, problem):
    prog = BPFProgram.from_tuples(insns)
    assert problem in prog.kernel_refusal and not prog.kernel_ok
    assert not kernel_accepts(udp_socket, insns)


def test_backward_jump_loop_is_bounded():
    """A program that jumps back to itself forever ends: the packet is rejected."""
    forever = BPFProgram([(LD_IMM, 0, 0, 1), (JA, 0, 0, 0xFFFFFFFF), ACCEPT])
    assert forever.match(b"\0" * 64) == 0
    # a loop that ends within the budget runs to its end: count A up to 1000
    counting = BPFProgram([(ADD_K, 0, 0, 1), (JEQ_K, 1, 0, 1000), (JA, 0, 0, 0xFFFFFFFD),
                           (RET_A, 0, 0, 0)])
    assert counting.match(b"") == 1000


def test_unset_scratch_word_reads_zero():
    prog = BPFProgram([(LD_MEM, 0, 0, 3), (ADD_K, 0, 0, 7), (RET_A, 0, 0, 0)])
    assert prog.match(b"") == 7


@pytest.mark.parametrize(("insns", "problem"), INVALID, ids=[p for _, p in INVALID])
def test_invalid_program(udp_socket, insns, problem):
    with pytest.raises(FilterError) as info:
        BPFProgram.from_tuples(insns)
    assert problem in str(info.value)
    if insns:
        assert not kernel_accepts(udp_socket, insns)


def test_message_names_the_instruction():
    with pytest.raises(FilterError) as info:
        BPFProgram([(LD_IMM, 0, 0, 1), (DIV_K, 0, 0, 0), ACCEPT])
    assert str(info.value) == ("invalid BPF program: instruction 1 (div #0): division by the "
                               "constant 0")


VALID = [
    [ACCEPT],
    [(RET_A, 0, 0, 0)],
    [ACCEPT] * 4096,
    [(JA, 0, 0, 0), ACCEPT],
    [(JEQ_K, 1, 0, 0), (RET_K, 0, 0, 0), ACCEPT],                       # jump to the last instruction
    [(JEQ_K, 0, 1, 5), (ST, 0, 0, 1), (STX, 0, 0, 1), (LDX_MEM, 0, 0, 1), ACCEPT],
    [(ST, 0, 0, 15), (LD_MEM, 0, 0, 15), (LSH_K, 0, 0, 31), (RET_A, 0, 0, 0)],
    [(LDB_ABS, 0, 0, SKF_AD_OFF + 48), (0x28, 0, 0, SKF_AD_OFF + 44), ACCEPT],
    [(0x20, 0, 0, SKF_AD_OFF + 56), ACCEPT],                            # random: valid, kernel only
    [(0x20, 0, 0, 0xFFE00000), (0x30, 0, 0, 0xFFF00004), ACCEPT],        # SKF_LL_OFF / SKF_NET_OFF
    [(0x81, 0, 0, 0), (0x87, 0, 0, 0), (RET_A, 0, 0, 0)],                # ldx #pktlen; txa
]


@pytest.mark.parametrize("insns", VALID, ids=range(len(VALID)))
def test_valid_program(udp_socket, insns):
    prog = BPFProgram(insns)
    assert prog.instructions == tuple(insns) and len(prog) == len(insns)
    if len(insns) < 100:                # the kernel charges big programs to optmem_max
        assert kernel_accepts(udp_socket, insns)


def test_ancillary_flags():
    plain = BPFProgram([(0x28, 0, 0, 12), ACCEPT])
    vlan = BPFProgram([(LDB_ABS, 0, 0, SKF_AD_OFF + 48), ACCEPT])
    rand = BPFProgram([(0x20, 0, 0, SKF_AD_OFF + 56), ACCEPT])
    assert (plain.uses_ancillary, plain.kernel_only) == (False, False)
    assert (vlan.uses_ancillary, vlan.kernel_only) == (True, False)
    assert (rand.uses_ancillary, rand.kernel_only) == (True, True)
    with pytest.raises(FilterError, match="SKF_AD_RANDOM.*attach it to a socket"):
        rand.match(b"")
    # a packet load at such an offset through an index register is not ancillary
    assert not BPFProgram([(0x50, 0, 0, SKF_AD_OFF + 56), ACCEPT]).uses_ancillary


# ---------------------------------------------------------------- the kernel as the oracle

def _k_values():
    return st.one_of(st.integers(0, 40), st.integers(0, 0xFFFFFFFF),
                     st.sampled_from([SKF_AD_OFF, SKF_AD_OFF + 4, SKF_AD_OFF + 44, SKF_AD_OFF + 48,
                                      SKF_AD_OFF + 60, SKF_AD_OFF + 64, SKF_AD_OFF + 2, 0xFFFFFFFF,
                                      0x80000000, 15, 16, 31, 32]))


@st.composite
def programs(draw):
    """Programs near the edges of validity: mostly Linux opcodes, in-range fields, a final ret."""
    n = draw(st.integers(1, 12))
    insns = []
    for pc in range(n):
        linux_opcode = draw(st.integers(0, 9)) > 0
        code = draw(st.sampled_from(LINUX_OPCODES) if linux_opcode else st.integers(0, 0xFF))
        room = max(n - pc - 2, 0)
        jump = st.integers(0, room) if draw(st.integers(0, 9)) > 0 else st.integers(0, 255)
        small_k = code in (LD_MEM, LDX_MEM, ST, STX) and draw(st.integers(0, 4)) > 0
        k = draw(st.integers(0, 15) if small_k else _k_values())
        insns.append((code, draw(jump), draw(jump), k))
    if draw(st.integers(0, 4)) > 0:
        insns[-1] = (draw(st.sampled_from([RET_K, RET_A])), 0, 0, draw(_k_values()))
    return insns


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(insns=programs())
def test_accepts_exactly_what_linux_accepts(udp_socket, insns):
    try:
        ours = BPFProgram(insns).kernel_ok
    except FilterError:
        ours = False
    assert ours == kernel_accepts(udp_socket, insns), insns


# ---------------------------------------------------------------- raw forms

TCP_PORT_80 = "tcp port 80"


def test_from_text_reads_tcpdump_ddd():
    prog = compile_filter(TCP_PORT_80)
    assert BPFProgram.from_text(prog.dump_ddd()) == prog
    loose = BPFProgram.from_text("  2\n\n 40 0 0 12 \n6 0 0 1\n\n")
    assert loose.instructions == ((40, 0, 0, 12), (6, 0, 0, 1))
    # the one-line form iptables' bpf match and tc take
    assert BPFProgram.from_text("2,40 0 0 12,6 0 0 1") == BPFProgram([(40, 0, 0, 12), (6, 0, 0, 1)])


@pytest.mark.parametrize(("text", "problem"), [
    ("", "empty"),
    ("tcp port 80", "must start with the instruction count"),
    ("3\n6 0 0 1\n", "announces 3 instructions but has 1"),
    ("1\n6 0 0\n", "expected 'code jt jf k'"),
    ("1\n6 0 0 x\n", "expected 'code jt jf k'"),
    ("1\n6 0 0 1 2\n", "expected 'code jt jf k'"),
    ("1\n6 0 0 4294967296\n", "does not fit 32 bits"),
    ("1\n6 256 0 1\n", "must be 0..255"),
    ("1\n65536 0 0 1\n", "does not fit 16 bits"),
])
def test_from_text_errors(text, problem):
    with pytest.raises(FilterError, match=problem):
        BPFProgram.from_text(text)


def test_from_tuples_errors():
    with pytest.raises(FilterError, match="not four integers"):
        BPFProgram.from_tuples([(6, 0, 0)])
    with pytest.raises(FilterError, match="not four integers"):
        BPFProgram.from_tuples([("six", 0, 0, 1)])
    with pytest.raises(TypeError):
        BPFProgram.from_tuples(None)


def test_signed_k_is_taken_modulo_2_32():
    prog = BPFProgram([(LDB_ABS, 0, 0, -0x1000 + 48), ACCEPT])
    assert prog.instructions[0] == (LDB_ABS, 0, 0, SKF_AD_OFF + 48)
    with pytest.raises(FilterError, match="does not fit 32 bits"):
        BPFProgram([(LD_IMM, 0, 0, -(1 << 31) - 1), ACCEPT])


def test_bytes_round_trip_is_struct_sock_filter():
    prog = compile_filter(TCP_PORT_80)
    raw = prog.as_bytes()
    assert len(raw) == 8 * len(prog)
    assert list(struct.iter_unpack("=HBBI", raw)) == list(prog.instructions)
    assert BPFProgram.from_bytes(raw) == prog
    assert BPFProgram.from_bytes(bytearray(raw)) == BPFProgram.from_bytes(memoryview(raw)) == prog
    with pytest.raises(FilterError, match="multiple of 8"):
        BPFProgram.from_bytes(raw[:-1])
    with pytest.raises(FilterError, match="0 instructions"):
        BPFProgram.from_bytes(b"")


def test_parse_takes_every_raw_form_and_no_expression():
    prog = compile_filter(TCP_PORT_80)
    assert BPFProgram.parse(prog) is prog
    for raw in (prog.dump_ddd(), prog.as_bytes(), prog.instructions, list(map(list, prog.instructions))):
        parsed = BPFProgram.parse(raw, linktype=113, snaplen=96)
        assert parsed == prog and parsed.linktype == 113 and parsed.snaplen == 96
        assert parsed.expression is None
    with pytest.raises(FilterError, match="compile_filter"):
        BPFProgram.parse(TCP_PORT_80)


def test_value_semantics():
    a, b = compile_filter("udp"), BPFProgram.from_text(compile_filter("udp").dump_ddd())
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != compile_filter("tcp") and a != a.instructions
    assert repr(a) == "<BPFProgram 'udp': 12 instructions, linktype 1, snaplen 262144>"
    assert repr(b) == "<BPFProgram: 12 instructions, linktype 1>"
    copy = pickle.loads(pickle.dumps(a))
    assert copy == a and copy.expression == "udp" and copy.snaplen == a.snaplen
    with pytest.raises(TypeError, match="cannot be changed"):
        a.__init__([ACCEPT])
    with pytest.raises(AttributeError):
        a.kernel_only = True


def test_uninitialised_program_is_harmless():
    empty = BPFProgram.__new__(BPFProgram)
    assert len(empty) == 0 and empty.as_bytes() == b"" and empty.match(b"x") == 0
