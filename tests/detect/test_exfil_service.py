"""exfil_service: a lookup or a named flow to a listed service, attributed to the node end
that asked."""
from tests.detect._helpers import detect
from tests.util import dns_answer, dns_query

NODE, REMOTE, AZURE_DNS = "10.0.0.5", "203.0.113.9", "168.63.129.16"


def test_the_nodes_own_lookup_of_a_paste_site_is_a_finding():
    found, _ = detect([dns_query(NODE, AZURE_DNS, "pastebin.com", 8),
                       dns_answer(NODE, AZURE_DNS, "pastebin.com", "104.20.0.1", 8)],
                      only="exfil_service", node_networks=["10.0.0.0/16"])
    assert [(f.key, f.evidence["via"], f.evidence["client"]) for f in found] == \
        [("pastebin.com", "dns_query", NODE)]


def test_a_remote_asking_the_nodes_dns_service_is_not_the_node_looking_it_up():
    # The node end is the flow's client (its port 53 answers); the query came from outside.
    # Before, that made a high-severity finding naming the node as the one who asked.
    found, _ = detect([dns_query(REMOTE, NODE, "pastebin.com", 7, sport=40000),
                       dns_answer(REMOTE, NODE, "pastebin.com", "104.20.0.1", 7, sport=40000)],
                      only="exfil_service", node_networks=["10.0.0.0/16"])
    assert found == []
