#!/usr/bin/env python3
"""Generate the scenario captures: one small pcap per SPEC §6 verdict step and §8 detector.

Deterministic: fixed timestamps, MACs, addresses, ports, ISNs (from a per-scenario seeded
`random.Random`), DNS ids and TLS randoms, so re-running reproduces every file byte for byte
(`tests/golden/test_golden.py` checks it). The node is 10.1.0.4, the resolver Azure DNS
168.63.129.16, and the public addresses are real members (or real non-members) of the service
tags in `auditor/data/servicetags/ServiceTags_Public_20251109.json`.

Frames are built with scapy; TLS ClientHellos with scapy's `TLSClientHello`; QUIC v1 client
Initials are encrypted here with `cryptography` per RFC 9001 §5 (keys from the DCID, AES-128-GCM
payload protection, AES-ECB header protection), independently of the decoder under test. Bulk
transfers use snaplen-truncated records (caplen 96, original length and IP total length
65000), which is how a capture with `-s 96` looks and keeps the files tiny.

    python pcaps/scenarios/make_scenarios.py [--out DIR] [NAME...]
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import random
import struct
import sys
from pathlib import Path

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand
from cryptography.hazmat.primitives import hmac
import hpack
from scapy.config import conf
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.layers.tls.extensions import (ProtocolName, ServerName, TLS_Ext_ALPN,
                                         TLS_Ext_PSKKeyExchangeModes, TLS_Ext_ServerName,
                                         TLS_Ext_SignatureAlgorithms, TLS_Ext_SupportedGroups,
                                         TLS_Ext_SupportedVersion_CH, TLS_Ext_Unknown)
from scapy.layers.tls.handshake import TLSClientHello
from scapy.layers.tls.keyexchange_tls13 import KeyShareEntry, TLS_Ext_KeyShare_CH

HERE = Path(__file__).resolve().parent
T0 = 1762765200            # 2025-11-10T09:00:00Z
NODE = "10.1.0.4"
AZURE_DNS = "168.63.129.16"
IMDS = "169.254.169.254"
NODE_MAC = "00:0d:3a:10:00:04"   # Azure NICs use the 00:0d:3a OUI
GW_MAC = "12:34:56:78:9a:bc"     # the Azure virtual gateway's well-known MAC
SNAP_BULK = 96                   # caplen of a truncated bulk-data record
BULK_IP_LEN = 65000              # IP total length stated by a truncated bulk segment

conf.verb = 0


# ------------------------------------------------------------------------------ pcap file
class Capture:
    """Frames with integer-microsecond timestamps, written as a classic little-endian pcap."""

    def __init__(self, name: str, start: float = T0):
        self.name = name
        self.us = int(start * 1_000_000)
        self.rng = random.Random(f"egress-auditor/{name}")
        self.records: list[tuple[int, bytes, int]] = []
        self._port = 49152
        self._ipid = {}
        self._dns_id = 0x1000

    # time
    def wait(self, seconds: float) -> None:
        self.us += int(round(seconds * 1_000_000))

    def frame(self, pkt, caplen: int | None = None, step: float = 0.0005) -> None:
        raw = bytes(pkt)
        self.records.append((self.us, raw[:caplen] if caplen else raw, len(raw)))
        self.wait(step)

    # deterministic counters
    def port(self) -> int:
        self._port += 1 + self.rng.randrange(7)
        return self._port

    def ipid(self, src: str) -> int:
        self._ipid[src] = (self._ipid.get(src, self.rng.randrange(1, 30000)) + 1) & 0xFFFF
        return self._ipid[src]

    def dns_id(self) -> int:
        self._dns_id = (self._dns_id + 1 + self.rng.randrange(50)) & 0xFFFF
        return self._dns_id

    def ip(self, src: str, dst: str):
        mac_src, mac_dst = (NODE_MAC, GW_MAC) if src.startswith("10.1.0.") else (GW_MAC, NODE_MAC)
        ttl = 64 if src.startswith("10.1.0.") else 118
        return Ether(src=mac_src, dst=mac_dst) / IP(src=src, dst=dst, id=self.ipid(src), ttl=ttl)

    def write(self, path: Path) -> None:
        out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
        for us, data, orig in self.records:
            out.append(struct.pack("<IIII", us // 1_000_000, us % 1_000_000, len(data), orig))
            out.append(data)
        path.write_bytes(b"".join(out))


# ------------------------------------------------------------------------------ DNS
def dns(cap: Capture, name: str, answers=(), *, qtype: str = "A", server: str = AZURE_DNS,
        rcode: int = 0, ttl: int = 300, client: str = NODE, rtt: float = 0.002) -> None:
    """One UDP query and its response. `answers`: IPs (A), or (type, rrname, rdata) tuples,
    e.g. a CNAME chain: [("CNAME", name, target), ("A", target, ip)]."""
    qid, sport = cap.dns_id(), cap.port()
    cap.frame(cap.ip(client, server) / UDP(sport=sport, dport=53)
              / DNS(id=qid, rd=1, qd=DNSQR(qname=name, qtype=qtype)), step=rtt)
    rrs = []
    for a in answers:
        rtype, rrname, rdata = ("A", name, a) if isinstance(a, str) else a
        rrs.append(DNSRR(rrname=rrname, type=rtype, rdata=rdata, ttl=ttl))
    cap.frame(cap.ip(server, client) / UDP(sport=53, dport=sport)
              / DNS(id=qid, qr=1, rd=1, ra=1, rcode=rcode, qd=DNSQR(qname=name, qtype=qtype),
                    an=rrs or None), step=0.001)


def cname_chain(name: str, *hops: str, ip: str) -> list[tuple[str, str, str]]:
    """name CNAME hop1 CNAME hop2 ... A ip."""
    chain, prev = [], name
    for hop in hops:
        chain.append(("CNAME", prev, hop))
        prev = hop
    return chain + [("A", prev, ip)]


# ------------------------------------------------------------------------------ TLS
def client_hello(sni: str | None, *, alpn=(b"h2", b"http/1.1"), quic_params: bool = False,
                 seed: str = "") -> bytes:
    """A TLS 1.3 ClientHello handshake message (no record header); randoms from the name."""
    h = hashlib.sha256(f"{seed}/{sni}".encode()).digest()
    ext = []
    if sni:
        ext.append(TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())]))
    ext += [TLS_Ext_SupportedGroups(groups=["x25519", "secp256r1"]),
            TLS_Ext_SignatureAlgorithms(sig_algs=["sha256+ecdsa", "sha256+rsaepss", "sha256+rsa"]),
            TLS_Ext_SupportedVersion_CH(versions=["TLS 1.3"] + ([] if quic_params else ["TLS 1.2"])),
            TLS_Ext_PSKKeyExchangeModes(kxmodes=[1]),
            TLS_Ext_KeyShare_CH(client_shares=[KeyShareEntry(group="x25519", key_exchange=h)]),
            TLS_Ext_ALPN(protocols=[ProtocolName(protocol=p) for p in alpn])]
    if quic_params:   # quic_transport_parameters: initial_max_data, initial_scid (empty)
        ext.append(TLS_Ext_Unknown(type=0x39, val=bytes.fromhex("0404" "80100000" "0f00")))
    hello = TLSClientHello(version=0x0303, gmt_unix_time=int.from_bytes(h[:4], "big"),
                           random_bytes=h[4:32], sid=b"" if quic_params else h,
                           ciphers=[0x1301, 0x1302, 0x1303] + ([] if quic_params else [0xC02B, 0xC02F]),
                           comp=[0], ext=ext)
    return bytes(hello)


def tls_record(hello: bytes) -> bytes:
    """One handshake record around `hello`, as clients send it (legacy version 0x0301)."""
    return b"\x16\x03\x01" + struct.pack(">H", len(hello)) + hello


def server_flight(cap: Capture, n: int = 1400) -> bytes:
    """Bytes that look like a ServerHello..Finished flight (never decoded: server side)."""
    body = bytes(cap.rng.getrandbits(8) for _ in range(n - 5))
    return b"\x16\x03\x03" + struct.pack(">H", len(body)) + body


def app_data(cap: Capture, n: int) -> bytes:
    body = bytes(cap.rng.getrandbits(8) for _ in range(n - 5))
    return b"\x17\x03\x03" + struct.pack(">H", len(body)) + body


# ------------------------------------------------------------------------------ TCP
class Tcp:
    """One TCP connection from the node, written frame by frame."""

    def __init__(self, cap: Capture, server: str, dport: int, *, client: str = NODE):
        self.cap, self.c, self.s, self.dport = cap, client, server, dport
        self.sport = cap.port()
        self.cseq = cap.rng.getrandbits(32)
        self.sseq = cap.rng.getrandbits(32)

    def _c(self, flags: str, payload: bytes = b"", **kw):
        return (self.cap.ip(self.c, self.s)
                / TCP(sport=self.sport, dport=self.dport, flags=flags, seq=self.cseq,
                      ack=self.sseq if "A" in flags else 0, window=502, **kw) / payload)

    def _s(self, flags: str, payload: bytes = b"", **kw):
        return (self.cap.ip(self.s, self.c)
                / TCP(sport=self.dport, dport=self.sport, flags=flags, seq=self.sseq,
                      ack=self.cseq, window=501, **kw) / payload)

    def handshake(self, rtt: float = 0.004) -> "Tcp":
        cap = self.cap
        cap.frame(self._c("S", options=[("MSS", 1460), ("SAckOK", b""), ("WScale", 7)]), step=rtt)
        self.cseq = (self.cseq + 1) & 0xFFFFFFFF
        cap.frame(self._s("SA", options=[("MSS", 1440), ("SAckOK", b""), ("WScale", 9)]), step=0.0002)
        self.sseq = (self.sseq + 1) & 0xFFFFFFFF
        cap.frame(self._c("A"), step=0.0003)
        return self

    def send(self, data: bytes, rtt: float = 0.004) -> "Tcp":
        self.cap.frame(self._c("PA", data), step=rtt)
        self.cseq = (self.cseq + len(data)) & 0xFFFFFFFF
        self.cap.frame(self._s("A"), step=0.0003)
        return self

    def recv(self, data: bytes) -> "Tcp":
        self.cap.frame(self._s("PA", data), step=0.0002)
        self.sseq = (self.sseq + len(data)) & 0xFFFFFFFF
        self.cap.frame(self._c("A"), step=0.0003)
        return self

    def bulk_send(self, total: int, gap: float = 0.005) -> "Tcp":
        """`total` payload bytes up in 64960-byte segments, snaplen-truncated; ACK every 2."""
        seg = BULK_IP_LEN - 40
        sent = i = 0
        while sent < total:
            n = min(seg, total - sent)
            self.cap.frame(self._c("A", bytes(n)), caplen=SNAP_BULK, step=gap)
            self.cseq = (self.cseq + n) & 0xFFFFFFFF
            sent, i = sent + n, i + 1
            if i % 2 == 0 or sent >= total:
                self.cap.frame(self._s("A"), step=0.0002)
        return self

    def bulk_recv(self, total: int, gap: float = 0.005) -> "Tcp":
        seg = BULK_IP_LEN - 40
        got = i = 0
        while got < total:
            n = min(seg, total - got)
            self.cap.frame(self._s("A", bytes(n)), caplen=SNAP_BULK, step=gap)
            self.sseq = (self.sseq + n) & 0xFFFFFFFF
            got, i = got + n, i + 1
            if i % 2 == 0 or got >= total:
                self.cap.frame(self._c("A"), step=0.0002)
        return self

    def close(self) -> "Tcp":
        cap = self.cap
        cap.frame(self._c("FA"), step=0.003)
        self.cseq = (self.cseq + 1) & 0xFFFFFFFF
        cap.frame(self._s("FA"), step=0.0002)
        self.sseq = (self.sseq + 1) & 0xFFFFFFFF
        cap.frame(self._c("A"), step=0.05)
        return self


def https(cap: Capture, ip: str, sni: str | None, *, port: int = 443, up: int = 600,
          down: int = 4000, hello: bytes | None = None) -> Tcp:
    """A short TLS 1.3 session: ClientHello, server flight, request, response, FIN."""
    t = Tcp(cap, ip, port).handshake()
    t.send(tls_record(hello if hello is not None else client_hello(sni, seed=cap.name)))
    t.recv(server_flight(cap))
    t.send(app_data(cap, 80) + app_data(cap, up))
    t.recv(app_data(cap, down))
    return t.close()


def http_get(cap: Capture, ip: str, host: str | None, path: str = "/", *, extra: str = "",
             version: str = "HTTP/1.1", body: bytes = b"ok\n") -> Tcp:
    t = Tcp(cap, ip, 80).handshake()
    head = f"GET {path} {version}\r\n" + (f"Host: {host}\r\n" if host else "")
    head += extra + "User-Agent: python-urllib3/2.2.3\r\nAccept: */*\r\n\r\n"
    t.send(head.encode())
    t.recv(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "
           + str(len(body)).encode() + b"\r\n\r\n" + body)
    return t.close()


def udp(cap: Capture, ip: str, dport: int, payloads_up, payloads_down=(), *, sport=None) -> None:
    sport = sport or cap.port()
    for up in payloads_up:
        cap.frame(cap.ip(NODE, ip) / UDP(sport=sport, dport=dport) / up, step=0.003)
    for down in payloads_down:
        cap.frame(cap.ip(ip, NODE) / UDP(sport=dport, dport=sport) / down, step=0.001)


# ------------------------------------------------------------------------------ QUIC v1
QUIC_V1_SALT = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    h = hmac.HMAC(salt, hashes.SHA256())
    h.update(ikm)
    return h.finalize()


def _expand_label(secret: bytes, label: str, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack(">HB", length, len(full)) + full + b"\x00"
    return HKDFExpand(hashes.SHA256(), length, info).derive(secret)


def quic_client_keys(dcid: bytes) -> tuple[bytes, bytes, bytes]:
    """RFC 9001 §5.2: (key, iv, hp) protecting the client's Initial packets."""
    secret = _expand_label(_hkdf_extract(QUIC_V1_SALT, dcid), "client in", 32)
    return (_expand_label(secret, "quic key", 16), _expand_label(secret, "quic iv", 12),
            _expand_label(secret, "quic hp", 16))


def _varint(v: int) -> bytes:
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return struct.pack(">H", 0x4000 | v)
    return struct.pack(">I", 0x80000000 | v)


def quic_initial(hello: bytes, dcid: bytes, scid: bytes, pn: int = 0, size: int = 1200) -> bytes:
    """A protected QUIC v1 client Initial carrying `hello` in one CRYPTO frame, padded so the
    UDP datagram is `size` bytes (RFC 9000 §14.1)."""
    key, iv, hp = quic_client_keys(dcid)
    pn_len = 4
    crypto = b"\x06" + _varint(0) + _varint(len(hello)) + hello
    head_wo_len = (bytes([0xC0 | (pn_len - 1)]) + struct.pack(">I", 1) + bytes([len(dcid)]) + dcid
                   + bytes([len(scid)]) + scid + _varint(0))
    # total = head_wo_len + 2 (length varint) + pn_len + payload + 16 tag
    pad = size - (len(head_wo_len) + 2 + pn_len + len(crypto) + 16)
    payload = crypto + bytes(max(pad, 0))
    header = head_wo_len + struct.pack(">H", 0x4000 | (pn_len + len(payload) + 16)) + pn.to_bytes(pn_len, "big")
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    sealed = AESGCM(key).encrypt(nonce, payload, header)
    pn_off = len(header) - pn_len
    sample = sealed[4 - pn_len:4 - pn_len + 16]
    enc = Cipher(algorithms.AES(hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    first = bytes([header[0] ^ (mask[0] & 0x0F)])
    pn_bytes = bytes(a ^ b for a, b in zip(header[pn_off:], mask[1:1 + pn_len]))
    return first + header[1:pn_off] + pn_bytes + sealed


def quic_session(cap: Capture, ip: str, sni: str) -> None:
    """Client Initial (real, decryptable) + a server Initial-looking reply + a few 1-RTT."""
    dcid = bytes(cap.rng.getrandbits(8) for _ in range(8))
    scid = bytes(cap.rng.getrandbits(8) for _ in range(8))
    hello = client_hello(sni, alpn=(b"h3",), quic_params=True, seed=cap.name)
    server = b"\xc0\x00\x00\x00\x01\x08" + scid + b"\x08" + bytes(cap.rng.getrandbits(8) for _ in range(8))
    server += bytes(cap.rng.getrandbits(8) for _ in range(1200 - len(server)))
    short = [b"\x40" + scid + bytes(cap.rng.getrandbits(8) for _ in range(60)) for _ in range(2)]
    udp(cap, ip, 443, [quic_initial(hello, dcid, scid)] + short, [server])


# ------------------------------------------------------------------------------ scenarios
# Real addresses (tags per ServiceTags_Public_20251109.json, region eastus):
PYPI = "151.101.0.223"            # Fastly, no service tag
PYTHONHOSTED = "151.101.64.223"   # Fastly, no service tag
PYTHONHOSTED_APEX = "151.101.1.63"
PYTORCH = "18.239.50.12"          # CloudFront, no service tag
HF_CDN = "3.163.189.90"           # CloudFront, no service tag
AML_DENIED = "20.42.0.241"        # AzureMachineLearning.EastUS, inside the Deny rule's /28
AML_OK = "20.62.135.209"          # AzureMachineLearning.EastUS
AML_API = "40.71.11.65"           # AzureMachineLearning.EastUS
ADF = "20.42.2.10"                # DataFactory.EastUS
STORAGE_PUBLIC = "13.68.163.33"   # Storage.EastUS
PE_BLOB = "10.1.1.5"              # private endpoint NIC of acct.blob.core.windows.net
PE_VAULT = "10.1.1.6"             # private endpoint NIC of scenario-kv.vault.azure.net
PASTE = "104.20.208.21"           # Cloudflare, no service tag
EXAMPLE = "23.215.0.136"          # example.com
EXAMPLE_ORG = "96.7.128.198"
DIRECT = "45.33.32.156"           # Linode, never named by DNS
GITHUB_A, GITHUB_B, GITHUB_C = "185.199.108.153", "185.199.109.153", "140.82.112.3"
PROXY = "96.7.128.199"            # a SOCKS proxy of the job's (no service tag)
GOOGLE_DNS = "8.8.4.4"


def _pe_blob(cap: Capture) -> None:
    dns(cap, "acct.blob.core.windows.net",
        cname_chain("acct.blob.core.windows.net", "acct.privatelink.blob.core.windows.net", ip=PE_BLOB))


def s_platform(cap: Capture) -> None:
    dns(cap, "pypi.org", [PYPI])
    cap.wait(0.2)
    http_get(cap, IMDS, IMDS, "/metadata/instance?api-version=2021-02-01", extra="Metadata: true\r\n",
             body=b'{"compute":{"location":"eastus","vmSize":"Standard_NC6s_v3"}}')
    cap.wait(0.2)
    http_get(cap, AZURE_DNS, AZURE_DNS, "/?comp=versions", body=b"<Versions/>")


def s_modes(cap: Capture) -> None:
    dns(cap, "pypi.org", [PYPI])
    https(cap, PYPI, "pypi.org")
    cap.wait(0.5)
    dns(cap, "pastebin.com", [PASTE])
    https(cap, PASTE, "pastebin.com", up=3000)
    cap.wait(0.5)
    _pe_blob(cap)
    https(cap, PE_BLOB, "acct.blob.core.windows.net")


def s_private_endpoint(cap: Capture) -> None:
    _pe_blob(cap)
    https(cap, PE_BLOB, "acct.blob.core.windows.net", up=4000)
    cap.wait(0.5)
    dns(cap, "scenario-kv.vault.azure.net",
        cname_chain("scenario-kv.vault.azure.net", "scenario-kv.privatelink.vaultcore.azure.net", ip=PE_VAULT))
    https(cap, PE_VAULT, "scenario-kv.vault.azure.net")
    cap.wait(0.5)
    # The same SNI to a private IP that no DNS answer gave: not a private endpoint (§6.3
    # needs the IP to come from the endpoint's names), so the storage FQDN rule decides.
    https(cap, "10.1.1.9", "acct.blob.core.windows.net")


def s_service_tag_deny(cap: Capture) -> None:
    dns(cap, "eastus.api.azureml.ms", [AML_DENIED])
    https(cap, AML_DENIED, "eastus.api.azureml.ms")
    cap.wait(0.5)
    # the Deny rule is TCP 443 only: UDP 5831 to the same IP stays allowed by the required rule
    udp(cap, AML_DENIED, 5831, [bytes(cap.rng.getrandbits(8) for _ in range(120))], [bytes(64)])
    cap.wait(0.5)
    dns(cap, "eastus.experiments.azureml.net", [AML_OK])
    https(cap, AML_OK, "eastus.experiments.azureml.net")


def s_service_tag(cap: Capture) -> None:
    dns(cap, "eastus.api.azureml.ms", [AML_API])
    https(cap, AML_API, "eastus.api.azureml.ms")
    cap.wait(0.3)
    udp(cap, AML_API, 5831, [bytes(cap.rng.getrandbits(8) for _ in range(120))], [bytes(64)])
    cap.wait(0.3)
    udp(cap, AML_API, 5832, [bytes(cap.rng.getrandbits(8) for _ in range(120))])
    cap.wait(0.3)
    dns(cap, "eastus.frontend.clouddatahub.net", [ADF])
    https(cap, ADF, "eastus.frontend.clouddatahub.net")
    cap.wait(0.3)
    http_get(cap, ADF, "eastus.frontend.clouddatahub.net", "/")


def s_fqdn(cap: Capture) -> None:
    dns(cap, "pypi.org", [PYPI])
    https(cap, PYPI, "pypi.org")
    cap.wait(0.3)
    dns(cap, "files.pythonhosted.org", [PYTHONHOSTED])
    https(cap, PYTHONHOSTED, "files.pythonhosted.org", down=30000)
    cap.wait(0.3)
    dns(cap, "download.pytorch.org", [PYTORCH])
    http_get(cap, PYTORCH, "download.pytorch.org", "/whl/cpu/")


def s_fqdn_needs_sni_or_host(cap: Capture) -> None:
    dns(cap, "pypi.org", [PYPI])
    https(cap, PYPI, None)                       # ClientHello without server_name
    cap.wait(0.3)
    Tcp(cap, PYPI, 443).handshake().close()      # no client payload at all
    cap.wait(0.3)
    dns(cap, "download.pytorch.org", [PYTORCH])
    http_get(cap, PYTORCH, None, "/whl/cpu/", version="HTTP/1.0")  # no Host header


def s_fqdn_port_not_supported(cap: Capture) -> None:
    dns(cap, "files.pythonhosted.org", [PYTHONHOSTED])
    quic_session(cap, PYTHONHOSTED, "files.pythonhosted.org")
    cap.wait(0.3)
    dns(cap, "pypi.org", [PYPI])
    https(cap, PYPI, "pypi.org", port=8080)


def s_storage_requires_private_endpoint(cap: Capture) -> None:
    dns(cap, "other.blob.core.windows.net",
        cname_chain("other.blob.core.windows.net", "blob.bl5prdstr09a.store.core.windows.net",
                    ip=STORAGE_PUBLIC))
    https(cap, STORAGE_PUBLIC, "other.blob.core.windows.net", up=8000)


def s_no_matching_rule(cap: Capture) -> None:
    dns(cap, "example.com", [EXAMPLE])
    https(cap, EXAMPLE, "example.com")
    cap.wait(0.3)
    http_get(cap, EXAMPLE, "example.com")
    cap.wait(0.3)
    dns(cap, "pythonhosted.org", [PYTHONHOSTED_APEX])   # `*.pythonhosted.org` is not the apex
    https(cap, PYTHONHOSTED_APEX, "pythonhosted.org")


def tunnel_label(rng: random.Random, n: int = 56) -> str:
    return base64.b32encode(bytes(rng.getrandbits(8) for _ in range(n))).decode().lower().rstrip("=")[:n]


def s_dns_tunneling(cap: Capture) -> None:
    ordinary = ["eastus.api.azureml.ms", "westus.api.azureml.ms", "eastus2.api.azureml.ms",
                "centralus.api.azureml.ms", "northeurope.api.azureml.ms", "westeurope.api.azureml.ms",
                "uksouth.api.azureml.ms", "eastus.cert.api.azureml.ms", "ml.azureml.ms",
                "studio.azureml.ms", "eastus.experiments.azureml.ms", "eastus.modelmanagement.azureml.ms",
                "eastus.aether.azureml.ms", "eastus.workspace.azureml.ms", "eastus.notebooks.azureml.ms",
                "eastus.inference.azureml.ms"]
    for i in range(30):      # 30 ordinary lookups, 16 distinct names, one registered domain
        dns(cap, ordinary[i % len(ordinary)], [AML_API])
        cap.wait(1.0)
    for _ in range(30):      # 30 distinct 56-char base32 labels under one registered domain
        dns(cap, f"{tunnel_label(cap.rng)}.t.tunnel-c2.net", rcode=3)
        cap.wait(1.0)


def s_direct_ip(cap: Capture) -> None:
    https(cap, DIRECT, None)                               # fires: public, no DNS, no SNI
    cap.wait(0.3)
    dns(cap, "example.org", [EXAMPLE_ORG])
    https(cap, EXAMPLE_ORG, None)                          # DNS named it
    cap.wait(0.3)
    https(cap, EXAMPLE, "example.com")                     # SNI, no DNS
    cap.wait(0.3)
    http_get(cap, GITHUB_A, "octocat.github.io")           # Host, no DNS
    cap.wait(0.3)
    https(cap, "10.1.2.3", None)                           # private address


def s_dns_resolver_bypass(cap: Capture) -> None:
    dns(cap, "pypi.org", [PYPI], server="8.8.8.8")          # fires
    cap.wait(0.3)
    dns(cap, "pypi.org", [PYPI])                           # Azure DNS: fine


def s_encrypted_dns(cap: Capture) -> None:
    dns(cap, "one.one.one.one", ["1.1.1.1"])
    https(cap, "1.1.1.1", "one.one.one.one", port=853)      # DoT
    cap.wait(0.3)
    dns(cap, "dns.google", ["8.8.4.4"])
    https(cap, "8.8.4.4", "dns.google")                     # DoH
    cap.wait(0.3)
    dns(cap, "pypi.org", [PYPI])
    https(cap, PYPI, "pypi.org")                            # ordinary TLS


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def h2_frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def s_proxies(cap: Capture) -> None:
    # SOCKS5 (RFC 1928) CONNECT pypi.org:443 through the job's proxy, then TLS inside.
    dns(cap, "proxy.corp.example", [PROXY])
    t = Tcp(cap, PROXY, 1080).handshake().send(b"\x05\x01\x00").recv(b"\x05\x00")
    t.send(b"\x05\x01\x00\x03\x08pypi.org\x01\xbb").recv(b"\x05\x00\x00\x01" + bytes(6))
    t.send(tls_record(client_hello("pypi.org", seed=cap.name))).recv(server_flight(cap)).close()
    cap.wait(0.3)
    # A SOCKS preamble sent straight to pypi.org's address on 443, then the ClientHello.
    dns(cap, "pypi.org", [PYPI])
    t = Tcp(cap, PYPI, 443).handshake()
    t.send(b"\x05\x01\x00\x05\x01\x00\x03\x08pypi.org\x01\xbb"
           + tls_record(client_hello("pypi.org", seed=cap.name + "2")))
    t.recv(server_flight(cap)).close()
    cap.wait(0.3)
    # Cleartext HTTP/2 with prior knowledge: :authority names it as a Host would.
    dns(cap, "download.pytorch.org", [PYTORCH])
    enc = hpack.Encoder()
    req = enc.encode([(":method", "GET"), (":scheme", "http"),
                      (":authority", "download.pytorch.org"), (":path", "/whl/cpu/")])
    t = Tcp(cap, PYTORCH, 80).handshake()
    t.send(H2_PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(1, 0x5, 1, req))
    t.recv(h2_frame(4, 0, 0, b"") + h2_frame(1, 0x4, 1, hpack.Encoder().encode([(":status", "200")]))
           + h2_frame(0, 0x1, 1, b"ok\n")).close()
    cap.wait(0.3)
    # DNS over HTTPS in cleartext HTTP/2 (RFC 8484 POST): raised, and its DNS decoded.
    dns(cap, "dns.google", [GOOGLE_DNS])
    query = DNS(id=0, rd=1, qd=DNSQR(qname="hidden.exfil.example"))
    answer = DNS(id=0, qr=1, rd=1, ra=1, qd=DNSQR(qname="hidden.exfil.example"),
                 an=DNSRR(rrname="hidden.exfil.example", type="A", rdata=DIRECT, ttl=60))
    req = hpack.Encoder().encode([(":method", "POST"), (":scheme", "http"), (":authority", "dns.google"),
                                  (":path", "/dns-query"), ("content-type", "application/dns-message")])
    resp = hpack.Encoder().encode([(":status", "200"), ("content-type", "application/dns-message")])
    t = Tcp(cap, GOOGLE_DNS, 80).handshake()
    t.send(H2_PREFACE + h2_frame(4, 0, 0, b"") + h2_frame(1, 0x4, 1, req) + h2_frame(0, 0x1, 1, bytes(query)))
    t.recv(h2_frame(4, 0, 0, b"") + h2_frame(1, 0x4, 1, resp) + h2_frame(0, 0x1, 1, bytes(answer))).close()


def s_sni_mismatch(cap: Capture) -> None:
    dns(cap, "good.example", [GITHUB_A])
    https(cap, GITHUB_A, "evil.example")                   # fires
    cap.wait(0.3)
    dns(cap, "www.good.example", [GITHUB_B])
    https(cap, GITHUB_B, "www.good.example")               # matches


MiB = 1024 * 1024


def s_bulk_upload(cap: Capture) -> None:
    dns(cap, "bulk.exfil.example", [GITHUB_C])
    t = Tcp(cap, GITHUB_C, 443).handshake()
    t.send(tls_record(client_hello("bulk.exfil.example", seed=cap.name))).recv(server_flight(cap))
    t.bulk_send(21 * MiB).recv(app_data(cap, 200)).close()        # fires
    cap.wait(1.0)
    dns(cap, "cdn-lfs.huggingface.co", [HF_CDN])
    t = Tcp(cap, HF_CDN, 443).handshake()
    t.send(tls_record(client_hello("cdn-lfs.huggingface.co", seed=cap.name))).recv(server_flight(cap))
    t.send(app_data(cap, 400)).bulk_recv(21 * MiB).close()         # download: PCR < 0
    cap.wait(1.0)
    _pe_blob(cap)
    t = Tcp(cap, PE_BLOB, 443).handshake()
    t.send(tls_record(client_hello("acct.blob.core.windows.net", seed=cap.name))).recv(server_flight(cap))
    t.bulk_send(21 * MiB).recv(app_data(cap, 200)).close()        # private endpoint: exempt
    cap.wait(1.0)
    dns(cap, "small.exfil.example", [GITHUB_B])
    t = Tcp(cap, GITHUB_B, 443).handshake()
    t.send(tls_record(client_hello("small.exfil.example", seed=cap.name))).recv(server_flight(cap))
    t.bulk_send(19 * MiB).recv(app_data(cap, 200)).close()        # below 20 MiB


SCENARIOS = {name[2:]: fn for name, fn in sorted(globals().items()) if name.startswith("s_")}


def build(name: str) -> Capture:
    cap = Capture(name)
    SCENARIOS[name](cap)
    return cap


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("names", nargs="*", help=f"default: all ({', '.join(SCENARIOS)})")
    args = ap.parse_args(argv)
    for name in args.names or SCENARIOS:
        if name not in SCENARIOS:
            ap.error(f"unknown scenario {name!r}")
        args.out.mkdir(parents=True, exist_ok=True)
        build(name).write(args.out / f"{name}.pcap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
