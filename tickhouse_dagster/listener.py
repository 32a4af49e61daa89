"""The landing listener: SeaweedFS filer change stream → the persisted landing queue.

Subscribes to the filer's metadata stream under `/buckets/<bucket>/` from the position it
persisted last, and for every created, changed or moved-in tick file reads the object's S3
version (HEAD: the same size/modified/etag the polling sensor sees, so a version has one run key
whichever way it is noticed) and queues it together with the new position, in one transaction.
A restart of the listener, of the filer or of Dagster replays at most the events after the last
persisted position; versions queued before are not added again (unique run key). A filer that
crashes loses the events it had not yet written to its log, so on every (re)connect the listener
also lists the bucket and queues the tick files changed since its position that it never heard of.

Runs until SIGTERM/SIGINT; reconnects with backoff when the filer goes away. Serves
`GET /healthz` on 127.0.0.1 (JSON: connected, position, how long ago the filer was heard) for
the local stack and the compose healthcheck. No credential is ever logged or served.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
import time
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

from tickhouse_dagster.settings import current
from tickhouse_dagster.storage.landing import LandingFile, S3Landing, is_tick_file
from tickhouse_dagster.storage.landing_queue import LandingQueue

log = logging.getLogger("tickhouse.listener")
BACKOFF_FIRST, BACKOFF_MAX = 0.2, 5.0
# The filer sends an idle heartbeat every ~5 s while caught up: silence for longer than this
# means the stream is stuck (reported unhealthy, and the stream is re-opened).
STALE_SECONDS = 20.0
PRUNE_EVERY_SECONDS = 3600.0
# A heartbeat only moves the stored "heard" time; writing it more often buys nothing.
HEARTBEAT_WRITE_SECONDS = 2.0
# How far before its position the listener's catch-up listing looks: S3 modified times are whole
# seconds, and an object is stamped before the filer's event about it is.
CATCH_UP_SLACK_NS = 120 * 1_000_000_000


@dataclass
class Health:
    connected: bool = False
    since_ns: int = 0
    heard_monotonic: float = 0.0
    queued: int = 0
    reconnects: int = 0
    last_error: str | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def report(self) -> tuple[bool, dict[str, object]]:
        with self.lock:
            heard_ago = time.monotonic() - self.heard_monotonic if self.heard_monotonic else None
            ok = self.connected and heard_ago is not None and heard_ago < STALE_SECONDS
            return ok, {
                "healthy": ok,
                "connected": self.connected,
                "since_ns": self.since_ns,
                "heard_seconds_ago": None if heard_ago is None else round(heard_ago, 3),
                "queued_since_start": self.queued,
                "reconnects": self.reconnects,
                "last_error": self.last_error,
            }


def serve_health(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/healthz", "/"):
                self.send_error(404)
                return
            ok, body = health.report()
            data = json.dumps(body).encode()
            self.send_response(200 if ok else 503)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:  # the stack polls it every second
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="listener-health", daemon=True).start()
    return server


@dataclass(frozen=True)
class ListenerConfig:
    filer_grpc: str  # host:port of the filer's gRPC (its HTTP port + 10000)
    bucket: str
    queue_url: str
    s3_endpoint: str | None
    region: str | None
    name: str
    start_ns: int  # where a listener with no stored position starts (0: the whole log)
    retention_ns: int = 7 * 86_400 * 1_000_000_000  # queue rows claimed and older are pruned


class Listener:
    def __init__(self, config: ListenerConfig, health: Health | None = None) -> None:
        self.config = config
        self.health = health or Health()
        self.queue = LandingQueue(config.queue_url)
        # Whole bucket (prefix ""): one listener serves every landing prefix in it; each
        # sensor reads only the keys under its own prefix.
        self.s3 = S3Landing(
            f"s3://{config.bucket}/", endpoint_url=config.s3_endpoint, region=config.region
        )
        self.root = f"/buckets/{config.bucket}/"
        self.stopping = threading.Event()
        self._current: object | None = None  # the open stream, for the watchdog to cancel
        self._epochs = 0

    def _epoch(self) -> int:
        self._epochs += 1
        return (int(time.time()) - 1_700_000_000 + self._epochs) & 0x7FFFFFFF

    def _watchdog(self) -> None:
        """Cancel a stream the filer stopped talking on (no event, no heartbeat): a filer that
        died without closing the TCP connection would otherwise hang the listener forever."""
        while not self.stopping.wait(1.0):
            with self.health.lock:
                heard = self.health.heard_monotonic
                connected = self.health.connected
            stream = self._current
            if connected and stream and heard and time.monotonic() - heard > STALE_SECONDS:
                log.warning(f"no message from the filer for {STALE_SECONDS:.0f}s; reconnecting")
                stream.cancel()  # type: ignore[attr-defined]

    def _pruner(self) -> None:
        """Hourly, the queue forgets what every sensor has claimed and is past the retention:
        it would otherwise grow by a row per file version forever."""
        while not self.stopping.wait(PRUNE_EVERY_SECONDS):
            self.prune()

    def prune(self) -> tuple[int, int]:
        try:
            removed = self.queue.prune(time.time_ns() - self.config.retention_ns)
        except Exception as exc:  # the queue's database away: the next round tries again
            log.warning(f"pruning the landing queue failed: {type(exc).__name__}: {exc}")
            return 0, 0
        if any(removed):
            log.info(f"pruned {removed[0]} queued versions and {removed[1]} claims")
        return removed

    def _version(self, key: str) -> LandingFile | None:
        """The object's current S3 version; None when it is gone (deleted again since)."""
        if not self.s3.exists(key):
            return None
        return self.s3.stat(key)

    def run(self) -> None:
        import grpc

        from tickhouse_dagster.storage.filer_events import subscribe

        backoff = BACKOFF_FIRST
        threading.Thread(target=self._watchdog, name="listener-watchdog", daemon=True).start()
        threading.Thread(target=self._pruner, name="listener-pruner", daemon=True).start()
        while not self.stopping.is_set():
            state = self.queue.state(self.config.name)
            since = state.since_ns if state else self.config.start_ns
            channel = grpc.insecure_channel(self.config.filer_grpc)
            try:
                log.info(f"subscribing to {self.config.filer_grpc} {self.root} since {since}")
                stream = subscribe(
                    channel,
                    self.root,
                    since,
                    client_name="tickhouse-landing-listener",
                    # The filer keys subscribers by id: a fixed id per listener name and a
                    # growing epoch make a reconnect replace the old stream on the filer
                    # instead of running beside it.
                    client_id=zlib.crc32(self.config.name.encode()) & 0x7FFFFFFF or 1,
                    client_epoch=self._epoch(),
                )
                self._current = stream
                # Listed after the stream is open: whatever changes from here on is an event.
                self._catch_up(since)
                with self.health.lock:
                    self.health.connected = True
                    self.health.since_ns = since
                self._consume(stream, since)
                # _consume returns only when asked to stop, or the stream ended cleanly
                backoff = BACKOFF_FIRST
            except grpc.RpcError as exc:
                if self.stopping.is_set():
                    break
                self._lost(f"filer stream: {exc.code().name}: {exc.details()}")
            except Exception as exc:  # S3 HEAD or queue failing: retry from the stored position
                self._lost(f"{type(exc).__name__}: {exc}")
            finally:
                self._current = None
                channel.close()
            if self.stopping.wait(backoff):
                break
            backoff = min(BACKOFF_MAX, backoff * 2)

    def _catch_up(self, since: int) -> int:
        """Queue the bucket's tick files changed since `since` that were never queued: the
        filer keeps the newest stretch of its change log in memory, so after it crashed the
        replay from the stored position lacks those events (the polling sensor's safety net
        would find the files too, but only at its next listing)."""
        floor = since - CATCH_UP_SLACK_NS
        listed = [
            (self.config.bucket, f, f.modified_ns)
            for f in self.s3.iter_files()
            if f.modified_ns >= floor
        ]
        added = self.queue.add_listed(listed)
        with self.health.lock:
            self.health.queued += added
        if added:
            log.info(f"queued {added} file version(s) the change stream never delivered")
        return added

    def _lost(self, reason: str) -> None:
        log.warning(f"{reason[:500]}; reconnecting from the stored position")
        with self.health.lock:
            self.health.connected = False
            self.health.reconnects += 1
            self.health.last_error = reason[:500]

    def _consume(self, stream: object, since: int) -> None:
        last_write = 0.0
        with self.health.lock:
            self.health.heard_monotonic = time.monotonic()  # the watchdog's clock starts now
        for event in stream:  # type: ignore[attr-defined]
            if self.stopping.is_set():
                stream.cancel()  # type: ignore[attr-defined]
                return
            now = time.monotonic()
            with self.health.lock:
                self.health.heard_monotonic = now
            if event.ts_ns <= 0:  # an empty frame of a heartbeat
                continue
            files = []
            if event.path and not event.is_directory and event.path.startswith(self.root):
                key = event.path[len(self.root) :]
                if is_tick_file(key):
                    version = self._version(key)
                    if version is not None:
                        files.append((self.config.bucket, version, event.ts_ns))
            if not files and event.heartbeat and now - last_write < HEARTBEAT_WRITE_SECONDS:
                continue
            # Deletions and heartbeats move the position too: a heartbeat means the filer has
            # sent everything before its time, so a restart need not replay that stretch.
            since = max(since, event.ts_ns)
            added = self.queue.record(
                self.config.name, since_ns=since, filer_ts_ns=event.ts_ns, files=files
            )
            last_write = now
            with self.health.lock:
                self.health.since_ns = since
                self.health.queued += added
                self.health.last_error = None
            for _, version, _ in files[:added]:
                log.info(f"queued {version.run_key}")

    def stop(self) -> None:
        self.stopping.set()
        stream = self._current
        if stream is not None:  # else the stream's next message (≤ 5 s) would be waited for
            stream.cancel()  # type: ignore[attr-defined]


def config_from_env(args: argparse.Namespace) -> ListenerConfig:
    settings = current()
    landing = args.landing_uri or settings.landing_uri
    parsed = urlparse(landing)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise SystemExit(
            f"the landing listener needs an s3:// landing (TICKHOUSE_LANDING_URI is {landing!r});"
            " a local folder or an S3 store without a SeaweedFS filer keeps the polling sensor"
        )
    filer = args.filer or settings.filer_grpc
    if not filer:
        raise SystemExit("set TICKHOUSE_FILER_GRPC (host:port of the SeaweedFS filer's gRPC)")
    return ListenerConfig(
        filer_grpc=filer,
        bucket=parsed.netloc,
        queue_url=settings.landing_queue_url,
        s3_endpoint=settings.s3_endpoint,
        region=settings.region,
        name=f"landing-listener:{parsed.netloc}",
        start_ns=0 if args.from_start else time.time_ns(),
        retention_ns=int(settings.landing_queue_retention_days * 86_400 * 1_000_000_000),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tickhouse listen", description=__doc__)
    parser.add_argument("--filer", help="filer gRPC host:port (default: TICKHOUSE_FILER_GRPC)")
    parser.add_argument("--landing-uri", help="s3://bucket/ (default: TICKHOUSE_LANDING_URI)")
    parser.add_argument("--host", default="127.0.0.1", help="health endpoint address")
    parser.add_argument("--port", type=int, default=current().listener_port)
    parser.add_argument(
        "--from-now",
        dest="from_start",
        action="store_false",
        help="with no stored position, start at now instead of replaying the filer's whole log",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    config = config_from_env(args)
    listener = Listener(config)
    queue = listener.queue.describe()
    log.info(f"listening: bucket {config.bucket!r}, filer {config.filer_grpc}, queue {queue}")
    server = serve_health(listener.health, args.host, args.port) if args.port else None
    if server:
        log.info(f"health at http://{args.host}:{server.server_address[1]}/healthz")
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: listener.stop())
    # The stream blocks in gRPC: run it in a thread so a signal can end the process promptly.
    worker = threading.Thread(target=listener.run, name="listener", daemon=True)
    worker.start()
    while worker.is_alive() and not listener.stopping.wait(0.5):
        pass
    log.info("landing listener stopping")
    if server:
        server.shutdown()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
