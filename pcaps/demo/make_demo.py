#!/usr/bin/env python3
"""Generate the demo captures: one ML training job's egress in approved-only mode.

Six files, replayed in name order as one job (timestamps continue from file to file):

  01-pip-install         pip resolves and downloads wheels: pypi.org, files.pythonhosted.org
  02-huggingface         model download from huggingface.co and its LFS CDN
  03-azureml-control     IMDS token, Entra ID login, ARM, the Azure ML API (TCP 443, UDP 5831)
  04-checkpoint-to-blob  a 25 MiB checkpoint upload through the storage private endpoint
  05-paste-site          one call to an unapproved paste site (denied)
  06-dns-tunnel          a burst of 40 long high-entropy lookups under one domain

Deterministic (fixed times, seeds, addresses, ports); the frame builders are the scenario
generator's (`pcaps/scenarios/make_scenarios.py`). Judge with `pcaps/demo/policy.yaml`:

    egress-auditor replay pcaps/demo/*.pcap --policy pcaps/demo/policy.yaml
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scenarios"))
sys.dont_write_bytecode = True   # no __pycache__ among the captures
import make_scenarios as m  # noqa: E402

MiB = 1024 * 1024
HF = "3.163.189.114"              # huggingface.co (CloudFront), no service tag
AAD = "20.190.151.68"             # login.microsoftonline.com: AzureActiveDirectory
ARM = "13.66.141.180"             # management.azure.com: AzureResourceManager
AML = "40.79.154.65"              # eastus.api.azureml.ms: AzureMachineLearning.EastUS
PE_BLOB = "10.1.1.5"              # mlstorage.blob.core.windows.net private endpoint


def pip_install(cap: m.Capture) -> None:
    m.dns(cap, "pypi.org", [m.PYPI])
    m.https(cap, m.PYPI, "pypi.org", down=60000)
    m.dns(cap, "files.pythonhosted.org", [m.PYTHONHOSTED])
    t = m.Tcp(cap, m.PYTHONHOSTED, 443).handshake()
    t.send(m.tls_record(m.client_hello("files.pythonhosted.org", seed=cap.name))).recv(m.server_flight(cap))
    t.send(m.app_data(cap, 500)).bulk_recv(12 * MiB).close()
    cap.wait(2.0)
    m.https(cap, m.PYTHONHOSTED, "files.pythonhosted.org", down=9000)


def huggingface(cap: m.Capture) -> None:
    m.dns(cap, "huggingface.co", [HF])
    m.https(cap, HF, "huggingface.co", down=20000)
    m.dns(cap, "cdn-lfs.huggingface.co", [m.HF_CDN])
    t = m.Tcp(cap, m.HF_CDN, 443).handshake()
    t.send(m.tls_record(m.client_hello("cdn-lfs.huggingface.co", seed=cap.name))).recv(m.server_flight(cap))
    t.send(m.app_data(cap, 700)).bulk_recv(15 * MiB).close()


def azureml_control(cap: m.Capture) -> None:
    m.http_get(cap, m.IMDS, m.IMDS, "/metadata/identity/oauth2/token?api-version=2018-02-01"
               "&resource=https://management.azure.com/", extra="Metadata: true\r\n",
               body=b'{"access_token":"eyJ0eXAi...","token_type":"Bearer"}')
    m.dns(cap, "login.microsoftonline.com", [AAD])
    m.https(cap, AAD, "login.microsoftonline.com")
    m.dns(cap, "management.azure.com", [ARM])
    m.https(cap, ARM, "management.azure.com")
    m.dns(cap, "eastus.api.azureml.ms", [AML])
    m.https(cap, AML, "eastus.api.azureml.ms", up=3000, down=8000)
    m.udp(cap, AML, 5831, [bytes(cap.rng.getrandbits(8) for _ in range(160))], [bytes(80)])


def checkpoint_to_blob(cap: m.Capture) -> None:
    m.dns(cap, "mlstorage.blob.core.windows.net",
          m.cname_chain("mlstorage.blob.core.windows.net", "mlstorage.privatelink.blob.core.windows.net",
                        ip=PE_BLOB))
    t = m.Tcp(cap, PE_BLOB, 443).handshake()
    t.send(m.tls_record(m.client_hello("mlstorage.blob.core.windows.net", seed=cap.name))).recv(m.server_flight(cap))
    t.bulk_send(25 * MiB).recv(m.app_data(cap, 300)).close()


def paste_site(cap: m.Capture) -> None:
    m.dns(cap, "pastebin.com", [m.PASTE])
    m.https(cap, m.PASTE, "pastebin.com", up=6000, down=2000)


def dns_tunnel(cap: m.Capture) -> None:
    for _ in range(40):
        m.dns(cap, f"{m.tunnel_label(cap.rng)}.t1.tunnel-demo.net", rcode=3)
        cap.wait(0.5)


DEMO = [("01-pip-install", pip_install), ("02-huggingface", huggingface),
        ("03-azureml-control", azureml_control), ("04-checkpoint-to-blob", checkpoint_to_blob),
        ("05-paste-site", paste_site), ("06-dns-tunnel", dns_tunnel)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=HERE)
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    for i, (name, fn) in enumerate(DEMO):
        cap = m.Capture(f"demo/{name}", start=m.T0 + 60 * i)
        fn(cap)
        cap.write(args.out / f"{name}.pcap")
    return 0


if __name__ == "__main__":
    sys.exit(main())
