#!/usr/bin/env python3
"""Cluster DNS for the local test cluster (there is no CoreDNS image here).

Answers A queries for the names Kubernetes gives pods and headless Services,
from the apiserver's pod list (polled with kubectl every second):

  <hostname>.<subdomain>.<namespace>.svc.cluster.local -> the pod's IP
      (StatefulSet pods: hostname = pod name, subdomain = the governing Service)
  <subdomain>.<namespace>.svc.cluster.local            -> the IPs of those pods

Everything else is NXDOMAIN: nothing is forwarded, so no query leaves the
machine. A known name asked for another type (AAAA) gets an empty NOERROR
answer, as a real server does. UDP only; answers are small.

Usage: dns.py --listen 172.31.250.1 --kubectl /path/kubectl --kubeconfig FILE
The kubelet points pods at it with `clusterDNS`.
"""

from __future__ import annotations

import argparse
import json
import socket
import struct
import subprocess
import sys
import threading
import time

DOMAIN = "svc.cluster.local"
TTL = 2


class Names:
    """name -> IPv4 addresses, refreshed from the apiserver."""

    def __init__(self, kubectl: list[str]):
        self.kubectl = kubectl
        self.lock = threading.Lock()
        self.names: dict[str, list[str]] = {}

    def refresh_forever(self) -> None:
        while True:
            try:
                out = subprocess.run(
                    self.kubectl + ["get", "pods", "-A", "-o", "json"],
                    capture_output=True, text=True, timeout=10, check=True,
                ).stdout
                names: dict[str, list[str]] = {}
                for pod in json.loads(out).get("items", []):
                    spec, status, meta = pod.get("spec", {}), pod.get("status", {}), pod["metadata"]
                    ip, sub, host = status.get("podIP"), spec.get("subdomain"), spec.get("hostname")
                    if not ip or not sub:
                        continue
                    ns = meta["namespace"]
                    names.setdefault(f"{sub}.{ns}.{DOMAIN}", []).append(ip)
                    if host:
                        names[f"{host}.{sub}.{ns}.{DOMAIN}"] = [ip]
                with self.lock:
                    self.names = names
            except (subprocess.SubprocessError, ValueError, KeyError) as e:
                print(f"dns: refreshing names failed: {e}", file=sys.stderr, flush=True)
            time.sleep(1)

    def lookup(self, name: str) -> list[str] | None:
        with self.lock:
            return self.names.get(name.rstrip(".").lower())


def parse_question(msg: bytes) -> tuple[str, int, int] | None:
    """(name, qtype, end of the question) of a one-question query."""
    if len(msg) < 12 or struct.unpack("!H", msg[4:6])[0] != 1:
        return None
    labels, i = [], 12
    while i < len(msg):
        n = msg[i]
        if n == 0:
            i += 1
            break
        if n & 0xC0:  # no compression in questions we accept
            return None
        labels.append(msg[i + 1:i + 1 + n].decode("ascii", "replace"))
        i += 1 + n
    if i + 4 > len(msg):
        return None
    qtype = struct.unpack("!H", msg[i:i + 2])[0]
    return ".".join(labels), qtype, i + 4


def answer(msg: bytes, names: Names) -> bytes | None:
    q = parse_question(msg)
    if q is None:
        return None
    name, qtype, end = q
    ips = names.lookup(name)
    flags = 0x8000 | (struct.unpack("!H", msg[2:4])[0] & 0x0100) | 0x0080  # QR, RD copied, RA
    records = b""
    if ips is None:
        flags |= 3  # NXDOMAIN
        count = 0
    elif qtype == 1:
        count = len(ips)
        for ip in ips:
            records += struct.pack("!HHHIH", 0xC00C, 1, 1, TTL, 4) + socket.inet_aton(ip)
    else:
        count = 0  # NOERROR, no data (AAAA of a known name)
    header = msg[:2] + struct.pack("!HHHHH", flags, 1, count, 0, 0)
    return header + msg[12:end] + records


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--port", type=int, default=53)
    p.add_argument("--kubectl", required=True)
    p.add_argument("--kubeconfig", required=True)
    args = p.parse_args()
    names = Names([args.kubectl, "--kubeconfig", args.kubeconfig])
    threading.Thread(target=names.refresh_forever, daemon=True).start()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((args.listen, args.port))
    print(f"dns: serving {DOMAIN} on {args.listen}:{args.port}", flush=True)
    while True:
        msg, peer = sock.recvfrom(512)
        reply = answer(msg, names)
        if reply is not None:
            sock.sendto(reply, peer)


if __name__ == "__main__":
    main()
