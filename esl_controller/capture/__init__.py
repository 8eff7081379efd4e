"""Per-call SIP/RTP packet capture (extra ``pcap``: scapy, pyroute2, and libpcap on the system).

``filters`` (pure) builds the BPF filter and recognises a call's SIP; ``iface`` picks the interface;
``sniffer`` captures one call in a child process; ``manager`` starts, updates and stops captures.
"""
