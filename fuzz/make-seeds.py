#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/seeds/<target>/: small, meaningful inputs that start each
fuzz target in the interesting places (valid messages of every kind, and the malformed shapes
that were bugs). Run it after changing it; the seeds are committed. Inputs that crashed a
target (seeds/<target>/crash-*, each also a unit test) are kept as they are."""
import ipaddress
import pathlib
import struct

ROOT = pathlib.Path(__file__).resolve().parent
SEEDS = ROOT / "seeds"
MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
GUEST = bytes([198, 51, 100, 200])
SERVER = bytes([198, 51, 100, 10])
STALE = bytes([203, 0, 113, 200])
ZERO = bytes(4)


def dhcp(kind, ciaddr=ZERO, options=b"", hlen=6, chaddr=MAC):
    header = struct.pack("!BBBBIHH", 1, 1, hlen, 0, 0x1234ABCD, 0, 0x8000)
    header += ciaddr + ZERO + ZERO + ZERO + chaddr.ljust(16, b"\0") + bytes(64 + 128)
    opts = bytes([99, 130, 83, 99, 53, 1, kind]) + options
    return header + opts + b"\xff"


def opt(code, value):
    return bytes([code, len(value)]) + value


CLIENT_ID = opt(61, b"\x01" + MAC)
PARAMS = opt(55, bytes([1, 3, 6, 15, 26, 28, 51, 54, 119]))
DHCP = {
    "discover": dhcp(1, options=CLIENT_ID + PARAMS),
    "request-selecting": dhcp(3, options=opt(54, SERVER) + opt(50, GUEST) + CLIENT_ID),
    "request-init-reboot-stale": dhcp(3, options=opt(50, STALE)),
    "request-renewing": dhcp(3, ciaddr=GUEST),
    "request-renewing-stale": dhcp(3, ciaddr=STALE),
    "inform": dhcp(8, ciaddr=GUEST),
    "decline": dhcp(4, options=opt(54, SERVER) + opt(50, GUEST)),
    "release": dhcp(7, ciaddr=GUEST, options=opt(54, SERVER)),
    "hlen-255": dhcp(1, hlen=255),
    "option-past-the-end": dhcp(1)[:-1] + bytes([12, 200]) + b"host",
    "long-option-split": dhcp(1, options=opt(61, b"a" * 255) + opt(61, b"b" * 255)),
    "truncated": dhcp(1)[:100],
}


def ipv4_udp(payload, source=STALE, dport=67, ihl=5, udp_len=None):
    udp_len = 8 + len(payload) if udp_len is None else udp_len
    total = ihl * 4 + udp_len
    ip = struct.pack("!BBHHHBBH", 0x40 | ihl, 0, total & 0xFFFF, 1, 0, 64, 17, 0) + source + bytes([255] * 4)
    ip += bytes(ihl * 4 - 20)
    return ip + struct.pack("!HHHH", 68, dport, udp_len & 0xFFFF, 0) + payload


STALE_FRAMES = {
    "renewing-stale": ipv4_udp(DHCP["request-renewing-stale"]),
    "init-reboot": ipv4_udp(DHCP["request-init-reboot-stale"], source=ZERO),
    "ip-options": ipv4_udp(DHCP["request-renewing-stale"], ihl=6),
    "thirteen-bytes": ipv4_udp(b"")[:13],
    "fifteen-bytes": ipv4_udp(b"")[:15],
    "ihl-past-the-end": ipv4_udp(b"", ihl=15)[:40],
    "udp-length-past-the-end": ipv4_udp(b"abcd", udp_len=4000),
    "udp-length-short": ipv4_udp(b"abcd", udp_len=3),
}


def arp(op, sender_mac, sender_ip, target_ip, head=bytes([0, 1, 8, 0, 6, 4])):
    return head + struct.pack("!H", op) + sender_mac + sender_ip + bytes(6) + target_ip


OTHER = bytes([2, 0, 0, 0, 0, 2])
ARP = {
    "probe": arp(1, OTHER, ZERO, GUEST),
    "announcement": arp(1, OTHER, GUEST, GUEST),
    "reply": arp(2, OTHER, GUEST, SERVER),
    "ipv6-hardware": arp(1, OTHER, GUEST, GUEST, head=bytes([0, 1, 0x86, 0xDD, 6, 16])),
    "truncated": arp(2, OTHER, GUEST, SERVER)[:27],
}

def icmpv6_checksum(source, destination, icmp):
    data = source + destination + struct.pack("!I3xB", len(icmp), 58) + icmp + b"\0" * (len(icmp) % 2)
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def ipv6_icmp(source, destination, icmp, hop_limit=255):
    """An IPv6 packet (from the network header on, as a packet socket reads it)."""
    icmp = icmp[:2] + struct.pack("!H", icmpv6_checksum(source, destination, icmp)) + icmp[4:]
    return struct.pack("!IHBB", 0x60000000, len(icmp), 58, hop_limit) + source + destination + icmp


def v6(text):
    return ipaddress.IPv6Address(text).packed


def lladdr(kind, mac=MAC):
    return bytes([kind, 1]) + mac


UNSPECIFIED = v6("::")
GUEST_LL = v6("fe80::5054:ff:fe12:3456")
ROUTER_LL = v6("fe80::766d:bf:8293:dbbc")
GUEST6 = v6("2001:db8:1::c8")
SOLICITED = v6("ff02::1:ff00:c8")


def ns(source, destination, options=b""):
    return ipv6_icmp(source, destination, bytes([135, 0, 0, 0, 0, 0, 0, 0]) + GUEST6 + options)


def ra():
    body = bytes([134, 0, 0, 0, 64, 0]) + struct.pack("!HII", 1800, 0, 0) + lladdr(1, OTHER)
    body += bytes([5, 1, 0, 0]) + struct.pack("!I", 1500)
    body += bytes([3, 4, 64, 0xC0]) + struct.pack("!III", 86400, 14400, 0) + v6("2001:db8:1::")
    body += bytes([25, 3, 0, 0]) + struct.pack("!I", 600) + v6("2001:db8:1::53")
    body += bytes([31, 3, 0, 0]) + struct.pack("!I", 600) + b"\x04home\x04arpa\x00" + bytes(5)
    return ipv6_icmp(ROUTER_LL, v6("ff02::1"), body)


NDP = {
    "rs": ipv6_icmp(GUEST_LL, v6("ff02::2"), bytes([133, 0, 0, 0, 0, 0, 0, 0]) + lladdr(1)),
    "ns-dad": ns(UNSPECIFIED, SOLICITED),
    "ns": ns(GUEST_LL, SOLICITED, lladdr(1)),
    "na": ipv6_icmp(GUEST6, GUEST_LL, bytes([136, 0, 0, 0, 0x60, 0, 0, 0]) + GUEST6 + lladdr(2)),
    "ra": ra(),
    "ns-dad-with-lladdr": ns(UNSPECIFIED, SOLICITED, lladdr(1)),
    "zero-length-option": ns(GUEST_LL, SOLICITED, bytes(8)),
    "hop-limit-64": ipv6_icmp(GUEST_LL, SOLICITED, ns(GUEST_LL, SOLICITED)[40:], hop_limit=64),
    "hop-by-hop": ns(GUEST_LL, SOLICITED)[:6] + b"\0\xff" + ns(GUEST_LL, SOLICITED)[8:],
}

GREETING = b'{"QMP": {"version": {"qemu": {"micro": 0, "minor": 2, "major": 7}}, "capabilities": []}}\n'
QMP = {
    "flap": GREETING
    + b'{"return": {}}\n'
    + b'{"return": [{"name": "net0", "main-mac": "52:54:00:12:34:56", "promiscuous": true}]}\n'
    + b'{"timestamp": {"seconds": 1, "microseconds": 2}, "event": "NIC_RX_FILTER_CHANGED"}\n'
    + b'{"return": {}}\n{"return": {}}\n',
    "error": GREETING + b'{"error": {"class": "GenericError", "desc": "Device \'net0\' not found"}}\n',
    "not-an-object": b'[1, 2]\n"x"\n',
    "no-newline": b'{"return": {"a": [1, {"b": null}]}',
    "deep": b"[" * 200 + b"]" * 200 + b"\n",
}

CONFIG = {
    "shipped": (ROOT.parent / "packaging" / "vmnetd.toml").read_bytes(),
    "kernel": b'[uplink]\nsource = "kernel"\ninterface = "wlan0"\nnameservers = ["198.51.100.1"]\n'
    b'domains = ["home.arpa"]\n[pool]\nfirst = -20\nlast = -2\n[dhcp]\nlease_seconds = 600\n'
    b"[arp]\nprobe_ms = 0\nannounce = false\n",
    "bad-values": b'[uplink]\ninterface = ".."\n[pool]\nfirst = 10\nlast = 5\n',
    "unknown-key": b"[pol]\nfirst = 1\n",
}

BUS = b"unix:path=/run/dbus/system_bus_socket"
DISPATCHER = {
    "up": BUS + b"\0wlan0\0up",
    "dhcp4-change": BUS + b"\0wlan0\0dhcp4-change",
    "no-interface": BUS + b"\0\0connectivity-change",
    "ignored": BUS + b"\0wlan0\0pre-up",
    "odd-bytes": b"unix:abstract=x,guid=0123\0wl\xffan0\n\0up",
    "too-many": b"tcp:host=127.0.0.1,port=1\0a\0b\0c",
    "option": b"\0--help",
}


def main():
    corpora = {
        "dhcp_respond": DHCP,
        "stale_frame": STALE_FRAMES,
        "arp_frame": ARP,
        "ndp": NDP,
        "qmp_reply": QMP,
        "config": CONFIG,
        "dispatcher_args": DISPATCHER,
    }
    for target, seeds in corpora.items():
        folder = SEEDS / target
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (folder / name).write_bytes(data)


if __name__ == "__main__":
    main()
