"""SeaweedFS's filer change stream: the `SubscribeMetadata` gRPC call, read with grpcio.

Only the messages the listener reads are declared, with the field numbers of
`weed/pb/filer.proto` (seaweedfs 4.x); protobuf skips every field not declared here, so the
chunk lists, remote entries and the rest of the schema cost nothing and need no generated code
(no protoc / grpcio-tools at build time). The descriptor is built once, at import.

A subscription starts at `since_ns` (the filer replays its persisted metadata log from there,
then streams live events) and, with `client_supports_idle_heartbeat`, the filer sends an empty
response carrying its current time while the client is caught up: that is how the listener
knows its lag when nothing lands.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto
_FIELDS: dict[str, list[tuple[str, int, int, str | None, bool]]] = {
    # message: (field, number, type, message type name, repeated)
    "FuseAttributes": [
        ("file_size", 1, _F.TYPE_UINT64, None, False),
        ("mtime", 2, _F.TYPE_INT64, None, False),
        ("mtime_ns", 19, _F.TYPE_INT32, None, False),
    ],
    "Entry": [
        ("name", 1, _F.TYPE_STRING, None, False),
        ("is_directory", 2, _F.TYPE_BOOL, None, False),
        ("attributes", 4, _F.TYPE_MESSAGE, "FuseAttributes", False),
    ],
    "EventNotification": [
        ("old_entry", 1, _F.TYPE_MESSAGE, "Entry", False),
        ("new_entry", 2, _F.TYPE_MESSAGE, "Entry", False),
        ("new_parent_path", 4, _F.TYPE_STRING, None, False),
    ],
    "SubscribeMetadataRequest": [
        ("client_name", 1, _F.TYPE_STRING, None, False),
        ("path_prefix", 2, _F.TYPE_STRING, None, False),
        ("since_ns", 3, _F.TYPE_INT64, None, False),
        ("signature", 4, _F.TYPE_INT32, None, False),
        ("client_id", 7, _F.TYPE_INT32, None, False),
        ("until_ns", 8, _F.TYPE_INT64, None, False),
        ("client_epoch", 9, _F.TYPE_INT32, None, False),
        ("client_supports_batching", 11, _F.TYPE_BOOL, None, False),
        ("client_supports_idle_heartbeat", 13, _F.TYPE_BOOL, None, False),
    ],
    "SubscribeMetadataResponse": [
        ("directory", 1, _F.TYPE_STRING, None, False),
        ("event_notification", 2, _F.TYPE_MESSAGE, "EventNotification", False),
        ("ts_ns", 3, _F.TYPE_INT64, None, False),
        ("events", 4, _F.TYPE_MESSAGE, "SubscribeMetadataResponse", True),
    ],
}
_PACKAGE = "filer_pb"  # the real package: the method path below must match the server's
SUBSCRIBE_METHOD = f"/{_PACKAGE}.SeaweedFiler/SubscribeMetadata"


def _messages() -> dict[str, Any]:
    proto = descriptor_pb2.FileDescriptorProto(
        name="tickhouse_filer_subset.proto", package=_PACKAGE, syntax="proto3"
    )
    for message, fields in _FIELDS.items():
        described = proto.message_type.add(name=message)
        for name, number, kind, type_name, repeated in fields:
            field = described.field.add(name=name, number=number, type=kind)
            field.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
            if type_name:
                field.type_name = f".{_PACKAGE}.{type_name}"
    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    return {
        m: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{_PACKAGE}.{m}"))
        for m in _FIELDS
    }


_MESSAGES = _messages()
SubscribeMetadataRequest = _MESSAGES["SubscribeMetadataRequest"]
SubscribeMetadataResponse = _MESSAGES["SubscribeMetadataResponse"]


@dataclass(frozen=True)
class FilerEvent:
    """One metadata change; `path` is the entry's full path after the change, None for a
    deletion or a heartbeat."""

    ts_ns: int
    path: str | None
    is_directory: bool = False

    @property
    def heartbeat(self) -> bool:
        return self.path is None


def _events(response: Any) -> Iterator[FilerEvent]:
    # A catching-up filer packs further events into `events` (batching); each carries its own
    # directory and timestamp.
    for one in [response, *response.events]:
        note = one.event_notification
        if not note.HasField("new_entry"):  # deletion, or an idle heartbeat
            yield FilerEvent(one.ts_ns, None)
            continue
        parent = note.new_parent_path or one.directory
        yield FilerEvent(
            one.ts_ns, f"{parent.rstrip('/')}/{note.new_entry.name}", note.new_entry.is_directory
        )


def subscribe(
    channel: grpc.Channel,
    path_prefix: str,
    since_ns: int,
    *,
    client_name: str,
    client_id: int,
    client_epoch: int,
) -> _Stream:
    """Events under `path_prefix` from `since_ns` on, live, until the stream breaks (the caller
    reconnects from the last timestamp it persisted)."""
    # The message classes are built at import from the descriptor above: no static types.
    call: grpc.UnaryStreamMultiCallable[Any, Any]
    call = channel.unary_stream(
        SUBSCRIBE_METHOD,
        request_serializer=lambda m: m.SerializeToString(),
        response_deserializer=SubscribeMetadataResponse.FromString,
    )
    request = SubscribeMetadataRequest(
        client_name=client_name,
        path_prefix=path_prefix,
        since_ns=since_ns,
        client_id=client_id,
        client_epoch=client_epoch,
        client_supports_batching=True,
        client_supports_idle_heartbeat=True,
    )
    stream = call(request)
    return _Stream(stream)


class _Stream:
    """The response stream as FilerEvents; `cancel()` ends it from another thread."""

    def __init__(self, call: Any) -> None:
        self._call = call

    def cancel(self) -> None:
        self._call.cancel()

    def __iter__(self) -> Iterator[FilerEvent]:
        for response in self._call:
            yield from _events(response)
