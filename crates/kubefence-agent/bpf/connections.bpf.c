// SPDX-License-Identifier: (GPL-2.0-only OR Apache-2.0)
//
// The node agent's kernel side: one event per new TCP or UDP connection of
// any socket on the node, sent to user space through a ring buffer.
//
// TCP: the tracepoint sock:inet_sock_set_state. A socket that reaches
// ESTABLISHED from SYN_SENT opened the connection (outgoing); one that
// reaches it from SYN_RECV accepted it (incoming). Each side of a
// connection changes state once, so each connection is counted once per
// side, and no packet of the reply direction is ever looked at.
//
// UDP: cgroup_skb programs on the root cgroup (every socket of the node,
// whatever its network namespace). UDP has no opening, so the first
// datagram of a 5-tuple opens it, as conntrack decides: an LRU map holds
// the 5-tuples seen, keyed from the socket's side (local, remote); a
// datagram whose 5-tuple was seen in the last 30 s, in either direction,
// is part of a flow already counted (a reply or a later datagram) and
// sends nothing. The LRU bounds the kernel memory; user space keeps no
// per-connection state.
//
// DNS (optional, CAPTURE_DNS set by user space at load): the payload of
// every UDP datagram from port 53 arriving at a socket (a DNS answer, up to
// 512 bytes) goes to a second ring buffer; user space parses it and names
// the external addresses the answers gave. DNS over TCP is not read.
//
// Lost events (ring buffer full) are counted in a per-CPU array that user
// space reads and reports; nothing blocks.
//
// No CO-RE, no kprobes: the tracepoint's record layout is read from its
// fixed format (stable since Linux 4.16) and packets from their headers.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";

#define AF_INET 2
#define AF_INET6 10

#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_SYN_RECV 3

// A UDP 5-tuple idle this long starts a new flow (conntrack's default
// nf_conntrack_udp_timeout).
#define UDP_FLOW_TIMEOUT_NS (30ULL * 1000 * 1000 * 1000)

#define DIRECTION_OUTGOING 1
#define DIRECTION_INCOMING 2

// The record user space reads (48 bytes, little endian on every
// architecture the agent supports). Addresses are in network order, IPv4
// in the first 4 bytes; ports in host order.
struct event {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u8 family;    // AF_INET or AF_INET6
	__u8 protocol;  // IPPROTO_TCP or IPPROTO_UDP
	__u8 direction; // DIRECTION_*
	__u8 pad;
	__u64 pad2;
};

// A UDP flow from the socket's side.
struct udp_key {
	__u8 local_addr[16];
	__u8 remote_addr[16];
	__u16 local_port;
	__u16 remote_port;
	__u32 family;
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 22); // 4 MiB: ~87,000 events before a loss
} EVENTS SEC(".maps");

// Set to 1 by user space before loading to copy DNS answers.
const volatile __u8 CAPTURE_DNS = 0;

#define DNS_PORT 53
#define DNS_MAX 512

// A DNS answer as it arrived (520 bytes).
struct dns_answer {
	__u16 len; // bytes of data used
	__u8 pad[6];
	__u8 data[DNS_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20); // 1 MiB: ~2,000 answers before a loss
} DNS_ANSWERS SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} LOST SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct udp_key);
	__type(value, __u64); // when the flow last carried a datagram (ns)
} UDP_FLOWS SEC(".maps");

// The tracepoint record of sock:inet_sock_set_state, as
// /sys/kernel/tracing/events/sock/inet_sock_set_state/format describes it.
struct inet_sock_set_state_args {
	__u64 common;
	const void *skaddr;
	int oldstate;
	int newstate;
	__u16 sport;
	__u16 dport;
	__u16 family;
	__u16 protocol;
	__u8 saddr[4];
	__u8 daddr[4];
	__u8 saddr_v6[16];
	__u8 daddr_v6[16];
};

static __always_inline void count_lost(void)
{
	__u32 zero = 0;
	__u64 *lost = bpf_map_lookup_elem(&LOST, &zero);
	if (lost)
		*lost += 1;
}

static __always_inline void send_event(const struct event *e)
{
	if (bpf_ringbuf_output(&EVENTS, (void *)e, sizeof(*e), 0) != 0)
		count_lost();
}

SEC("tracepoint/sock/inet_sock_set_state")
int tcp_state(struct inet_sock_set_state_args *args)
{
	if (args->protocol != IPPROTO_TCP || args->newstate != TCP_ESTABLISHED)
		return 0;
	struct event e = {};
	if (args->oldstate == TCP_SYN_SENT)
		e.direction = DIRECTION_OUTGOING;
	else if (args->oldstate == TCP_SYN_RECV)
		e.direction = DIRECTION_INCOMING;
	else
		return 0;
	e.protocol = IPPROTO_TCP;
	// sport/dport are the socket's own (local) and peer ports.
	e.local_port = args->sport;
	e.remote_port = args->dport;
	if (args->family == AF_INET) {
		e.family = AF_INET;
		__builtin_memcpy(e.local_addr, args->saddr, 4);
		__builtin_memcpy(e.remote_addr, args->daddr, 4);
	} else if (args->family == AF_INET6) {
		e.family = AF_INET6;
		__builtin_memcpy(e.local_addr, args->saddr_v6, 16);
		__builtin_memcpy(e.remote_addr, args->daddr_v6, 16);
	} else {
		return 0;
	}
	send_event(&e);
	return 0;
}

// Fills the key from a UDP packet as the socket sees it: for a packet
// leaving, local = source; for one arriving, local = destination.
static __always_inline int udp_key_of(struct __sk_buff *skb, int leaving, struct udp_key *key,
				      struct udphdr *udp_out, __u32 *udp_offset_out)
{
	__u32 udp_offset;
	if (skb->protocol == bpf_htons(ETH_P_IP)) {
		struct iphdr ip;
		if (bpf_skb_load_bytes(skb, 0, &ip, sizeof(ip)) != 0)
			return -1;
		if (ip.protocol != IPPROTO_UDP)
			return -1;
		// A fragment past the first has no UDP header.
		if (ip.frag_off & bpf_htons(0x1fff))
			return -1;
		udp_offset = (__u32)ip.ihl * 4;
		key->family = AF_INET;
		if (leaving) {
			__builtin_memcpy(key->local_addr, &ip.saddr, 4);
			__builtin_memcpy(key->remote_addr, &ip.daddr, 4);
		} else {
			__builtin_memcpy(key->local_addr, &ip.daddr, 4);
			__builtin_memcpy(key->remote_addr, &ip.saddr, 4);
		}
	} else if (skb->protocol == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr ip6;
		if (bpf_skb_load_bytes(skb, 0, &ip6, sizeof(ip6)) != 0)
			return -1;
		// Extension headers are not followed: UDP right after the
		// fixed header is what every UDP socket sends.
		if (ip6.nexthdr != IPPROTO_UDP)
			return -1;
		udp_offset = sizeof(struct ipv6hdr);
		key->family = AF_INET6;
		if (leaving) {
			__builtin_memcpy(key->local_addr, &ip6.saddr, 16);
			__builtin_memcpy(key->remote_addr, &ip6.daddr, 16);
		} else {
			__builtin_memcpy(key->local_addr, &ip6.daddr, 16);
			__builtin_memcpy(key->remote_addr, &ip6.saddr, 16);
		}
	} else {
		return -1;
	}
	struct udphdr udp;
	if (bpf_skb_load_bytes(skb, udp_offset, &udp, sizeof(udp)) != 0)
		return -1;
	if (leaving) {
		key->local_port = bpf_ntohs(udp.source);
		key->remote_port = bpf_ntohs(udp.dest);
	} else {
		key->local_port = bpf_ntohs(udp.dest);
		key->remote_port = bpf_ntohs(udp.source);
	}
	*udp_out = udp;
	*udp_offset_out = udp_offset;
	return 0;
}

// Copies a DNS answer's payload to DNS_ANSWERS.
static __always_inline void dns_answer(struct __sk_buff *skb, const struct udphdr *udp, __u32 udp_offset)
{
	__u32 n = bpf_ntohs(udp->len);
	if (n <= sizeof(struct udphdr))
		return;
	n -= sizeof(struct udphdr);
	if (n > DNS_MAX)
		n = DNS_MAX;
	struct dns_answer *answer = bpf_ringbuf_reserve(&DNS_ANSWERS, sizeof(*answer), 0);
	if (!answer) {
		count_lost();
		return;
	}
	answer->len = (__u16)n;
	// Bounded for the verifier: 1..=DNS_MAX.
	if (n < 1 || n > DNS_MAX ||
	    bpf_skb_load_bytes(skb, udp_offset + sizeof(struct udphdr), answer->data, n) != 0) {
		bpf_ringbuf_discard(answer, 0);
		return;
	}
	bpf_ringbuf_submit(answer, 0);
}

static __always_inline void udp_packet(struct __sk_buff *skb, int leaving)
{
	struct udp_key key = {};
	struct udphdr udp = {};
	__u32 udp_offset = 0;
	if (udp_key_of(skb, leaving, &key, &udp, &udp_offset) != 0)
		return;
	// Before the flow check: an answer is a reply, and is never an event.
	if (CAPTURE_DNS && !leaving && key.remote_port == DNS_PORT)
		dns_answer(skb, &udp, udp_offset);
	__u64 now = bpf_ktime_get_ns();
	__u64 *last = bpf_map_lookup_elem(&UDP_FLOWS, &key);
	if (last) {
		__u64 idle = now - *last;
		*last = now;
		if (idle < UDP_FLOW_TIMEOUT_NS)
			return;
		// Idle longer than conntrack's UDP timeout: a new flow.
	} else if (bpf_map_update_elem(&UDP_FLOWS, &key, &now, BPF_NOEXIST) != 0) {
		// Another CPU inserted it first and counted it.
		return;
	}
	struct event e = {};
	__builtin_memcpy(e.local_addr, key.local_addr, 16);
	__builtin_memcpy(e.remote_addr, key.remote_addr, 16);
	e.local_port = key.local_port;
	e.remote_port = key.remote_port;
	e.family = (__u8)key.family;
	e.protocol = IPPROTO_UDP;
	e.direction = leaving ? DIRECTION_OUTGOING : DIRECTION_INCOMING;
	send_event(&e);
}

// Both programs only observe: 1 lets every packet pass.
SEC("cgroup_skb/egress")
int udp_egress(struct __sk_buff *skb)
{
	udp_packet(skb, 1);
	return 1;
}

SEC("cgroup_skb/ingress")
int udp_ingress(struct __sk_buff *skb)
{
	udp_packet(skb, 0);
	return 1;
}
