"""HTTP front end: URL routing, content negotiation, watch streaming, audit and faults.

Speaks HTTP/1.1 with keep-alive; watch responses are chunked, one JSON event per line, like
kube-apiserver's ``application/json`` watch stream.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
import traceback
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
import yaml

from kubeemu import discovery
from kubeemu.errors import (
    ApiError,
    bad_request,
    gone,
    method_not_allowed,
    no_such_resource,
    too_large_resource_version,
)
from kubeemu.faults import AuditRecord, Faults
from kubeemu.registry import Registry, ResourceType
from kubeemu.selectors import field_matcher, label_matcher
from kubeemu.store import Store, WatchEvent
from kubeemu.table import to_table

Obj = dict[str, Any]

_MUTATING = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass(eq=False)
class _WatchConn:
    sock: socket.socket
    dropped: bool = False


@dataclass
class ServerState:
    """What request handlers share."""

    store: Store
    registry: Registry
    faults: Faults
    bookmark_interval: float
    #: The watch cache sends a bookmark this long before a watch's timeout (cacheWatcher's
    #: ``nextBookmarkTime``: ``deadline - 2s``), so a client resumes from a fresh revision.
    bookmark_before_timeout: float = 2.0
    #: How long a request for a resourceVersion not reached yet waits before 504
    #: (the watch cache's ``waitUntilFreshAndBlock``: 3 s).
    fresh_wait: float = 3.0
    default_watch_timeout: float = 1800.0
    audit: list[AuditRecord] = field(default_factory=list)
    audit_lock: threading.Lock = field(default_factory=threading.Lock)
    watches: set[_WatchConn] = field(default_factory=set)
    watches_lock: threading.Lock = field(default_factory=threading.Lock)
    stopping: bool = False
    address: str = ""
    connections: set[socket.socket] = field(default_factory=set)

    def close_connections(self) -> None:
        """Shut every open client connection (keep-alive ones included) at stop."""
        with self.watches_lock:
            conns = list(self.connections)
        for sock in conns:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def drop_watches(self) -> int:
        with self.watches_lock:
            conns = list(self.watches)
        for c in conns:
            c.dropped = True
            with contextlib.suppress(OSError):
                c.sock.shutdown(socket.SHUT_RDWR)
        self.store.wake_watches()
        return len(conns)


@dataclass
class _Route:
    """A parsed resource URL."""

    rt: ResourceType
    namespace: str | None  # None: all namespaces (or cluster-scoped)
    name: str | None
    subresource: str


class EmulatorServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, addr: tuple[str, int], state: ServerState) -> None:
        self.state = state
        super().__init__(addr, Handler)


def _verb(method: str, route: _Route | None, watch: bool) -> str:
    if method == "GET":
        if route is not None and route.name is None:
            return "watch" if watch else "list"
        return "get"
    if method == "DELETE" and route is not None and route.name is None:
        return "deletecollection"
    return {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}.get(
        method, method.lower()
    )


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle's algorithm and
    # delayed ACKs add ~40 ms to every keep-alive request.
    disable_nagle_algorithm = True
    server: EmulatorServer

    def setup(self) -> None:
        super().setup()
        with self.server.state.watches_lock:
            self.server.state.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.state.watches_lock:
            self.server.state.connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silence per-request logging (the audit log records requests)."""

    # ---- plumbing ----------------------------------------------------------------------
    def _send(
        self, code: int, content_type: str, data: bytes, headers: dict[str, str] | None = None
    ) -> None:
        """Audit, then send a complete response (no body for HEAD)."""
        self._audit(code)
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = _dumps(body)
        self._send(
            code,
            "application/json",
            data,
            {"Cache-Control": "no-cache, private", **(headers or {})},
        )

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    def do_HEAD(self) -> None:
        self._handle()

    # ---- dispatch ----------------------------------------------------------------------
    def _handle(self) -> None:
        state = self.server.state
        raw = self._read_body() if self.command in _MUTATING else b""
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        parts = [p for p in url.path.split("/") if p]
        watch = params.get("watch") in ("1", "true")
        self._route_info: tuple[_Route | None, bool] = (None, watch)
        self._audited = False
        route: _Route | None = None
        code = 500
        try:
            if parts[:1] in (["api"], ["apis"]) and len(parts) >= 2 and "watch" in parts[2:4]:
                # legacy /api/v1/watch/... and /apis/g/v/watch/... paths
                idx = parts.index("watch", 2)
                parts = parts[:idx] + parts[idx + 1 :]
                watch = True
            route = self._route(parts)
            self._route_info = (route, watch)
            verb = _verb(self.command, route, watch)
            if route is not None:
                res = route.rt.plural + (f"/{route.subresource}" if route.subresource else "")
                state.faults.delay(verb, res)
                failure = state.faults.take(verb, res)
                if failure is not None:
                    raise ApiError(failure, f"injected failure ({failure}) for {verb} {res}")
                code = self._resource(route, verb, params, raw)
            else:
                code = self._non_resource(parts)
        except ApiError as err:
            code = err.code
            if self._audited:  # the answer has started (a watch): nothing more can be sent
                return
            headers = {"Retry-After": "1"} if err.code == 429 else None
            self._send_json(err.code, err.status(), headers)
        except Exception as exc:
            code = 500
            traceback.print_exc()
            if self._audited:
                return
            self._send_json(500, ApiError(500, f"internal error: {exc!r}").status())
        finally:
            self._audit(code)

    def _audit(self, code: int) -> None:
        """Append this request to the audit log (once, before the answer is written)."""
        if self._audited:
            return
        self._audited = True
        route, watch = self._route_info
        state = self.server.state
        path = urlsplit(self.path).path
        if route is None:
            rec = AuditRecord(
                self.command.lower(),
                "",
                "",
                "",
                "",
                "",
                "",
                code,
                path,
                self.headers.get("User-Agent", ""),
            )
        else:
            rec = AuditRecord(
                verb=_verb(self.command, route, watch),
                api_group=route.rt.group,
                api_version=route.rt.version,
                resource=route.rt.plural,
                subresource=route.subresource,
                namespace=route.namespace or "",
                name=route.name or "",
                code=code,
                path=path,
                user_agent=self.headers.get("User-Agent", ""),
            )
        with state.audit_lock:
            state.audit.append(rec)

    def _route(self, parts: list[str]) -> _Route | None:
        """A resource route, or None for discovery and other non-resource paths."""
        registry = self.server.state.registry
        if parts[:2] == ["api", "v1"]:
            group, version, rest = "", "v1", parts[2:]
        elif parts[:1] == ["apis"] and len(parts) >= 3:
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            return None
        if not rest:
            return None
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
        sub = rest[2] if len(rest) > 2 else ""
        if len(rest) > 3:
            raise no_such_resource()
        rt = registry.lookup(group, version, plural)
        if rt is None:
            raise no_such_resource(details={})
        if namespace is not None and not rt.namespaced:
            raise no_such_resource()
        if rt.namespaced and namespace is None and name is not None:
            raise no_such_resource()
        if sub and not (
            (sub == "status" and rt.status_subresource)
            or (sub == "scale" and rt.scale is not None)
            or (sub == "finalize" and rt.kind == "Namespace")
        ):
            raise no_such_resource()
        return _Route(rt, namespace, name, sub)

    def _non_resource(self, parts: list[str]) -> int:
        state = self.server.state
        if self.command not in ("GET", "HEAD"):
            raise method_not_allowed()
        path = "/" + "/".join(parts)
        doc: Obj | None = None
        if path in ("/healthz", "/readyz", "/livez"):
            self._send(200, "text/plain; charset=utf-8", b"ok")
            return 200
        if path == "/openapi/v2":
            # An empty protobuf OpenAPI v2 Document: kubectl then skips client-side schema
            # validation (nothing is published) and the server validates, as with CRDs.
            self._send(200, "application/com.github.proto-openapi.spec.v2.v1.0+protobuf", b"")
            return 200
        if path == "/version":
            doc = dict(discovery.VERSION_INFO)
        elif path == "/api":
            doc = discovery.api_versions(state.address)
        elif path == "/apis":
            doc = discovery.api_group_list(state.registry)
        elif parts[:1] == ["apis"] and len(parts) == 2:
            doc = discovery.api_group(state.registry, parts[1])
        elif parts == ["api", "v1"]:
            doc = discovery.api_resource_list(state.registry, "", "v1")
        elif parts[:1] == ["apis"] and len(parts) == 3:
            doc = discovery.api_resource_list(state.registry, parts[1], parts[2])
        if doc is None:
            raise no_such_resource()
        self._send_json(200, doc)
        return 200

    # ---- resources ---------------------------------------------------------------------
    def _body(self, raw: bytes, content_type: str) -> Any:
        if not raw:
            raise bad_request("the body of the request is empty")
        if "protobuf" in content_type or "cbor" in content_type:
            raise ApiError(
                415,
                "the body of the request was in an unknown format - accepted "
                "media types include: application/json, application/yaml",
            )
        try:
            if "yaml" in content_type:
                return yaml.load(raw, Loader=yaml.CSafeLoader)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the body of the request could not be decoded: {exc}") from None

    def _resource(self, route: _Route, verb: str, params: dict[str, str], raw: bytes) -> int:
        state = self.server.state
        store = state.store
        rt = route.rt
        ns = route.namespace or ""
        dry = params.get("dryRun") == "All"
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        if verb in ("list", "watch", "deletecollection"):
            matcher = _matcher(rt, params)
        if verb == "watch":
            return self._watch(route, params, matcher)
        if verb == "list":
            self._wait_fresh(params.get("resourceVersion", ""))
            limit = int(params["limit"]) if params.get("limit", "").isdigit() else None
            listed = store.list_objects(
                rt,
                route.namespace,
                matcher,
                limit=limit or None,
                continue_token=params.get("continue") or None,
            )
            return self._answer(200, rt, listed, is_list=True, params=params)
        if verb in ("delete", "deletecollection"):
            opts = _delete_options(raw, params)
        if verb == "deletecollection":
            # DeleteCollection: every matching object deleted as a DELETE of it would be;
            # the answer lists them (those held by finalizers with their deletionTimestamp).
            listed = store.list_objects(rt, route.namespace, matcher)
            deleted = []
            for item in listed["items"]:
                try:
                    obj, _ = store.delete(
                        rt,
                        item["metadata"].get("namespace", ""),
                        item["metadata"]["name"],
                        propagation=opts.get("propagationPolicy"),
                        dry_run=dry or (opts.get("dryRun") == ["All"]),
                    )
                except ApiError as err:
                    if err.code == 404:  # gone meanwhile
                        continue
                    raise
                deleted.append(obj)
            listed["items"] = deleted
            return self._answer(200, rt, listed, raw_doc=True)
        if route.name is None and verb != "create":
            raise method_not_allowed()
        name = route.name or ""
        if route.subresource == "scale":
            if verb == "get":
                return self._answer(200, rt, store.get_scale(rt, ns, name), raw_doc=True)
            if verb in ("update", "patch"):
                body = self._body(raw, ctype)
                scale = store.update_scale(
                    rt, ns, name, body, content_type=ctype if verb == "patch" else None
                )
                return self._answer(200, rt, scale, raw_doc=True)
            raise method_not_allowed()
        sub = route.subresource or None
        if verb == "get":
            return self._answer(200, rt, store.get(rt, ns, name), params=params)
        if verb == "create":
            if route.name is not None:
                raise method_not_allowed()
            obj = store.create(rt, ns, self._body(raw, ctype), dry_run=dry)
            return self._answer(201, rt, obj)
        if verb == "update":
            obj = store.update(rt, ns, name, self._body(raw, ctype), subresource=sub, dry_run=dry)
            return self._answer(200, rt, obj)
        if verb == "patch":
            obj = store.patch(
                rt, ns, name, ctype, self._body(raw, ctype), subresource=sub, dry_run=dry
            )
            return self._answer(200, rt, obj)
        if verb == "delete":
            pre = opts.get("preconditions") or {}
            propagation = opts.get("propagationPolicy")
            obj, gone_now = store.delete(
                rt,
                ns,
                name,
                propagation=propagation,
                precondition_rv=pre.get("resourceVersion"),
                precondition_uid=pre.get("uid"),
                dry_run=dry or (opts.get("dryRun") == ["All"]),
            )
            if gone_now:
                return self._answer(
                    200,
                    rt,
                    {
                        "kind": "Status",
                        "apiVersion": "v1",
                        "metadata": {},
                        "status": "Success",
                        "details": {
                            "name": name,
                            "group": rt.group,
                            "kind": rt.plural,
                            "uid": obj["metadata"]["uid"],
                        },
                    },
                    raw_doc=True,
                )
            return self._answer(200, rt, obj)
        raise method_not_allowed()

    def _answer(
        self,
        code: int,
        rt: ResourceType,
        doc: Obj,
        *,
        is_list: bool = False,
        params: dict[str, str] | None = None,
        raw_doc: bool = False,
    ) -> int:
        accept = self.headers.get("Accept") or ""
        if not raw_doc and "as=Table" in accept and self.command == "GET":
            include = (params or {}).get("includeObject", "Metadata")
            items = doc["items"] if is_list else [doc]
            meta = (
                doc["metadata"]
                if is_list
                else {"resourceVersion": doc["metadata"]["resourceVersion"]}
            )
            doc = to_table(rt, items, dict(meta), include)
        self._send_json(code, doc)
        return code

    # ---- watch -------------------------------------------------------------------------
    def _wait_fresh(self, rv_param: str) -> None:
        """A resourceVersion ahead of the store: wait ``fresh_wait`` seconds for it, then 504
        "Too large resource version" (as kube-apiserver's watch cache)."""
        if not rv_param.isdigit():
            return
        store = self.server.state.store
        if not store.wait_for_revision(int(rv_param), self.server.state.fresh_wait):
            raise too_large_resource_version(int(rv_param), store.resource_version)

    def _next_bookmark(self, now: float, deadline: float) -> float | None:
        """cacheWatcher.nextBookmarkTime: every ``bookmark_interval``, but no later than
        ``bookmark_before_timeout`` before the deadline; None once that moment has passed."""
        state = self.server.state
        when = min(now + state.bookmark_interval, deadline - state.bookmark_before_timeout)
        return when if when > now else None

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _watch(self, route: _Route, params: dict[str, str], matcher: Any) -> int:
        state = self.server.state
        store = state.store
        rt = route.rt
        rv_param = params.get("resourceVersion", "")
        send_initial = params.get("sendInitialEvents") == "true"
        bookmarks = params.get("allowWatchBookmarks") in ("true", "1")
        try:
            timeout = (
                float(params["timeoutSeconds"])
                if params.get("timeoutSeconds")
                else (state.default_watch_timeout)
            )
        except ValueError:
            raise bad_request("invalid timeoutSeconds") from None
        cursor = 0
        if rv_param not in ("", "0") and not send_initial:
            if not rv_param.isdigit():
                raise bad_request(f'invalid resource version: "{rv_param}"')
            cursor = int(rv_param)
        self._wait_fresh(rv_param)
        deadline = time.monotonic() + timeout
        self._audit(200)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.close_connection = True
        conn = _WatchConn(self.connection)
        with state.watches_lock:
            state.watches.add(conn)
        key = rt.store_key

        as_table = "as=Table" in (self.headers.get("Accept") or "")
        include = params.get("includeObject", "Metadata")

        def line(type_: str, obj: Obj) -> bytes:
            shown: Obj = {**obj, "apiVersion": rt.api_version, "kind": rt.kind}
            if as_table:  # kubectl get --watch asks for Table-shaped events
                rv = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                shown = to_table(rt, [shown], rv, include)
            return _event_line(type_, shown)

        def bookmark(rv: int, initial_end: bool = False) -> bytes:
            meta: Obj = {"resourceVersion": str(rv), "creationTimestamp": None}
            if initial_end:
                meta["annotations"] = {"k8s.io/initial-events-end": "true"}
            return _event_line(
                "BOOKMARK", {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": meta}
            )

        try:
            if rv_param in ("", "0") or send_initial:
                objs, cursor = store.snapshot(rt, route.namespace)
                batch = b"".join(line("ADDED", o) for o in objs if matcher(o))
                if send_initial and bookmarks:
                    batch += bookmark(cursor, initial_end=True)
                if batch:
                    self._write_chunk(batch)
            next_bookmark = self._next_bookmark(time.monotonic(), deadline)
            changed = store.kind_changed(key)
            while not conn.dropped and not state.stopping:
                now = time.monotonic()
                if now >= deadline:
                    break
                with changed:
                    events = store.events_after(cursor)
                    if events is not None and not events:
                        wait = deadline - now
                        if bookmarks and next_bookmark is not None:
                            wait = min(wait, next_bookmark - now)
                        changed.wait(timeout=max(0.0, min(wait, 1.0)))
                        events = store.events_after(cursor)
                if events is None:
                    err = gone(f"too old resource version: {cursor} ({store.compacted_rv + 1})")
                    self._write_chunk(_event_line("ERROR", err.status()))
                    break
                if conn.dropped:
                    break
                batch = b""
                for ev in events:
                    if ev.store_key != key:
                        continue
                    if (
                        route.namespace is not None
                        and ev.obj["metadata"].get("namespace") != route.namespace
                    ):
                        continue
                    type_ = _filtered_type(ev, matcher)
                    if type_ is not None:
                        batch += line(type_, ev.obj)
                if events:
                    cursor = events[-1].rv
                if bookmarks and next_bookmark is not None and time.monotonic() >= next_bookmark:
                    batch += bookmark(cursor)
                    next_bookmark = self._next_bookmark(time.monotonic(), deadline)
                if batch:
                    self._write_chunk(batch)
            if not conn.dropped:
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            pass
        finally:
            with state.watches_lock:
                state.watches.discard(conn)
        return 200


def _delete_options(raw: bytes, params: dict[str, str]) -> Obj:
    """DeleteOptions from the body, ``propagationPolicy`` also from the query."""
    opts: Obj = {}
    if raw:
        try:
            opts = json.loads(raw) or {}
        except ValueError:
            raise bad_request("invalid DeleteOptions") from None
        if not isinstance(opts, dict):
            raise bad_request("invalid DeleteOptions")
    if not opts.get("propagationPolicy") and params.get("propagationPolicy"):
        opts["propagationPolicy"] = params["propagationPolicy"]
    return opts


def _event_line(type_: str, obj: Obj) -> bytes:
    """One event of the JSON watch stream (a line)."""
    return _dumps({"type": type_, "object": obj}) + b"\n"


_STRICT = (
    orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)


def _dumps(value: Any) -> bytes:
    """Compact JSON. orjson (several times faster than the json module: the encoding of every
    answer and watch event was a share of the emulator's CPU) for what it takes as the json
    module would; the rest (keys that are not strings, integers past 64 bits, subclasses)
    through the json module, as before. Both send the same values (orjson writes non-ASCII
    text as UTF-8, as kube-apiserver does, not as escapes)."""
    try:
        return orjson.dumps(value, option=_STRICT)
    except TypeError:
        return json.dumps(value, separators=(",", ":")).encode()


def _filtered_type(ev: WatchEvent, matcher: Any) -> str | None:
    """The event type a selector-filtered watch sees: an object that starts matching is
    ADDED, one that stops matching is DELETED (kube-apiserver's watch cache does the same)."""
    now = bool(matcher(ev.obj))
    if ev.type != "MODIFIED" or ev.prev is None:
        return ev.type if now else None
    before = bool(matcher(ev.prev))
    if now and before:
        return "MODIFIED"
    if now:
        return "ADDED"
    if before:
        return "DELETED"
    return None


def _matcher(rt: ResourceType, params: dict[str, str]) -> Any:
    labels = label_matcher(params.get("labelSelector"))
    fields = field_matcher(params.get("fieldSelector"), rt.field_labels)
    return lambda o: labels(o) and fields(o)
