"""A loopback stand-in for a CVAT server: the routes cvat-cli's agent and `function create-native` call, and
the one upload cvat-sdk's `annotate_task` (`cvat-cli task auto-annotate`) makes.

Built from CVAT's published API. The task, label and data routes and their JSON follow CVAT's OpenAPI schema
(`cvat/schema.yml` in cvat-ai/cvat, as generated into cvat-sdk 2.80's `cvat_sdk.api_client`: `About`,
`TaskRead`, `PaginatedLabelList` of `Label`, `DataMetaRead` of `FrameMeta`, `PatchedLabeledDataRequest`). The
function and queue routes (`/api/functions...`) are not in that schema: native functions are a CVAT
Enterprise/Cloud feature whose server is not public, so they follow what cvat-cli 2.80 sends and reads
(`cvat_cli/_internal/commands_functions.py`, `agent.py`, `agent_driver*.py`).

| route | caller | answer |
| --- | --- | --- |
| `GET /api/server/about` | every cvat-cli command | `About` (version 2.80.0) |
| `POST /api/functions` | `create-native` | the function with its `id` (201) |
| `GET /api/functions/{id}` | the agent, at start | the function |
| `GET /api/functions/queues/function:{id}/watch` | the agent's watcher (not `--burst`) | an event stream |
| `POST /api/functions/queues/function:{id}/requests/acquire` | the agent | `{"ar_assignment": {...} or null}` |
| `POST .../requests/{ar_id}/update`, `/complete`, `/fail` | the agent | `{}` |
| `GET /api/tasks/{id}` | `TaskDataset` | `TaskRead` |
| `GET /api/labels?task_id=...` | `TaskDataset` | `PaginatedLabelList` |
| `GET /api/tasks/{id}/data/meta` | `TaskDataset` | `DataMetaRead` |
| `GET /api/tasks/{id}/data/?type=chunk&number=N&quality=original` (or `type=frame`) | `TaskDataset` | a zip of frames, or one frame |
| `PATCH /api/tasks/{id}/annotations/?action=create` | `annotate_task` | an empty `LabeledData` (the upload is kept) |

Every route wants `Authorization: Bearer <token>` (how the SDK sends a personal access token). Where the
client does not tell what CVAT's server does, this stand-in chooses, and says so: a function's labels and
sublabels read back with `type: "unknown"` when `create-native` sent none; an interactor reads back
`min_neg_points: -1` when it allows no negative points (the agent reads a negative number so); an annotation
request goes to the agent that acquired it and to no other (another agent's `update`, `complete` or `fail`
answers 409); requests are handed out first come, first served within their category; `annotate_task` requests
are in the `batch` category, the others `interactive`.
"""

from __future__ import annotations

import io
import itertools
import json
import os
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from PIL import Image

VERSION = "2.80.0"
JSON = "application/vnd.cvat+json"
CLI = str(Path(sys.executable).with_name("cvat-cli"))


def attribute(name: str, id: int, input_type: str, values: Sequence[str] = ()) -> dict[str, Any]:
    """A label attribute as CVAT's `Attribute` schema has it."""
    return {"id": id, "name": name, "mutable": False, "input_type": input_type,
            "default_value": values[0] if values else "", "values": list(values)}


def label(name: str, id: int, type: str, *, attributes: Iterable[dict] = (),
          sublabels: Iterable[dict] = ()) -> dict[str, Any]:
    """A task label as CVAT's `Label` schema has it."""
    return {"id": id, "name": name, "color": "#33ddff", "type": type, "attributes": list(attributes),
            "sublabels": list(sublabels), "has_parent": False, "project_id": None, "parent_id": None}


def sublabel(name: str, id: int, attributes: Iterable[dict] = ()) -> dict[str, Any]:
    """A skeleton's node as CVAT's `Sublabel` schema has it: a label of type `points`."""
    return {"id": id, "name": name, "color": "#ff3333", "type": "points", "attributes": list(attributes),
            "has_parent": True}


def task_labels_of(spec: Any, first_id: int = 100) -> list[dict[str, Any]]:
    """The labels a CVAT user would give a task for a function's `DetectionFunctionSpec`: the same names, types,
    attributes and skeleton nodes, in the reverse order and under ids of the task's own."""
    ids = itertools.count(first_id)

    def attributes(of: Any) -> list[dict[str, Any]]:
        return [attribute(a.name, next(ids), a.input_type.value,
                          ["false"] if a.input_type.value == "checkbox" else a.values)
                for a in reversed(getattr(of, "attributes", []))]

    return [label(lb.name, next(ids), lb.type, attributes=attributes(lb),
                  sublabels=[sublabel(node.name, next(ids), attributes(node))
                             for node in reversed(getattr(lb, "sublabels", []))])
            for lb in reversed(spec.labels)]


@dataclass
class Frame:
    name: str
    data: bytes
    width: int
    height: int
    content_type: str


@dataclass
class Task:
    id: int
    name: str
    frames: list[Frame]
    labels: list[dict[str, Any]]
    chunk_size: int
    updated: str

    def chunk(self, number: int) -> bytes:
        """Frames [number * chunk_size, ...) in a zip, in frame order (the SDK reads member i as frame i)."""
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w") as archive:
            for index, frame in enumerate(self.frames[number * self.chunk_size:(number + 1) * self.chunk_size]):
                archive.writestr(f"{number * self.chunk_size + index:06d}_{frame.name}", frame.data)
        return buffer.getvalue()


@dataclass
class AnnotationRequest:
    """One annotation request (AR) in a function's queue, and what became of it."""

    id: str
    function: int
    category: str
    params: dict[str, Any]
    state: str = "queued"  # queued -> acquired -> completed | failed
    agent: str | None = None
    progress: list[float] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: str | None = None


class _Unauthorized(Exception):
    pass


class _Answer(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(status)
        self.status, self.body = status, body


class CvatStandIn:
    """A CVAT server on a free loopback port, holding tasks and functions; use as a context manager."""

    def __init__(self, token: str = "stand-in-token") -> None:
        self.token = token
        self.tasks: dict[int, Task] = {}
        self.functions: dict[int, dict[str, Any]] = {}
        self.requests: dict[str, AnnotationRequest] = {}
        self.uploads: dict[int, list[dict[str, Any]]] = {}
        """`annotate_task` uploads, per task."""
        self.calls: list[str] = []
        """Every request as `METHOD /path?query`, in order."""
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._events: list[tuple[int, str]] = []  # (function id, category) notifications for the watchers
        self._watchers = 0
        self._stopping = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> CvatStandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    # --- what a test sets up and reads ------------------------------------------------------------------------

    def add_task(self, name: str, frames: Sequence[tuple[str, bytes]], labels: Sequence[dict[str, Any]],
                 chunk_size: int = 2) -> int:
        """A task of image frames (file name, encoded bytes); a frame that is no image keeps size 1x1."""
        task_id = next(self._ids)
        held = []
        for frame_name, data in frames:
            try:
                image = Image.open(io.BytesIO(data))
                (width, height), content_type = image.size, image.get_format_mimetype()
            except OSError:
                width, height, content_type = 1, 1, "application/octet-stream"
            held.append(Frame(frame_name, data, width, height, content_type))
        self.tasks[task_id] = Task(task_id, name, held, [dict(lb, task_id=task_id) for lb in labels], chunk_size,
                                   _now())
        return task_id

    def queue(self, function_id: int, params: dict[str, Any], category: str | None = None) -> str:
        """Queue an annotation request and notify the function's watchers; its id."""
        category = category or ("batch" if params["type"] == "annotate_task" else "interactive")
        with self._lock:
            request = AnnotationRequest(f"ar-{next(self._ids)}", function_id, category, params)
            self.requests[request.id] = request
            self._events.append((function_id, category))
            self._lock.notify_all()
        return request.id

    def detection(self, function_id: int, task_id: int, frame: int | None = None, *,
                  mapping: dict[str, Any] | None = None, threshold: float | None = None,
                  conv_mask_to_poly: bool = False) -> str:
        """Queue `annotate_task` (no frame) or `annotate_frame`; the mapping defaults to the function's labels
        that the task has, by name (what CVAT's dialog proposes)."""
        if mapping is None:
            names = {lb["name"] for lb in self.tasks[task_id].labels}
            mapping = {lb["name"]: {"name": lb["name"]} for lb in self.functions[function_id].get("labels_v2", [])
                       if lb["name"] in names}
        params = {"type": "annotate_task" if frame is None else "annotate_frame", "task": task_id,
                  "mapping": mapping, "threshold": threshold, "conv_mask_to_poly": conv_mask_to_poly}
        if frame is not None:
            params["frame"] = frame
        return self.queue(function_id, params)

    def watchers(self) -> int:
        with self._lock:
            return self._watchers

    def settled(self) -> bool:
        """Whether every queued request was completed or failed."""
        with self._lock:
            return all(request.state in ("completed", "failed") for request in self.requests.values())

    # --- the server -------------------------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_PATCH(self) -> None:
                self._serve("PATCH")

            def _serve(self, method: str) -> None:
                url = urlsplit(self.path)
                path = unquote(url.path)
                stand_in.calls.append(f"{method} {path}" + (f"?{unquote(url.query)}" if url.query else ""))
                query = {key: values[-1] for key, values in parse_qs(url.query).items()}
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                try:
                    if self.headers.get("Authorization") != f"Bearer {stand_in.token}":
                        raise _Unauthorized
                    stand_in._route(self, method, path.rstrip("/").split("/")[1:], query, body)
                except _Unauthorized:
                    self.send(401, {"detail": "Authentication credentials were not provided."})
                except _Answer as answer:
                    self.send(answer.status, answer.body)

            def send(self, status: int, body: Any, content_type: str = JSON) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def _route(self, handler: Any, method: str, parts: list[str], query: dict[str, str], body: Any) -> None:
        match method, parts:
            case "GET", ["api", "server", "about"]:
                handler.send(200, {"name": "Computer Vision Annotation Tool", "description": "stand-in",
                                   "version": VERSION, "logo_url": "", "subtitle": ""})
            case "POST", ["api", "functions"]:
                handler.send(201, self._create_function(body))
            case "GET", ["api", "functions", function_id]:
                handler.send(200, self._function(function_id))
            case "GET", ["api", "functions", "queues", queue, "watch"]:
                self._watch(handler, self._queue_function(queue))
            case "POST", ["api", "functions", "queues", queue, "requests", "acquire"]:
                handler.send(200, {"ar_assignment": self._acquire(self._queue_function(queue), body)})
            case "POST", ["api", "functions", "queues", queue, "requests", ar_id, action]:
                self._settle(self._queue_function(queue), ar_id, action, body)
                handler.send(200, {})
            case "GET", ["api", "tasks", task_id]:
                handler.send(200, self._task_json(self._task(task_id)))
            case "GET", ["api", "labels"]:
                labels = self._task(query.get("task_id", "")).labels
                handler.send(200, {"count": len(labels), "next": None, "previous": None, "results": labels})
            case "GET", ["api", "tasks", task_id, "data", "meta"]:
                handler.send(200, self._meta(self._task(task_id)))
            case "GET", ["api", "tasks", task_id, "data"]:
                task, number = self._task(task_id), int(query.get("number", "0"))
                if query.get("type") == "chunk" and 0 <= number * task.chunk_size < len(task.frames):
                    handler.send(200, task.chunk(number), "application/zip")
                elif query.get("type") == "frame" and 0 <= number < len(task.frames):
                    handler.send(200, task.frames[number].data, task.frames[number].content_type)
                else:
                    raise _Answer(400, {"detail": f"no {query.get('type')} {number} in task {task.id}"})
            case "PATCH", ["api", "tasks", task_id, "annotations"] if query.get("action") == "create":
                self.uploads.setdefault(self._task(task_id).id, []).append(body)
                handler.send(200, {"version": 0, "tags": [], "shapes": [], "tracks": []})
            case _:
                raise _Answer(404 if method == "GET" else 405, {"detail": f"no route {method} /{'/'.join(parts)}"})

    def _task(self, task_id: str) -> Task:
        task = self.tasks.get(int(task_id)) if task_id.isdecimal() else None
        if task is None:
            raise _Answer(404, {"detail": f"no task {task_id}"})
        return task

    def _task_json(self, task: Task) -> dict[str, Any]:
        return {
            "id": task.id, "name": task.name, "url": f"{self.url}/api/tasks/{task.id}", "project_id": None,
            "mode": "annotation", "dimension": "2d", "status": "annotation", "subset": "", "organization": None,
            "size": len(task.frames), "data_chunk_size": task.chunk_size, "image_quality": 70,
            "data_original_chunk_type": "imageset", "data_compressed_chunk_type": "imageset",
            "created_date": task.updated, "updated_date": task.updated, "overlap": 0, "segment_size": 0,
            "jobs": {"count": 1, "completed": 0, "validation": 0, "url": f"{self.url}/api/jobs?task_id={task.id}"},
            "labels": {"url": f"{self.url}/api/labels?task_id={task.id}"},
        }

    def _meta(self, task: Task) -> dict[str, Any]:
        return {
            "chunks_updated_date": task.updated, "chunk_size": task.chunk_size, "size": len(task.frames),
            "image_quality": 70, "start_frame": 0, "stop_frame": len(task.frames) - 1, "frame_filter": "",
            "deleted_frames": [], "included_frames": None, "storage": "local", "cloud_storage_id": None,
            "frames": [{"name": f.name, "width": f.width, "height": f.height, "related_files": 0,
                        "has_related_context": False} for f in task.frames],
        }

    def _create_function(self, body: dict[str, Any]) -> dict[str, Any]:
        if body.get("provider") != "native" or body.get("kind") not in ("detector", "interactor", "tracker"):
            raise _Answer(400, {"detail": "provider must be 'native', kind detector, interactor or tracker"})
        function = {**body, "id": next(self._ids), "created_date": _now()}
        for lb in function.get("labels_v2", []):
            for sub in (lb, *lb.get("sublabels", [])):
                sub.setdefault("type", "unknown")
        if function["kind"] == "interactor":
            function.setdefault("min_neg_points", -1)
            function.setdefault("startswith_box", False)
            function.setdefault("startswith_box_optional", False)
        self.functions[function["id"]] = function
        return function

    def _function(self, function_id: str) -> dict[str, Any]:
        function = self.functions.get(int(function_id)) if function_id.isdecimal() else None
        if function is None:
            raise _Answer(404, {"detail": f"no function {function_id}"})
        return function

    def _queue_function(self, queue: str) -> int:
        kind, _, function_id = queue.partition(":")
        if kind != "function":
            raise _Answer(404, {"detail": f"no queue {queue}"})
        return self._function(function_id)["id"]

    def _acquire(self, function_id: int, body: dict[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            for request in self.requests.values():
                if (request.function, request.category, request.state) == (function_id, body["request_category"],
                                                                           "queued"):
                    request.state, request.agent = "acquired", body["agent_id"]
                    return {"ar_id": request.id, "ar_params": request.params}
        return None

    def _settle(self, function_id: int, ar_id: str, action: str, body: dict[str, Any]) -> None:
        with self._lock:
            request = self.requests.get(ar_id)
            if request is None or request.function != function_id or action not in ("update", "complete", "fail"):
                raise _Answer(404, {"detail": f"no request {ar_id}/{action}"})
            if request.state != "acquired" or request.agent != body.get("agent_id"):
                raise _Answer(409, {"detail": f"request {ar_id} is {request.state}, not held by this agent"})
            if action == "update":
                request.progress.append(body["progress"])
            elif action == "complete":
                request.state, request.result = "completed", {k: v for k, v in body.items() if k != "agent_id"}
            else:
                request.state, request.error = "failed", body["exc_info"]

    def _watch(self, handler: Any, function_id: int) -> None:
        """A `text/event-stream` of `newrequest` events for this function, until the server stops."""
        handler.send_response(200)
        handler.send_header("Content-Type", "text/event-stream")
        handler.end_headers()
        with self._lock:
            self._watchers += 1
            seen = len(self._events)
        try:
            handler.wfile.write(b"retry: 1000\n")
            handler.wfile.flush()
            while True:
                with self._lock:
                    self._lock.wait_for(lambda: self._stopping or len(self._events) > seen)
                    if self._stopping:
                        return
                    fresh, seen = self._events[seen:], len(self._events)
                for event_function, category in fresh:
                    if event_function == function_id:
                        data = json.dumps({"request_category": category})
                        handler.wfile.write(f"event: newrequest\ndata: {data}\n\n".encode())
                        handler.wfile.flush()
        except OSError:  # the agent hung up
            pass
        finally:
            with self._lock:
                self._watchers -= 1


def cli_env(stand_in: CvatStandIn, home: Path) -> dict[str, str]:
    """The environment the tests run cvat-cli in: the stand-in's token in `CVAT_ACCESS_TOKEN` (how cvat-cli
    takes a personal access token), its config and caches under `home`."""
    return {**os.environ, "CVAT_ACCESS_TOKEN": stand_in.token, "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / "config"), "XDG_CACHE_HOME": str(home / "cache")}


def run_cli(stand_in: CvatStandIn, home: Path, *args: str) -> subprocess.CompletedProcess:
    """The real `cvat-cli --server-host <stand-in> ARGS...`, to its end."""
    return subprocess.run([CLI, "--server-host", stand_in.url, *args], env=cli_env(stand_in, home),
                          capture_output=True, text=True, timeout=180)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()
