"""The registry's web UI at ``/ui``: server-rendered HTML, no JavaScript, keyboard accessible.

Pages: services with their versions and a label-selector filter, one version (APIs with
schemas, artifacts with metadata, pinned environment, download link, its runs), and the
scoring runs. Reads need the ``read`` scope: a token pasted once into ``/ui/login`` is kept
in an HttpOnly cookie (which only ever grants reads), unless the server allows anonymous reads.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timezone
from html import escape
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

from kappa.errors import KappaError
from kappa_gamma.access import COOKIE
from kappa_gamma.api import PayloadTooLarge, public_status, public_text, read_body, registry, threaded

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from kappa.repository.records import BundleRecord

STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fff}
header{background:#1f2d3d;color:#fff;padding:.6rem 1.2rem;display:flex;gap:1.5rem;align-items:center}
header a{color:#fff}header .brand{font-weight:700;text-decoration:none;margin-right:1rem}
main{padding:1rem 1.2rem;max-width:80rem}
a{color:#0b57b0}a:focus,button:focus,input:focus{outline:3px solid #f59e0b;outline-offset:2px}
.skip{position:absolute;left:-999px}.skip:focus{left:1rem;top:.5rem;background:#fff;color:#000;padding:.3rem}
table{border-collapse:collapse;margin:.5rem 0 1.2rem;min-width:40rem}
th,td{border:1px solid #d0d7de;padding:.3rem .6rem;text-align:left;vertical-align:top}
th{background:#f3f5f7}code,pre{font:13px ui-monospace,monospace}
pre{background:#f6f8fa;padding:.6rem;overflow:auto}
.label{display:inline-block;background:#e7f0fb;border-radius:.6rem;padding:0 .5rem;margin:0 .2rem .2rem 0}
form.filter{display:flex;gap:.6rem;align-items:end;flex-wrap:wrap;margin:.5rem 0 1rem}
form.filter label{display:flex;flex-direction:column;font-size:.85rem}
input[type=text],input[type=password]{padding:.3rem;min-width:18rem}
button{padding:.35rem .9rem}.error{color:#a40e26;font-weight:600}.ok{color:#116329}
"""


def _when(seconds: Any) -> str:
    try:
        return datetime.fromtimestamp(float(seconds), timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (TypeError, ValueError, OverflowError, OSError):
        return ""


def _number(value: Any) -> float:
    try:
        number = float(value or 0)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return number if number == number and abs(number) < float("inf") else 0.0


def _link(href: str, text: str) -> str:
    return f'<a href="{escape(href, quote=True)}">{escape(text)}</a>'


def _bundle_href(name: str, version: str) -> str:
    return f"/ui/bundles/{quote(name)}/{quote(version)}"


def _labels(labels: Mapping[str, str]) -> str:
    return "".join(
        f'<span class="label">{escape(k)}={escape(str(v))}</span>' for k, v in sorted(labels.items())
    )


def _table(caption: str, headers: Sequence[str], rows: Iterable[Sequence[str]], empty: str) -> str:
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    if not body:
        return f"<p>{escape(empty)}</p>"
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in headers)
    return (
        f"<table><caption class='skip'>{escape(caption)}</caption>"
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


def _field(name: str, label: str, value: str, extra: str = "") -> str:
    """A labelled text input of a filter form."""
    return (
        f'<label for="{name}">{escape(label)}<input type="text" id="{name}" name="{name}" '
        f'value="{escape(value, quote=True)}"{extra}></label>'
    )


def page(title: str, body: str, status: int = 200) -> Response:
    from starlette.responses import HTMLResponse

    html = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{escape(title)} · Kappa Gamma</title><style>{STYLE}</style></head>
<body><a class="skip" href="#main">Skip to content</a>
<header><a class="brand" href="/ui">Kappa Gamma</a>
<nav aria-label="Main"><a href="/ui">Services</a> · <a href="/ui/runs">Runs</a> · <a href="/docs">API</a>
 · <a href="/ui/login">Token</a></nav></header>
<main id="main" tabindex="-1"><h1>{escape(title)}</h1>
{body}</main></body></html>"""
    return HTMLResponse(html, status_code=status, headers={"Cache-Control": "no-store"})


def _error(message: str) -> str:
    return f'<p class="error" role="alert">{escape(message)}</p>'


# -- pages -------------------------------------------------------------------
async def services(request: Request) -> Response:
    """Every service with its versions; a label selector (and a name) narrows them."""
    reg = registry(request)
    await reg.gate.require(request, "read")
    selector = (request.query_params.get("labels") or "").strip()
    name = (request.query_params.get("name") or "").strip()
    help_ = ' placeholder="stage In (prod, qa), framework=sklearn" aria-describedby="selector-help"'
    form = f"""<form class="filter" method="get" action="/ui" role="search">
{_field("name", "Service name", name)}
{_field("labels", "Label selector", selector, help_)}
<button type="submit">Filter</button> <a href="/ui">Clear</a></form>
<p id="selector-help">Selector forms: <code>k=v</code>, <code>k!=v</code>, <code>k In (a, b)</code>,
<code>k NotIn (a, b)</code>, <code>k Exists</code>, <code>k DoesNotExist</code>; a comma means AND.</p>"""
    try:
        records: list[BundleRecord] = await threaded(
            lambda: reg.repository.list(name or None, selector or None)
        )
    except KappaError as exc:
        return page("Services", form + _error(public_text(exc)), public_status(exc, 400))
    grouped: dict[str, list[BundleRecord]] = {}
    for record in records:
        grouped.setdefault(record.name, []).append(record)
    rows = []
    for service, versions in sorted(grouped.items()):
        newest = versions[0]
        listed = ", ".join(_link(_bundle_href(r.name, r.version), r.version) for r in versions[:10])
        more = f" and {len(versions) - 10} more" if len(versions) > 10 else ""
        rows.append(
            (
                _link(f"/ui/services/{quote(service)}", service),
                str(len(versions)),
                _link(_bundle_href(newest.name, newest.version), newest.version),
                _labels(newest.labels),
                listed + escape(more),
            )
        )
    summary = f"<p>{len(records)} version(s) of {len(grouped)} service(s)"
    summary += f" match <code>{escape(selector)}</code>.</p>" if selector else ".</p>"
    table = _table(
        "Services",
        ("Service", "Versions", "Latest", "Latest's labels", "Versions (newest first)"),
        rows,
        "No bundle matches." if (selector or name) else "No bundles yet: save one with svc.save().",
    )
    return page("Services", form + summary + table)


async def service(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    name = request.path_params["name"]
    selector = (request.query_params.get("labels") or "").strip()
    try:
        records: list[BundleRecord] = await threaded(lambda: reg.repository.list(name, selector or None))
    except KappaError as exc:
        return page(name, _error(public_text(exc)), public_status(exc, 400))
    form = f"""<form class="filter" method="get" action="/ui/services/{quote(name)}" role="search">
{_field("labels", "Label selector", selector)}
<button type="submit">Filter</button> <a href="/ui/services/{quote(name)}">Clear</a></form>"""
    rows = [
        (
            _link(_bundle_href(r.name, r.version), r.version),
            escape(_when(r.created_at)),
            escape(", ".join(r.summary.get("apis", []))),
            escape(", ".join(r.summary.get("artifacts", []))),
            _labels(r.labels),
        )
        for r in records
    ]
    table = _table(
        "Versions", ("Version", "Created", "APIs", "Artifacts", "Labels"), rows, "No version matches."
    )
    links = f"<p>{_link(f'/ui/runs?name={quote(name)}', f'Scoring runs of {name}')}</p>"
    return page(name, form + table + links)


def _schema(schema: Any) -> str:
    fields = (schema or {}).get("fields") if isinstance(schema, dict) else None
    if not fields:
        return "<p>Not declared.</p>"
    rows = [(escape(str(f.get("name"))), f"<code>{escape(str(f.get('type')))}</code>") for f in fields]
    return _table("Schema", ("Column", "Type"), rows, "No columns.")


def _api_section(api: Mapping[str, Any]) -> str:
    config = json.dumps((api.get("input") or {}).get("config") or {}, indent=1, default=str)
    doc = f"<p>{escape(str(api.get('doc')))}</p>" if api.get("doc") else ""
    batch = "batch" if api.get("batch") else "per item"
    return (
        f"<section><h3>{escape(str(api.get('name')))} "
        f"<small>({escape(str((api.get('input') or {}).get('type')))} → "
        f"{escape(str((api.get('output') or {}).get('type')))}, {batch})</small></h3>{doc}"
        f"<h4>Input schema</h4>{_schema(api.get('input_schema'))}"
        f"<h4>Output schema</h4>{_schema(api.get('output_schema'))}"
        f"<details><summary>Input adapter settings</summary><pre>{escape(config)}</pre></details></section>"
    )


def _artifact_section(artifact: Mapping[str, Any]) -> str:
    metadata = json.dumps(artifact.get("metadata") or {}, indent=1, default=str)
    files = artifact.get("files") or []
    size = sum(int(f.get("size") or 0) for f in files)
    deps = ", ".join(str(d) for d in artifact.get("pip_dependencies") or []) or "none"
    return (
        f"<section><h3>{escape(str(artifact.get('name')))} <small>({escape(str(artifact.get('type')))})"
        f"</small></h3><p>{len(files)} file(s), {size:,} bytes; needs {escape(deps)}</p>"
        f"<h4>Metadata</h4><pre>{escape(metadata)}</pre></section>"
    )


async def bundle(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    name, version = request.path_params["name"], request.path_params["version"]

    def find() -> tuple[BundleRecord, dict[str, Any], list[Any]]:
        record = reg.repository.get(f"{name}:{version}")
        runs = reg.repository.runs().list(record.name, record.version, limit=20)
        return record, reg.repository.manifest(record.tag), runs

    try:
        record, manifest, runs = await threaded(find)
    except KappaError as exc:
        return page(f"{name}:{version}", _error(public_text(exc)), public_status(exc, 404))
    env = manifest.get("env") or {}
    packages = "".join(f"<li><code>{escape(str(p))}</code></li>" for p in env.get("pip_packages") or [])
    conda = env.get("conda")
    download = f"/api/v1/bundles/{quote(record.name)}/{quote(record.version)}/archive"
    service_doc = (manifest.get("service") or {}).get("doc")
    overview = _table(
        "Version",
        ("Field", "Value"),
        [
            ("Service", _link(f"/ui/services/{quote(record.name)}", record.name)),
            ("Version", escape(record.version)),
            ("Created", escape(_when(record.created_at))),
            ("Digest", f"<code>{escape(record.digest or '')}</code>"),
            ("Labels", _labels(record.labels) or "none"),
            ("Load it", f"<code>kappa.load(&quot;{escape(record.tag)}&quot;)</code>"),
        ],
        "",
    )
    body = (
        (f"<p>{escape(str(service_doc))}</p>" if service_doc else "")
        + overview
        + f'<p><a href="{escape(download, quote=True)}" download>Download this bundle (.tar)</a></p>'
        + "<h2>APIs</h2>"
        + "".join(_api_section(a) for a in manifest.get("apis") or [])
        + "<h2>Artifacts</h2>"
        + ("".join(_artifact_section(a) for a in manifest.get("artifacts") or []) or "<p>None.</p>")
        + f"<h2>Environment</h2><p>Python {escape(str(env.get('python_version', '?')))}; "
        + f"base image <code>{escape(str(env.get('docker_base_image') or ''))}</code></p>"
        + f"<h3>Pinned pip packages</h3><ul>{packages or '<li>none</li>'}</ul>"
        + (f"<h3>Conda</h3><pre>{escape(json.dumps(conda, indent=1))}</pre>" if conda else "")
        + "<h2>Scoring runs with this version</h2>"
        + _runs_table([r.report for r in runs], with_bundle=False)
    )
    return page(record.tag, body)


def _runs_table(reports: Sequence[Mapping[str, Any]], with_bundle: bool = True) -> str:
    rows = []
    for r in reports:
        name, _, version = str(r.get("bundle", "")).partition(":")
        rows_in, rows_error = int(_number(r.get("rows_in"))), int(_number(r.get("rows_error")))
        rate = f"{rows_error / rows_in:.2%}" if rows_in else "–"
        status = str(r.get("status", ""))
        css = "ok" if status == "succeeded" else "error"
        row = [
            _link(f"/ui/runs/{quote(str(r.get('run_id')))}", str(r.get("run_id"))),
            f'<span class="{css}">{escape(status)}</span>',
        ]
        if with_bundle:
            row.append(_link(_bundle_href(name, version), f"{name}:{version}"))
        row += [
            escape(str(r.get("engine", ""))),
            f"{rows_in:,}",
            f"{int(_number(r.get('rows_out'))):,}",
            f"{rows_error:,}",
            rate,
            f"{_number(r.get('seconds')):.1f} s",
            escape(_when(r.get("started_at"))),
            f"<code>{escape(str(r.get('output') or ''))}</code>",
        ]
        rows.append(row)
    headers = ["Run", "Status"] + (["Bundle"] if with_bundle else [])
    headers += [
        "Engine",
        "Rows in",
        "Rows out",
        "Rows in error",
        "Error rate",
        "Duration",
        "Started",
        "Output",
    ]
    return _table("Scoring runs", headers, rows, "No scoring runs recorded.")


async def runs(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    name = (request.query_params.get("name") or "").strip() or None
    try:
        records = await threaded(lambda: reg.repository.runs().list(name, None, 200, 0))
    except KappaError as exc:
        return page("Scoring runs", _error(public_text(exc)), public_status(exc, 400))
    form = f"""<form class="filter" method="get" action="/ui/runs" role="search">
{_field("name", "Service name", name or "")}
<button type="submit">Filter</button> <a href="/ui/runs">Clear</a></form>"""
    return page("Scoring runs", form + _runs_table([r.report for r in records]))


async def run(request: Request) -> Response:
    reg = registry(request)
    await reg.gate.require(request, "read")
    run_id = request.path_params["run_id"]
    try:
        record = await threaded(lambda: reg.repository.runs().get(run_id))
    except KappaError as exc:
        return page(f"Run {run_id}", _error(public_text(exc)), public_status(exc, 404))
    report = record.report
    rows = [(escape(k), escape(json.dumps(v, default=str))) for k, v in sorted(report.items())]
    body = f"<p>Bundle {_link(_bundle_href(record.name, record.version), record.tag)}</p>" + _table(
        "Report", ("Field", "Value"), rows, ""
    )
    return page(f"Run {run_id}", body)


def _within_ui(target: str) -> str:
    """Where to go after signing in: a page of this UI, never another site."""
    return target if target.startswith("/ui") and not target.startswith("//") else "/ui"


def login_page(request: Request, message: str = "", status: int = 200) -> Response:
    target = _within_ui(
        request.query_params.get("next") or (request.url.path if request.url.path != "/ui/login" else "/ui")
    )
    notice = _error(message) if message else ""
    body = f"""{notice}<form method="post" action="/ui/login">
<input type="hidden" name="next" value="{escape(target, quote=True)}">
<p><label for="token">Read token</label><br>
<input type="password" id="token" name="token" autocomplete="off" required></p>
<p><button type="submit">Use this token</button></p></form>
<p>Tokens come from <code>kappa gamma token create --scope read</code>, run beside the server.
The page keeps it in a cookie that only ever grants reads. <a href="/ui/logout">Forget it</a>.</p>"""
    return page("Sign in with a token", body, status)


async def login(request: Request) -> Response:
    from starlette.responses import RedirectResponse

    if request.method == "GET":
        return login_page(request)
    try:
        raw = await read_body(request, 16_384, "the form")
    except PayloadTooLarge:
        return page("Sign in with a token", _error("the form is too large"), 413)
    form = parse_qs(raw.decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _within_ui((form.get("next") or ["/ui"])[0])
    reg = registry(request)
    try:
        info = await threaded(reg.gate.tokens.check, token)
    except KappaError as exc:
        return login_page(request, f"{public_text(exc)}; try again", public_status(exc, 401))
    if info.scope != "read":  # a browser cookie is easy to lose: it never holds more than reads
        return login_page(
            request,
            f"use a read token here, not a {info.scope} one (`kappa gamma token create --scope read`)",
            403,
        )
    response = RedirectResponse(target, status_code=303)
    secure = request.url.scheme == "https"
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=secure, path="/")
    return response


async def logout(request: Request) -> Response:
    from starlette.responses import RedirectResponse

    response = RedirectResponse("/ui/login?" + urlencode({"next": "/ui"}), status_code=303)
    response.delete_cookie(COOKIE, path="/")
    return response


def routes() -> list[Route]:
    from starlette.routing import Route

    return [
        Route("/ui", services),
        Route("/ui/", services),
        Route("/ui/login", login, methods=["GET", "POST"]),
        Route("/ui/logout", logout),
        Route("/ui/services/{name}", service),
        Route("/ui/bundles/{name}/{version}", bundle),
        Route("/ui/runs", runs),
        Route("/ui/runs/{run_id}", run),
    ]
