"""Builders of the packets a compromised job on the node would send (scapy), and a runner that
audits them through the public API. Kept beside the tests so every crafted capture has its
generator next to it."""
from __future__ import annotations

from pathlib import Path

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from auditor import audit

NODE = "10.0.0.5"
SERVER = "93.184.216.34"
AZURE_DNS = "168.63.129.16"
POLICY = """\
location: eastus
managed_network:
  isolation_mode: allow_only_approved_outbound
  outbound_rules:
    - {name: pypi, type: fqdn, destination: pypi.org}
    - name: mlstorage-blob
      type: private_endpoint
      destination:
        service_resource_id: /subscriptions/0000/resourceGroups/rg/providers/Microsoft.Storage/storageAccounts/mlstorage
        subresource_target: blob
        spark_enabled: false
"""


def hello(sni: bytes) -> bytes:
    """A minimal TLS 1.2 ClientHello record carrying `sni` (any bytes)."""
    sni_ext = (b"\x00\x00" + (len(sni) + 5).to_bytes(2, "big") + (len(sni) + 3).to_bytes(2, "big")
               + b"\x00" + len(sni).to_bytes(2, "big") + sni)
    body = (b"\x03\x03" + b"\x11" * 32 + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
            + len(sni_ext).to_bytes(2, "big") + sni_ext)
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


class Conn:
    """One TCP connection from `client` to `server`, built packet by packet."""

    def __init__(self, client=NODE, server=SERVER, sport=40000, dport=443, isn=1000, sisn=5000):
        self.c, self.s, self.sp, self.dp = client, server, sport, dport
        self.cseq, self.sseq = isn, sisn
        self.packets: list = []

    def _c(self, flags, payload=b"", seq=None, ttl=64, **kw):
        p = IP(src=self.c, dst=self.s, ttl=ttl) / TCP(sport=self.sp, dport=self.dp, flags=flags,
                                                      seq=self.cseq if seq is None else seq,
                                                      ack=self.sseq, **kw)
        return p / Raw(payload) if payload else p

    def _s(self, flags, payload=b""):
        p = IP(src=self.s, dst=self.c) / TCP(sport=self.dp, dport=self.sp, flags=flags,
                                             seq=self.sseq, ack=self.cseq)
        return p / Raw(payload) if payload else p

    def handshake(self, syn_payload: bytes = b""):
        self.packets.append(self._c("S", syn_payload))
        self.cseq += 1 + len(syn_payload)
        self.packets.append(self._s("SA"))
        self.sseq += 1
        self.packets.append(self._c("A"))
        return self

    def send(self, data: bytes, ttl: int = 64, advance: bool = True, seg: int = 1400):
        for i in range(0, len(data), seg):
            chunk = data[i:i + seg]
            self.packets.append(self._c("PA", chunk, ttl=ttl))
            if advance:
                self.cseq += len(chunk)
        return self

    def resend_at(self, seq: int, data: bytes, ttl: int = 64):
        self.packets.append(self._c("PA", data, seq=seq, ttl=ttl))
        return self

    def ack(self):
        self.packets.append(self._s("A"))
        return self

    def reply(self, data: bytes):
        self.packets.append(self._s("PA", data))
        self.sseq += len(data)
        return self

    def close(self):
        self.packets += [self._c("FA"), self._s("FA")]
        return self


def dns_pair(name: str, ip: str, server: str = AZURE_DNS, qid: int = 7, sport: int = 33333,
             client: str = NODE) -> list:
    q = IP(src=client, dst=server) / UDP(sport=sport, dport=53) / DNS(id=qid, rd=1, qd=DNSQR(qname=name))
    a = IP(src=server, dst=client) / UDP(sport=53, dport=sport) / DNS(
        id=qid, qr=1, rd=1, ra=1, qd=DNSQR(qname=name), an=DNSRR(rrname=name, type="A", rdata=ip, ttl=300))
    return [q, a]


def write(path: Path, packets, start: float = 1_700_000_000.0, step: float = 0.001) -> Path:
    frames = []
    for i, p in enumerate(packets):
        f = Ether() / p
        f.time = start + i * step
        frames.append(f)
    wrpcap(str(path), frames)
    return path


def run(tmp_path: Path, packets, **settings):
    """Audit the packets as a capture file with the crafted policy (unless one is given)."""
    pcap = write(tmp_path / "crafted.pcap", packets)
    if "policy" not in settings:
        policy = tmp_path / "policy.yaml"
        policy.write_text(POLICY)
        settings["policy"] = str(policy)
    settings.setdefault("node_networks", ["10.0.0.0/8"])
    return audit([pcap], settings)


def flows_to(report, ip: str) -> list[dict]:
    return [f for f in report.flows if f["destination"]["ip"] == ip]


def detectors(report) -> set[str]:
    return {f["rule"]["name"] for f in report.findings}


# -- proxies and cleartext HTTP/2 ------------------------------------------------------------

def socks5(host: bytes, port: int = 443, userpass: tuple[bytes, bytes] | None = None) -> bytes:
    """A SOCKS5 client handshake (greeting, RFC 1929 if asked, CONNECT with a domain)."""
    if userpass:
        user, pw = userpass
        return (b"\x05\x01\x02" + b"\x01" + bytes([len(user)]) + user + bytes([len(pw)]) + pw
                + b"\x05\x01\x00\x03" + bytes([len(host)]) + host + port.to_bytes(2, "big"))
    return b"\x05\x01\x00\x05\x01\x00\x03" + bytes([len(host)]) + host + port.to_bytes(2, "big")


def socks4a(host: bytes, port: int = 443, user: bytes = b"job") -> bytes:
    return b"\x04\x01" + port.to_bytes(2, "big") + b"\x00\x00\x00\x01" + user + b"\x00" + host + b"\x00"


def h2_frame(ftype: int, flags: int, stream: int, payload: bytes) -> bytes:
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


def h2_request(encoder, headers: list[tuple[str, str]], stream: int = 1, end_stream: bool = True) -> bytes:
    """A HEADERS frame (END_HEADERS) encoded with `encoder` (an hpack.Encoder)."""
    return h2_frame(1, 0x4 | (0x1 if end_stream else 0), stream, encoder.encode(headers))


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(4, 0, 0, b"")
