#!/usr/bin/env python3
"""Build a RecordIO stream of JSON `mesos.v1.scheduler.Event`s, shaped like real Mesos output.

Usage:
    python3 bench/mkstream.py offers  N OUT   # N OFFERS events, 100 offers each
    python3 bench/mkstream.py updates N OUT   # N UPDATE events (TASK_RUNNING from the executor)

Options: --seed S (default 1), --offers-per-event K (default 100, `offers` only).

The JSON follows stout's `JSON::Protobuf` / `jsonify` output (docs: mesos-v1-api.md §1.3, §2.1-2.3):
  * compact (no whitespace), proto field names, fields in .proto *declaration* order;
  * enums as their names; int32/int64/uint32/uint64 as JSON numbers;
  * doubles printed shortest-round-trip with `.0` for whole numbers (rapidjson; Python's float repr
    gives the same text for the magnitudes used here, e.g. 4.0, 7808.0, 1724430000.123456);
  * bytes as standard base64 with padding;
  * unset optional fields omitted, except defaults Mesos emits anyway (NetworkInfo.IPAddress.protocol
    "IPv4"); empty repeated fields omitted; deprecated Resource.role "*" present because the master
    sets it explicitly for frameworks without RESERVATION_REFINEMENT (§2.2);
  * OFFERS uses the `Event.Offers` wrapper: {"type":"OFFERS","offers":{"offers":[...]}}.
Each record is `<decimal byte length>\n<json bytes>`, no separators, no trailing newline.

The output is deterministic for a given (kind, N, seed, offers-per-event).
"""

import argparse
import base64
import json
import random
import sys
import uuid


def dumps(obj):
    # Compact, insertion-ordered (dicts below are built in declaration order), ASCII only.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def rand_uuid(rng):
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def b64(raw):
    return base64.b64encode(raw).decode("ascii")


class Cluster:
    """Deterministic fake cluster: a master id, a framework id, and a pool of agents."""

    ROLES = ["dev", "prod", "batch", "analytics"]

    def __init__(self, rng, n_agents=1000):
        self.rng = rng
        self.master_id = rand_uuid(rng)
        self.framework_id = self.master_id + "-0000"
        self.role = "dev"
        self.agents = []
        for i in range(n_agents):
            self.agents.append({
                "id": "%s-S%d" % (self.master_id, i),
                "hostname": "agent-%04d.dc1.example.internal" % i,
                "ip": "10.%d.%d.%d" % (i // 62500 % 256, i // 250 % 250, i % 250 + 1),
                "rack": "rack-%02d" % (i % 40),
                "zone": "zone-%c" % ("abc"[i % 3]),
                "generation": float(rng.choice([1, 2, 3, 4])),
            })
        self.next_offer = 0


def value_id(v):
    return {"value": v}


def scalar_resource(name, value, role):
    # Resource: provider_id, name, type, scalar, ranges, set, role, allocation_info, ...
    return {
        "name": name,
        "type": "SCALAR",
        "scalar": {"value": float(value)},
        "role": "*",
        "allocation_info": {"role": role},
    }


def ranges_resource(name, ranges, role):
    return {
        "name": name,
        "type": "RANGES",
        "ranges": {"range": [{"begin": b, "end": e} for (b, e) in ranges]},
        "role": "*",
        "allocation_info": {"role": role},
    }


def make_offer(cl):
    rng = cl.rng
    agent = cl.agents[rng.randrange(len(cl.agents))]
    offer_no = cl.next_offer
    cl.next_offer += 1
    role = cl.role

    cpus = rng.choice([0.5, 1.0, 1.5, 2.0, 3.75, 4.0, 7.5, 8.0, 12.25, 16.0, 31.9, 32.0, 48.0, 64.0])
    mem = float(rng.randrange(256, 262144, 32))          # MB, whole numbers -> "7808.0"
    disk = float(rng.choice([1, 2, 4, 8]) * 1024 * rng.randrange(1, 400))
    # ports: one to three disjoint ranges in 31000-32000
    n_ranges = rng.choice([1, 1, 2, 3])
    cuts = sorted(rng.sample(range(31000, 32001), 2 * n_ranges))
    ports = [(cuts[2 * k], cuts[2 * k + 1]) for k in range(n_ranges)]

    # Offer fields in declaration order:
    # id, framework_id, agent_id, hostname, url, domain, resources, attributes, executor_ids,
    # unavailability, allocation_info
    return {
        "id": value_id("%s-O%d" % (cl.master_id, offer_no)),
        "framework_id": value_id(cl.framework_id),
        "agent_id": value_id(agent["id"]),
        "hostname": agent["hostname"],
        "url": {
            "scheme": "http",
            "address": {"hostname": agent["hostname"], "ip": agent["ip"], "port": 5051},
            "path": "/slave(1)",
        },
        "resources": [
            scalar_resource("cpus", cpus, role),
            scalar_resource("mem", mem, role),
            scalar_resource("disk", disk, role),
            ranges_resource("ports", ports, role),
        ],
        "attributes": [
            # Attribute: name, type, scalar, ranges, set, text
            {"name": "rack", "type": "TEXT", "text": {"value": agent["rack"]}},
            {"name": "generation", "type": "SCALAR", "scalar": {"value": agent["generation"]}},
        ],
        "allocation_info": {"role": role},
    }


def make_offers_event(cl, per_event):
    return {"type": "OFFERS", "offers": {"offers": [make_offer(cl) for _ in range(per_event)]}}


def make_update_event(cl, i, t0):
    rng = cl.rng
    agent = cl.agents[rng.randrange(len(cl.agents))]
    app = rng.choice(["web", "api", "worker", "cache", "ingest", "etl"])
    task_id = "%s.%s" % (app, rand_uuid(rng))
    timestamp = round(t0 + i * 0.000731 + rng.random() * 0.0005, 6)
    data = dumps({"seq": i, "progress": round(rng.random(), 3), "phase": "serve"}).encode("ascii")
    container_ip = "172.%d.%d.%d" % (16 + rng.randrange(16), rng.randrange(256), 1 + rng.randrange(254))
    # TaskStatus fields in declaration order:
    # task_id, state, message, source, reason, data, agent_id, executor_id, timestamp, uuid,
    # healthy, check_status, labels, container_status, unreachable_time, limitation
    status = {
        "task_id": value_id(task_id),
        "state": "TASK_RUNNING",
        "source": "SOURCE_EXECUTOR",
        "data": b64(data),
        "agent_id": value_id(agent["id"]),
        "executor_id": value_id(task_id),
        "timestamp": timestamp,
        "uuid": b64(rng.getrandbits(128).to_bytes(16, "big")),
        # ContainerStatus: container_id, network_infos, cgroup_info, executor_pid
        "container_status": {
            "container_id": value_id(rand_uuid(rng)),
            # NetworkInfo: ip_addresses{protocol (default IPv4, emitted), ip_address}, name, ...
            "network_infos": [{"ip_addresses": [{"protocol": "IPv4", "ip_address": container_ip}]}],
            "executor_pid": rng.randrange(300, 4194304),
        },
    }
    return {"type": "UPDATE", "update": {"status": status}}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("kind", choices=["offers", "updates"])
    ap.add_argument("count", type=int, help="number of events")
    ap.add_argument("out", help="output file")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--offers-per-event", type=int, default=100)
    args = ap.parse_args(argv)
    if args.count < 1:
        ap.error("count must be >= 1")

    rng = random.Random("mesokit-bench/%s/%d" % (args.kind, args.seed))
    cl = Cluster(rng)
    t0 = 1724430000.0 + rng.randrange(0, 86400)

    total = 0
    with open(args.out, "wb") as f:
        for i in range(args.count):
            if args.kind == "offers":
                ev = make_offers_event(cl, args.offers_per_event)
            else:
                ev = make_update_event(cl, i, t0)
            body = dumps(ev).encode("utf-8")
            rec = b"%d\n" % len(body) + body
            f.write(rec)
            total += len(rec)
    print("mkstream kind=%s records=%d bytes=%d file=%s" % (args.kind, args.count, total, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
