"""The few Label Studio REST calls the tests drive, over httpx (what a user does in its UI, scripted).

Every call raises on an HTTP error with Label Studio's own message, so a failing test says why.
Routes are Label Studio 1.23.2's (`label_studio/*/urls.py` in its package).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import httpx

UNCERTAINTY_SAMPLING = "Uncertainty sampling"


class LabelStudioError(RuntimeError):
    pass


class LabelStudioClient:
    def __init__(self, url: str, headers: Mapping[str, str], timeout: float = 120.0) -> None:
        # long timeout: a prediction call waits for the ML backend, which Label Studio allows 100 s
        self.http = httpx.Client(base_url=url, headers=dict(headers), timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.http.request(method, path, **kwargs)
        if response.is_error:
            raise LabelStudioError(f"{method} {path}: HTTP {response.status_code}: {response.text[:2000]}")
        return response.json() if response.content else None

    # --- projects and tasks ---------------------------------------------------------------------------------

    def create_project(self, label_config: str, title: str = "bridge test", **fields: Any) -> dict[str, Any]:
        return self.request("POST", "/api/projects", json={"title": title, "label_config": label_config, **fields})

    def update_project(self, project: int, **fields: Any) -> dict[str, Any]:
        return self.request("PATCH", f"/api/projects/{project}", json=fields)

    def import_files(self, project: int, paths: Iterable[Path]) -> dict[str, Any]:
        """Upload files, one task each (`{"data": {"<object value>": "/data/upload/<project>/<prefix>-<name>"}}`).

        Each file needs a field name of its own: Label Studio reads one file per field. The answer counts
        tasks but names none: `tasks()` finds them."""
        files = [(f"file{k}", (path.name, path.read_bytes())) for k, path in enumerate(paths)]
        return self.request("POST", f"/api/projects/{project}/import", files=files)

    def import_tasks(self, project: int, tasks: list[dict[str, Any]]) -> dict[str, Any]:
        """JSON tasks: `{"data": {...}}`, optionally with `predictions: [{"result", "score", "model_version"}]`."""
        return self.request("POST", f"/api/projects/{project}/import", json=tasks)

    def tasks(self, project: int) -> list[dict[str, Any]]:
        """All tasks of a project, with their predictions and annotations, in id order."""
        found: list[dict[str, Any]] = []
        page = 1
        while True:
            answer = self.request("GET", "/api/tasks", params={"project": project, "fields": "all", "page": page,
                                                               "page_size": 100})
            found += answer["tasks"]
            if len(found) >= answer["total"] or not answer["tasks"]:
                return sorted(found, key=lambda task: task["id"])
            page += 1

    def task(self, task: int) -> dict[str, Any]:
        return self.request("GET", f"/api/tasks/{task}")

    def create_annotation(self, task: int, result: list[dict[str, Any]]) -> dict[str, Any]:
        return self.request("POST", f"/api/tasks/{task}/annotations", json={"result": result})

    def next_task(self, project: int) -> dict[str, Any]:
        """The task Label Studio's labelling stream serves this user next (under the project's sampling)."""
        return self.request("GET", f"/api/projects/{project}/next")

    # --- ML backends ------------------------------------------------------------------------------------------

    def add_ml_backend(self, project: int, url: str, title: str = "bridge", is_interactive: bool = False,
                       basic_auth: tuple[str, str] | None = None, **fields: Any) -> dict[str, Any]:
        """Attach a backend; Label Studio checks it (`GET /health`, `POST /setup`) before saving it.

        With `basic_auth`, Label Studio sends `Authorization: Basic ...` on every call to the backend
        (`auth_method: BASIC_AUTH` with `basic_auth_user` and `basic_auth_pass`)."""
        body = {"url": url, "project": project, "title": title, "is_interactive": is_interactive, **fields}
        if basic_auth is not None:
            body.update(auth_method="BASIC_AUTH", basic_auth_user=basic_auth[0], basic_auth_pass=basic_auth[1])
        return self.request("POST", "/api/ml", json=body)

    def ml_backends(self, project: int) -> list[dict[str, Any]]:
        return self.request("GET", "/api/ml", params={"project": project})

    def retrieve_predictions(self, project: int) -> dict[str, Any]:
        """The data manager's "Retrieve Predictions" on every task: one `POST /predict` for all tasks lacking
        a prediction of the backend's current model version."""
        return self.request("POST", "/api/dm/actions", params={"id": "retrieve_tasks_predictions", "project": project},
                            json={"selectedItems": {"all": True, "excluded": []}})

    def interactive_annotating(self, backend: int, task: int, context: dict[str, Any]) -> dict[str, Any]:
        """What the editor sends when a user draws with "Auto-annotation" on: `context` is `{"result": [regions]}`."""
        return self.request("POST", f"/api/ml/{backend}/interactive-annotating",
                            json={"task": task, "context": context})

    def model_versions(self, backend: int) -> dict[str, Any]:
        return self.request("GET", f"/api/ml/{backend}/versions")

    def train(self, backend: int) -> Any:
        return self.request("POST", f"/api/ml/{backend}/train")

    def webhooks(self, project: int) -> list[dict[str, Any]]:
        """The project's webhooks: attaching a backend adds one to `<backend url>/webhook`, for every action."""
        return self.request("GET", "/api/webhooks/", params={"project": project})

    def update_webhook(self, webhook: int, **fields: Any) -> dict[str, Any]:
        """E.g. `headers={"Authorization": ...}`: Label Studio sends a webhook's own headers, never the
        backend's Basic auth."""
        return self.request("PATCH", f"/api/webhooks/{webhook}/", json=fields)

    # --- tokens -----------------------------------------------------------------------------------------------

    def create_personal_token(self) -> str:
        """A personal access token: a JWT refresh token (one per user; 409 while one is valid)."""
        return self.request("POST", "/api/token/")["token"]

    def access_token(self, refresh: str) -> str:
        """The short-lived access token a personal access token buys; sent as `Authorization: Bearer <access>`."""
        return self.request("POST", "/api/token/refresh/", json={"refresh": refresh})["access"]

    def jwt_settings(self, **settings: bool) -> dict[str, Any]:
        """The organisation's token settings (`api_tokens_enabled`, `legacy_api_tokens_enabled`); sets those given."""
        if settings:
            return self.request("POST", "/api/jwt/settings", json=settings)
        return self.request("GET", "/api/jwt/settings")
