"""The service's OpenAPI document as the server really answers: FastAPI's, with every
error response documented as the one-line {"detail": ...} it is (errors.py) and the bearer
token as the security scheme of every route but auth.PUBLIC_PATHS."""

from __future__ import annotations

from fastapi import FastAPI

from numbamlp.service.auth import PUBLIC_PATHS

# The errors every route may answer, as the server answers them: {"detail": "one line"}.
ERRORS = {
    "401": "missing or wrong bearer token",
    "403": "the token's role may not do this (or not to another person's job)",
    "404": "no such job (or no model for it)",
    "409": "the job cannot do that in its status",
    "413": "request body over --max-request-mb",
    "422": "invalid request: one line naming what is wrong",
    "507": "the server's disk is full: nothing was stored",
}
NO_SWEEP = "no such sweep"  # (a sweep's 404)


def openapi_with_errors(app: FastAPI) -> dict:
    """FastAPI's OpenAPI document, its error responses as the server sends them: FastAPI
    documents a 422 as a list of validation errors, but every error here is one line,
    {"detail": "..."} (errors.one_line_422), and 401/404/409/413 are not documented at all."""
    if app.openapi_schema is not None:
        return app.openapi_schema
    from fastapi.openapi.utils import get_openapi

    schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    components["Error"] = {"title": "Error", "type": "object", "required": ["detail"],
                           "properties": {"detail": {"title": "Detail", "type": "string"}}}
    schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            codes = {"422"} if "422" in operation["responses"] else set()
            if path not in PUBLIC_PATHS:
                codes.add("401")
                operation["security"] = [{"bearer": []}]
            if method == "post" and not path.endswith("/predict"):
                codes.add("403")
            if "{job_id}" in path or "{sweep_id}" in path:
                codes.add("404")
            if path.endswith(("/predict", "/cancel")):
                codes.add("409")
            if method == "post":
                codes |= {"413", "422"}
            if method == "post" and not path.endswith("/predict"):
                codes.add("507")
            for code in sorted(codes):
                said = NO_SWEEP if code == "404" and "{sweep_id}" in path else ERRORS[code]
                operation["responses"][code] = {"description": said, "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    app.openapi_schema = schema
    return schema
