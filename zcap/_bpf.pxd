# Classic BPF for Cython code: run a validated program on a packet with no
# Python object and without the GIL.
#
#     from zcap._bpf cimport BPFProgram, BPFAux, bpf_aux_clear, bpf_run
#
#     cdef BPFProgram prog = zcap.bpf.compile_filter("tcp port 80")
#     cdef BPFAux aux
#     bpf_aux_clear(&aux)                  # no metadata; then fill what you know
#     aux.ifindex = ifindex
#     with nogil:
#         keep = bpf_run(prog.insns, prog.n, data, caplen, wirelen, &aux)
#
# bpf_run() returns what the program returns, exactly as the Linux kernel's
# socket filter would: 0 drops the packet, anything else is the number of
# bytes to keep (the kernel truncates to min(result, wirelen)).
#
#   insns, n   a program that passed validation: take them from a BPFProgram
#              (prog.insns, prog.n), which validates on construction and never
#              changes afterwards.  Keep a reference to the BPFProgram while
#              you use the pointer.
#   pkt        the packet bytes, starting at the link-layer header (as a packet
#              socket delivers them); caplen of them are readable
#   wirelen    the packet's length on the wire (`ld #pktlen`, `len`)
#   aux        the kernel metadata that Linux ancillary loads read (below);
#              NULL means none (every field 0, no VLAN tag, net_offset -1)
#
# A program with backward jumps (kernel_refusal set) executes at most 4,194,304
# instructions per packet; a packet that needs more is rejected.  Unset scratch
# words read as 0.
#
# A load beyond caplen rejects the packet (returns 0), as the kernel and
# libpcap's bpf_filter() do; so does division or modulo by X == 0.  Programs
# whose `kernel_only` flag is set read kernel state no user space has
# (SKF_AD_NLATTR, SKF_AD_NLATTR_NEST, SKF_AD_PAY_OFFSET, SKF_AD_CPU,
# SKF_AD_RANDOM): bpf_run rejects the packet when it reaches such a load, so
# check the flag first and attach those programs to a socket instead.
from libc.stdint cimport uint8_t, uint16_t, uint32_t, int32_t
from libc.string cimport memset

from zcap.includes.linux cimport sock_filter

cdef struct BPFAux:
    uint32_t ifindex        # SKF_AD_IFINDEX: interface index
    uint32_t mark           # SKF_AD_MARK: skb->mark
    uint32_t rxhash         # SKF_AD_RXHASH: the flow hash (tp_rxhash)
    int32_t net_offset      # where the network header starts in pkt, for loads at
                            # SKF_NET_OFF + n; -1 if unknown (such loads reject)
    uint16_t protocol       # SKF_AD_PROTOCOL: ethertype in host order (sll_protocol)
    uint16_t hatype         # SKF_AD_HATYPE: the device's ARPHRD_* type
    uint16_t queue          # SKF_AD_QUEUE: receive queue (skb->queue_mapping)
    uint16_t vlan_tci       # SKF_AD_VLAN_TAG: the stripped tag's TCI, if vlan_present
    uint16_t vlan_tpid      # SKF_AD_VLAN_TPID: its TPID (0x8100, 0x88a8), if vlan_present
    uint8_t vlan_present    # SKF_AD_VLAN_TAG_PRESENT: 1 if the kernel stripped a tag
    uint8_t pkttype         # SKF_AD_PKTTYPE: PACKET_HOST .. PACKET_OUTGOING

cdef inline void bpf_aux_clear(BPFAux *aux) noexcept nogil:
    """No metadata: what bpf_run assumes for aux == NULL."""
    memset(aux, 0, sizeof(BPFAux))
    aux.net_offset = -1

cdef uint32_t bpf_run(const sock_filter *insns, Py_ssize_t n, const unsigned char *pkt,
                      uint32_t caplen, uint32_t wirelen, const BPFAux *aux) noexcept nogil

cdef class BPFProgram:
    cdef sock_filter *insns         # n validated instructions, owned, never modified
    cdef Py_ssize_t n               # 1 .. BPF_MAXINSNS (0 only if __init__ never ran)
    cdef readonly bint uses_ancillary   # has Linux ancillary loads (libpcap's bpf_filter lacks them)
    cdef readonly bint kernel_only      # reads kernel state no user space has (see above)
    cdef readonly object kernel_refusal # why Linux refuses to attach it (backward jumps,
                                        # unset scratch reads; bpf_run runs it), or None
    cdef tuple _instructions
    cdef object _linktype
    cdef object _snaplen
    cdef object _expression
