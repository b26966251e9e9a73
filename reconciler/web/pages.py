"""The status page's routes: each reads the history (and the config the engine loaded last)
and renders a template. Jinja2 escapes every value it writes (autoescape): names, reasons,
commit messages and problems are user input. No page writes anything or shows a variable's
value."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote

import jinja2
from markupsafe import Markup

from reconciler import __version__
from reconciler.render.settings import Settings
from reconciler.review.graph import build, svg
from reconciler.spec import Spec
from reconciler.spec.model import Application
from reconciler.store import Store
from reconciler.web import views

#: Seconds between a page's reloads (a meta refresh: no script needed).
REFRESH = 10
HISTORY_LIMIT = 50
#: Nothing but the page's own stylesheet may load; inline SVG needs nothing more.
_SECURITY = (
    (
        "Content-Security-Policy",
        "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'",
    ),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
)


#: What a route found: status, template, its own path and query, the template's values.
_View = tuple[int, str, str, dict[str, Any]]


@dataclass(frozen=True)
class Page:
    status: int
    body: bytes
    content_type: str = "text/html; charset=utf-8"
    #: a page is always read fresh; its stylesheet may be kept a while
    headers: tuple[tuple[str, str], ...] = (*_SECURITY, ("Cache-Control", "no-store"))


class Pages:
    def __init__(
        self,
        store: Store,
        config: Callable[[], tuple[str, Spec] | None],
        settings: Settings,
        *,
        prefix: str = "",
    ) -> None:
        self.store = store
        self.config = config
        self.settings = settings
        self.prefix = prefix
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("reconciler.web"),
            autoescape=True,
            undefined=jinja2.StrictUndefined,  # a misspelt name fails a test, not a page silently
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters["quote"] = lambda text: quote(str(text), safe="")
        self.env.globals.update(prefix=prefix, version=__version__)

    def get(self, path: str, query: Mapping[str, list[str]]) -> Page | None:
        """The page at `path` (the prefix already taken off), or None: not a page. `?refresh=0`
        stops a page from reloading itself (reading a log, keyboard users: WCAG 2.2.1)."""
        if path == "/style.css":
            css = self.env.loader.get_source(self.env, "style.css")[0]  # type: ignore[union-attr]
            kept = (*_SECURITY, ("Cache-Control", "max-age=300"))
            return Page(200, css.encode(), "text/css; charset=utf-8", kept)
        view: _View
        if path in ("/", ""):
            view = self._applications()
        elif path == "/history":
            view = self._history(query.get("app", [""])[0])
        elif path.startswith("/applications/"):
            name, _, version = path.removeprefix("/applications/").partition("/")
            view = self._application(unquote(name), unquote(version))
        else:
            return None
        status, template, here, values = view
        paused = query.get("refresh", [""])[0] == "0"
        toggle = here if paused else here + ("&" if "?" in here else "?") + "refresh=0"
        refresh = 0 if paused else REFRESH
        html = self.env.get_template(template).render(refresh=refresh, toggle=toggle, **values)
        return Page(status, html.encode())

    def _applications(self) -> _View:
        latest = self.store.runs(limit=1)
        return (
            200,
            "applications.html",
            "/",
            {
                "title": "Applications",
                "apps": views.applications(self.store.statuses()),
                "latest": views.run(latest[0]) if latest else None,
            },
        )

    def _application(self, name: str, version: str) -> _View:
        status = next((s for s in self.store.statuses(name) if s["version"] == version), None)
        here = f"/applications/{quote(name, safe='')}/{quote(version, safe='')}"
        if status is None:
            return 404, "missing.html", here, {"title": "Not found", "name": name, "version": version}
        key = f"{name}@{version}"
        loaded = self.config()
        spec = loaded[1] if loaded else None
        app = next((a for a in spec.applications if a.key == key), None) if spec else None
        # ElementTree wrote the drawing and escaped every label in it: it is markup as it is
        drawing = svg(build(spec, app=key), title=f"{name} {version}") if spec and app else ""
        graph = Markup(drawing)  # noqa: S704 - ElementTree escaped every label and attribute
        runs = self.store.runs(limit=1, app=name)
        held = status["detail"].get("builds", [])
        return (
            200,
            "application.html",
            here,
            {
                "title": f"{name} {version}",
                "app": views.applications([status])[0],
                "described": app,
                "config_revision": loaded[0][:8] if loaded else "",
                "graph": graph,
                "instances": views.instances(status, key),
                "topics": views.application_topics(spec, app, self.store.topic_states(), self.settings),
                "builds": views.builds(app, self._recent_builds(app, spec), held),
                "run": views.run(runs[0], views.objects_of(status)) if runs else None,
            },
        )

    def _recent_builds(self, app: Application | None, spec: Spec | None) -> dict[tuple[str, str], list[Any]]:
        if app is None or spec is None:
            return {}
        return {
            (entry.short_name, entry.version): self.store.recent_builds(entry.short_name, entry.version)
            for entry in app.services
            if spec.service(entry.short_name, entry.version).source is not None
        }

    def _history(self, app: str) -> _View:
        names = self.store.application_names()
        chosen = app if app in names else ""
        runs = self.store.runs(limit=HISTORY_LIMIT, app=chosen or None)
        return (
            200,
            "history.html",
            "/history" + (f"?app={quote(chosen, safe='')}" if chosen else ""),
            {
                "title": "History" + (f" of {chosen}" if chosen else ""),
                "names": names,
                "chosen": chosen,
                "asked": app,
                "runs": [views.run(r) for r in runs],
                "limit": HISTORY_LIMIT,
            },
        )
