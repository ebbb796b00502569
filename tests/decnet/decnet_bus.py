"""Drives DECNET's own socket bus (from its PyPI package) for ttp-worker's bridge tests.

Ours, not DECNET's: it only calls DECNET's public bus API.

    decnet_bus.py broker SOCKET              run DECNET's broker until SIGTERM
    decnet_bus.py publish SOCKET FILE        publish each JSON line {"topic","type","payload"};
                                             prints {"published": N}
    decnet_bus.py flood SOCKET N             publish N small events as fast as the client goes
    decnet_bus.py subscribe SOCKET PATTERN N SECONDS
                                             print each event as a JSON line until N were seen
                                             or SECONDS passed; "ready" first, once subscribed
"""
import asyncio
import json
import sys

from decnet.bus.unix_client import UnixSocketBus
from decnet.bus.worker import bus_worker


async def broker(socket):
    await bus_worker(socket, group=None, heartbeat_interval=1)


async def publish(socket, path):
    bus = UnixSocketBus(socket, client_name="test-publisher")
    await bus.connect()
    count = 0
    with open(path) as lines:
        for line in lines:
            if not line.strip():
                continue
            event = json.loads(line)
            await bus.publish(event["topic"], event["payload"], event_type=event.get("type", ""))
            count += 1
    await bus.close()
    print(json.dumps({"published": count}))


async def flood(socket, n):
    bus = UnixSocketBus(socket, client_name="test-flood")
    await bus.connect()
    payload = {"attacker_ip": "198.51.100.7", "service": "ssh", "padding": "x" * 2000}
    for i in range(n):
        await bus.publish("attacker.observed", dict(payload, seq=i), event_type="observed")
    await bus.close()
    print(json.dumps({"published": n}))


async def subscribe(socket, pattern, n, seconds):
    bus = UnixSocketBus(socket, client_name="test-subscriber")
    await bus.connect()
    sub = bus.subscribe(pattern)
    # Let the SUB frame reach the broker before saying so.
    await asyncio.sleep(0.2)
    print("ready", flush=True)
    seen = 0

    async def read():
        nonlocal seen
        async for event in sub:
            print(json.dumps({"topic": event.topic, "type": event.type,
                              "payload": event.payload}), flush=True)
            seen += 1
            if seen >= n:
                return

    try:
        await asyncio.wait_for(read(), timeout=seconds)
    except asyncio.TimeoutError:
        pass
    await bus.close()


def main(argv):
    command = argv[1]
    if command == "broker":
        asyncio.run(broker(argv[2]))
    elif command == "publish":
        asyncio.run(publish(argv[2], argv[3]))
    elif command == "flood":
        asyncio.run(flood(argv[2], int(argv[3])))
    elif command == "subscribe":
        asyncio.run(subscribe(argv[2], argv[3], int(argv[4]), float(argv[5])))
    else:
        sys.exit(f"unknown command {command!r}")


if __name__ == "__main__":
    main(sys.argv)
