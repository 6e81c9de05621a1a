"""State built from decoded packets: the flow table and the DNS name cache."""

