"""Live capture on the loopback interface (needs root / CAP_NET_RAW, as in CI)."""
import socket
import threading
import time

from auditor.decode.packet import LINKTYPE_ETHERNET, Packet, decode
from auditor.sources.live import LiveCapture


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _traffic(port):
    time.sleep(0.3)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
        for i in range(3):
            u.sendto(b"udp-%d" % i, ("127.0.0.1", port))
    srv = socket.socket()
    srv.bind(("127.0.0.1", port))
    srv.listen(1)
    cli = socket.create_connection(("127.0.0.1", port))
    conn, _ = srv.accept()
    cli.sendall(b"hello over tcp")
    conn.recv(100)
    cli.close()
    conn.close()
    srv.close()


def test_loopback_capture_once_each_and_decoded():
    port = _free_port()
    cap = LiveCapture("lo", bpf=f"port {port}")
    assert cap.linktype == LINKTYPE_ETHERNET
    sender = threading.Thread(target=_traffic, args=(port,))
    sender.start()
    packets, idle = [], 0
    deadline = time.monotonic() + 60
    for fr in cap.frames(poll_interval=0.2):
        if fr is None:
            idle += 1
            if not sender.is_alive() or time.monotonic() > deadline:
                break
            continue
        ts, lt, frame, wirelen = fr
        if isinstance(ts, int):                    # the ring's exact nanoseconds
            ts /= 1e9
        p = decode(lt, frame, ts, wirelen)
        assert isinstance(p, Packet), p
        packets.append(p)
    sender.join()
    received, dropped = cap.stats()
    cap.close()
    assert idle >= 1                               # poll interval yields None when quiet
    udp = [p for p in packets if p.proto == 17]
    assert sorted(p.payload for p in udp) == [b"udp-0", b"udp-1", b"udp-2"]  # once each
    assert all(p.dport == port and p.ip_len == 28 + 5 for p in udp)
    tcp = [p for p in packets if p.proto == 6]
    syns = [p for p in tcp if p.tcp_flags & 0x12 == 0x02]
    assert len(syns) == 1 and syns[0].dport == port
    assert b"".join(p.payload for p in tcp if p.dport == port) == b"hello over tcp"
    assert all(p.src == socket.inet_aton("127.0.0.1") for p in packets)
    assert time.time() - 60 < packets[0].ts <= time.time()
    # lo delivers each packet twice to the kernel counter (outgoing + incoming copy)
    assert isinstance(received, int) and isinstance(dropped, int)
    assert received >= len(packets) and dropped == 0


def test_stats_are_integers_and_accumulate():
    with LiveCapture("lo", bpf="udp port 9") as cap:
        r1, d1 = cap.stats()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.sendto(b"x", ("127.0.0.1", 9))
        deadline = time.monotonic() + 60
        while (r2 := cap.stats()[0]) < r1 + 1 and time.monotonic() < deadline:
            time.sleep(0.05)        # wait for the kernel to count it, however busy the machine
        d2 = cap.stats()[1]
        r2 = cap.stats()[0]
        r3, _ = cap.stats()      # the kernel resets on read; we must not go back to 0
    assert all(isinstance(v, int) for v in (r1, d1, r2, d2))
    assert r2 >= r1 + 1 and r3 == r2


def test_bad_interface_raises_capture_error():
    import pytest
    from auditor.errors import CaptureSetupError
    with pytest.raises(CaptureSetupError, match="nosuchif0"):
        LiveCapture("nosuchif0")


def test_traffic_outside_the_filter_while_opening_is_not_counted_as_a_drop():
    # scapy's socket listens on every interface from its creation, with a 0-byte buffer until
    # the filter is attached: whatever arrives in that window (a scrape, the node's own
    # traffic) is dropped and counted by the kernel. Those are not packets the filter asked
    # for; reporting them made a sidecar on a busy CI machine show one drop at 2,000 packets/s.
    noise_port, port = _free_port(), _free_port()
    stop = threading.Event()

    def noise():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            while not stop.is_set():
                for _ in range(200):
                    u.sendto(b"x" * 200, ("127.0.0.1", noise_port))

    flood = threading.Thread(target=noise, daemon=True)
    flood.start()
    try:
        opened = [LiveCapture("lo", bpf=f"udp and dst port {port}") for _ in range(10)]
    finally:
        stop.set()
        flood.join()
    try:
        assert [cap.stats()[1] for cap in opened] == [0] * 10
    finally:
        for cap in opened:
            cap.close()


def test_ring_block_reading_puts_the_vlan_tag_back_and_skips_outgoing_copies():
    # A block laid out as the kernel writes it (linux/if_packet.h), in memory: lo never
    # carries a VLAN tag, so this is how the tag path is exercised.
    import struct

    from auditor.sources import ring as r
    rx = r.RxRing.__new__(r.RxRing)
    rx._map, rx.blocks, rx._next = bytearray(2 * r.BLOCK_SIZE), 2, 0
    m = rx._map
    frame = bytes(range(12)) + b"\x08\x00" + b"payload"
    first, mac = 48, 80

    def put(pos, nxt, pkttype, status, tci, tpid):
        struct.pack_into("IIIIIIHH", m, pos, nxt, 7, 5, len(frame), len(frame) + 10, status, mac, 0)
        struct.pack_into("III", m, pos + 28, 0, tci, tpid)
        m[pos + 58] = pkttype
        m[pos + mac:pos + mac + len(frame)] = frame

    struct.pack_into("III", m, 8, r.TP_STATUS_USER, 3, first)
    put(first, 256, 0, r.TP_STATUS_VLAN_VALID | r.TP_STATUS_VLAN_TPID_VALID, 100, 0x88A8)
    put(first + 256, 256, socket.PACKET_OUTGOING, 0, 0, 0)
    put(first + 512, 0, 0, r.TP_STATUS_VLAN_VALID, 7, 0)       # no TPID flag: 802.1Q
    assert rx.ready()
    got = list(rx.block(skip_outgoing=True))
    assert got == [(7_000_000_005, frame[:12] + b"\x88\xa8\x00\x64" + frame[12:], len(frame) + 14),
                   (7_000_000_005, frame[:12] + b"\x81\x00\x00\x07" + frame[12:], len(frame) + 14)]
    assert not rx.ready() and rx._next == 1
    assert struct.unpack_from("I", m, 8)[0] == r.TP_STATUS_KERNEL      # handed back
