"""openapi.json is fresh, covers exactly the server's routes, and is a well-formed OpenAPI 3.1."""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from tornado.web import RequestHandler
from tornado.websocket import WebSocketHandler

from config.settings import load_settings
from messenger.api_spec import ERROR_CODES, build_spec, dump_spec

ROOT = Path(__file__).resolve().parents[1]
SPEC_FILE = ROOT / "openapi.json"
HTTP_METHODS = ("get", "post", "put", "patch", "delete")
_PATH_PARAM = re.compile(r"\{([^}/]+)\}")


@pytest.fixture(scope="module")
def spec() -> dict[str, Any]:
    return build_spec()


# -- (a) freshness --------------------------------------------------------------------------------
def test_openapi_json_is_fresh() -> None:
    assert SPEC_FILE.exists(), "openapi.json is missing: run make openapi"
    assert SPEC_FILE.read_bytes() == dump_spec(build_spec()), (
        "openapi.json is stale: run make openapi"
    )


def test_build_spec_is_deterministic() -> None:
    assert dump_spec(build_spec()) == dump_spec(build_spec())


def test_gen_openapi_check_mode_agrees() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_openapi"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- (b) spec paths == server routes ------------------------------------------------------------
def _route_methods() -> dict[str, set[str]]:
    from handlers.routes import ROUTES

    table: dict[str, set[str]] = {}
    for path, handler in ROUTES:
        assert path not in table, f"duplicate route {path}"
        if issubclass(handler, WebSocketHandler):
            table[path] = {"get"}  # the handshake; its frames are in API_CONTRACT.md §8
            continue
        table[path] = {
            m for m in HTTP_METHODS if getattr(handler, m) is not getattr(RequestHandler, m)
        }
    return table


def test_spec_paths_and_methods_equal_routes(spec: dict[str, Any]) -> None:
    documented = {
        path: {m for m in item if m in HTTP_METHODS} for path, item in spec["paths"].items()
    }
    routes = _route_methods()
    assert sorted(documented) == sorted(routes), "paths differ between openapi and ROUTES"
    assert documented == routes, "methods differ between openapi and ROUTES"


# -- (c) validity ---------------------------------------------------------------------------------
def _walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from _walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from _walk(value)


def _resolve(spec: dict[str, Any], ref: str) -> Any:
    assert ref.startswith("#/"), f"only local refs are used: {ref}"
    node: Any = spec
    for part in ref[2:].split("/"):
        part = part.replace("~1", "/").replace("~0", "~")
        assert isinstance(node, dict) and part in node, f"unresolvable $ref {ref}"
        node = node[part]
    return node


def _operations(spec: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method in HTTP_METHODS:
                yield path, method, op


def test_spec_structure(spec: dict[str, Any]) -> None:
    assert spec["openapi"].startswith("3.1.")
    assert spec["info"]["title"] and spec["info"]["version"]
    schemes = spec["components"]["securitySchemes"]
    assert schemes["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": schemes["bearerAuth"]["description"],
    }

    refs = [node["$ref"] for node in _walk(spec) if isinstance(node, dict) and "$ref" in node]
    assert refs
    for ref in refs:
        _resolve(spec, ref)

    operation_ids: list[str] = []
    for path, method, op in _operations(spec):
        where = f"{method.upper()} {path}"
        operation_ids.append(op["operationId"])
        assert op["responses"], f"{where}: no responses"
        for status, response in op["responses"].items():
            assert re.fullmatch(r"[1-5]\d\d", status), f"{where}: bad status {status!r}"
            assert response["description"], f"{where} {status}: no description"
            if int(status) >= 400 and not (path == "/api/readyz" and status == "503"):
                schema = response["content"]["application/json"]["schema"]
                assert schema == {"$ref": "#/components/schemas/Error"}, f"{where} {status}"
        for requirement in op["security"]:
            assert set(requirement) <= set(schemes), f"{where}: unknown security scheme"

        declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
        assert declared == set(_PATH_PARAM.findall(path)), f"{where}: path parameters"
        for param in op.get("parameters", []):
            assert param["in"] in ("path", "query", "header", "cookie"), where
            assert "schema" in param, f"{where}: parameter {param['name']} has no schema"
            if param["in"] == "path":
                assert param["required"] is True, f"{where}: path parameter not required"
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


def test_error_statuses_match_codes(spec: dict[str, Any]) -> None:
    """Each documented error example sits under the status its code has."""
    for path, method, op in _operations(spec):
        for status, response in op["responses"].items():
            examples = response.get("content", {}).get("application/json", {}).get("examples")
            for code in examples or {}:
                assert ERROR_CODES[code][0] == int(status), f"{method} {path}: {code}"


def test_authenticated_operations_document_401(spec: dict[str, Any]) -> None:
    for path, method, op in _operations(spec):
        if op["security"]:
            assert "401" in op["responses"], f"{method} {path}"
            assert "WWW-Authenticate" in op["responses"]["401"]["headers"]


def test_limits_follow_settings_defaults(spec: dict[str, Any]) -> None:
    defaults = load_settings({})
    paths = spec["paths"]
    history = paths["/api/chats/{chat_id}/messages"]["get"]["parameters"]
    limit = next(p for p in history if p["name"] == "limit")["schema"]
    assert (limit["default"], limit["minimum"], limit["maximum"]) == (
        defaults.page_size_default,
        1,
        defaults.page_size_max,
    )
    send = paths["/api/chats/{chat_id}/messages"]["post"]["requestBody"]
    text = send["content"]["application/json"]["schema"]["properties"]["text"]
    assert text["maxLength"] == defaults.max_message_length
    create = paths["/api/chats"]["post"]["requestBody"]
    members = create["content"]["application/json"]["schema"]["properties"]["member_ids"]
    assert members["maxItems"] == defaults.max_group_members
    chat_list = spec["components"]["schemas"]["ChatList"]["properties"]["chats"]
    assert chat_list["maxItems"] == defaults.max_chats_listed


def _media_examples(spec: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], Any]]:
    """(where, schema, example) for every example in request bodies and responses."""
    for path, method, op in _operations(spec):
        media_types = [op.get("requestBody", {}).get("content", {}).get("application/json")]
        media_types += [
            r.get("content", {}).get("application/json") for r in op["responses"].values()
        ]
        for media in media_types:
            if not media:
                continue
            where = f"{method.upper()} {path}"
            if "example" in media:
                yield where, media["schema"], media["example"]
            for name, example in media.get("examples", {}).items():
                yield f"{where} ({name})", media["schema"], example["value"]


def test_schemas_and_examples_are_valid_json_schema(spec: dict[str, Any]) -> None:
    """OpenAPI 3.1 schemas are JSON Schema 2020-12; check them if jsonschema is at hand."""
    if importlib.util.find_spec("jsonschema") is None:
        pytest.skip("jsonschema is not installed (structure is checked by test_spec_structure)")
    from jsonschema import Draft202012Validator

    def validator(schema: dict[str, Any]) -> Draft202012Validator:
        Draft202012Validator.check_schema(schema)
        # Embed the components so "#/components/schemas/..." refs resolve from this root.
        return Draft202012Validator(
            {**schema, "components": spec["components"]},
            format_checker=Draft202012Validator.FORMAT_CHECKER,
        )

    cases = [
        (f"schema {name}", schema, example)
        for name, schema in spec["components"]["schemas"].items()
        for example in schema.get("examples", [])
    ]
    cases += list(_media_examples(spec))
    assert len(cases) > 20
    for where, schema, example in cases:
        errors = list(validator(schema).iter_errors(example))
        assert not errors, f"{where}: {errors[0].message}"


def test_openapi_spec_validator_accepts_it() -> None:
    """The reference validator, when installed (it is not a pinned dependency)."""
    if importlib.util.find_spec("openapi_spec_validator") is None:
        pytest.skip("openapi_spec_validator is not installed (structure is checked above)")
    from openapi_spec_validator import validate

    validate(orjson.loads(SPEC_FILE.read_bytes()))


def test_every_error_class_code_is_in_the_contract() -> None:
    """A typed error a client can receive is documented in API_CONTRACT.md's code table."""
    from messenger import errors

    table = (ROOT / "API_CONTRACT.md").read_text().split("## 6. Error codes", 1)[1]
    documented = set(re.findall(r"^\| `(\w+)` \| (\d{3}) \|", table, re.MULTILINE))

    def subclasses(cls: type) -> list[type]:
        return [cls, *(s for sub in cls.__subclasses__() for s in subclasses(sub))]

    for cls in subclasses(errors.ApiError):
        if cls is errors.ApiError:
            continue
        assert (cls.code, str(cls.status)) in documented, (cls.__name__, cls.code, cls.status)
