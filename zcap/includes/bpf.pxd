# Classic BPF as Linux defines it (<linux/filter.h>, <linux/bpf_common.h>):
# instruction fields, limits and the ancillary ("SKF_AD_*") load offsets.
# struct sock_filter itself is in linux.pxd, next to SO_ATTACH_FILTER.

cdef extern from "<linux/filter.h>" nogil:
    enum:
        # instruction classes
        BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC
        # load sizes and modes
        BPF_W, BPF_H, BPF_B
        BPF_IMM, BPF_ABS, BPF_IND, BPF_MEM, BPF_LEN, BPF_MSH
        # ALU and jump operations, operand source
        BPF_ADD, BPF_SUB, BPF_MUL, BPF_DIV, BPF_OR, BPF_AND, BPF_LSH, BPF_RSH
        BPF_NEG, BPF_MOD, BPF_XOR
        BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET
        BPF_K, BPF_X
        # return value source, misc operations
        BPF_A, BPF_TAX, BPF_TXA
        # limits
        BPF_MEMWORDS, BPF_MAXINSNS

    # Ancillary data: `ld [SKF_AD_OFF + n]` reads skb metadata, not packet bytes.
    # SKF_NET_OFF / SKF_LL_OFF make a load relative to the network / link header.
    enum:
        SKF_AD_OFF
        SKF_AD_PROTOCOL, SKF_AD_PKTTYPE, SKF_AD_IFINDEX, SKF_AD_NLATTR
        SKF_AD_NLATTR_NEST, SKF_AD_MARK, SKF_AD_QUEUE, SKF_AD_HATYPE, SKF_AD_RXHASH
        SKF_AD_CPU, SKF_AD_ALU_XOR_X, SKF_AD_VLAN_TAG, SKF_AD_VLAN_TAG_PRESENT
        SKF_AD_PAY_OFFSET, SKF_AD_RANDOM, SKF_AD_VLAN_TPID, SKF_AD_MAX
        SKF_NET_OFF, SKF_LL_OFF
