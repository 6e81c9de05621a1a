"""Installing without a C compiler still works: the compiled core is skipped with a one-line
notice, the pure-Python twin runs, and the replay summary says so beside its rate."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_without_a_compiler_the_build_says_so_and_the_pure_core_runs(tmp_path):
    tree = tmp_path / "src"
    shutil.copytree(ROOT / "auditor", tree / "auditor",
                    ignore=shutil.ignore_patterns("__pycache__", "*.so", "*.c"))
    shutil.copy(ROOT / "setup.py", tree)
    shutil.copy(ROOT / "pyproject.toml", tree)
    shutil.copy(ROOT / "README.md", tree)
    env = {k: v for k, v in os.environ.items() if k != "EGRESS_AUDITOR_PURE_PYTHON"}
    env["CC"] = "/bin/false"            # a compiler that fails: what a machine without one gives
    r = subprocess.run([sys.executable, "setup.py", "-q", "build_ext", "--inplace"], cwd=tree,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "the compiled core was not built" in r.stderr
    assert not list(tree.glob("auditor/**/*.so"))
    env["PYTHONPATH"] = str(tree)
    r = subprocess.run([sys.executable, "-m", "auditor", "replay", str(ROOT / "pcaps/demo/05-paste-site.pcap")],
                       cwd=tree, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    [packets] = [line for line in r.stdout.splitlines() if line.startswith("  packets ")]
    assert packets.endswith(" packets/s) [pure-Python core: the compiled one was not built (no C "
                            "compiler at install); same results, slower]"), packets
    r = subprocess.run([sys.executable, "-m", "auditor", "--version"], cwd=tree, env=env,
                       capture_output=True, text=True, timeout=60)
    assert "core: pure Python" in r.stdout


def test_the_installed_core_is_compiled_where_ci_requires_it():
    from auditor import core
    if os.environ.get("EGRESS_AUDITOR_REQUIRE_COMPILED") == "1":
        from auditor.decode import packet
        from auditor.sources import pcap
        assert core.describe() == "compiled" and core.notice() is None
        assert packet.Packet.__module__ == "auditor.decode.cpacket"
        assert pcap.records.__module__ == "auditor.sources.cpcap"
        from auditor.decode import dns, tls
        assert dns.parse is not dns.py_parse and tls.parse_records is not tls.py_parse_records
    else:
        assert core.describe() == "compiled" or core.describe().startswith("pure Python")
