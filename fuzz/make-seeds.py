#!/usr/bin/env python3
"""Writes the seed corpus in fuzz/seeds/<target>/: small, meaningful inputs that start each
fuzz target in the interesting places (valid messages of every kind, and the malformed shapes
that were bugs). Run it after changing it; the seeds are committed. Inputs that crashed a
target (seeds/<target>/crash-*, each also a unit test) are kept as they are."""
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
