"""Request bodies of the admin API, and the server's OpenAPI document.

The inference routes are served at the ASGI layer (`app.InferenceRoutes`), outside FastAPI's
router, so `openapi_document` adds them by hand: V1 `:predict` and V2 `infer` with request and
response schemas (the V1 instance schema is built from the dataset spec), the errors every
route can answer, and the admin API with its bodies and a bearer security scheme.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from mlops_platform.datasets.spec import DatasetSpec, is_integer_code
from mlops_platform.serving.json_bodies import REQUEST_ID_PATTERN, REQUEST_ID_RULE
from mlops_platform.serving.traffic import CanaryOwner
from mlops_platform.serving.validation import ENTITY_FIELD, V2_NUMERIC_TYPES, InvalidRequest

BEARER = "bearerAuth"


class TrafficRequest(BaseModel):
    """`PUT /admin/traffic`: a registry version (or alias) at a canary percent (KServe's rules)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    version: str | None = Field(None, pattern=r"^[0-9]{1,18}$", description="registry version")
    alias: str | None = Field(
        None, pattern=r"^[A-Za-z0-9_\-]{1,255}$", description="registry alias, e.g. champion"
    )
    canary_percent: int = Field(100, ge=0, le=100, description="100 promotes; 0 rolls back")
    owner: CanaryOwner | None = Field(
        None, description="the deploy run driving this canary; it holds a lease it must renew"
    )

    @field_validator("version", mode="before")
    @classmethod
    def _version_number(cls, value: Any) -> Any:
        return str(value) if type(value) is int else value


class LeaseRequest(BaseModel):
    """`POST /admin/traffic/lease`: the canary's owner renews its lease."""

    model_config = ConfigDict(extra="forbid", strict=True)

    owner: CanaryOwner


def parse_body(model: type[BaseModel], body: Any) -> Any:
    """`body` as `model`, or InvalidRequest naming the first field that is wrong."""
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False, include_context=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "body"
        if first["type"] == "extra_forbidden":
            known = ", ".join(model.model_fields)
            raise InvalidRequest(field, f"is not a field of this request ({known})") from None
        if first["type"] == "model_type" and not first["loc"]:
            raise InvalidRequest("body", "expected a JSON object", 400) from None
        raise InvalidRequest(field, first["msg"]) from None


# -- the OpenAPI document


def _error_schema() -> dict[str, Any]:
    return {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string", "description": "what is wrong"},
            "field": {"type": "string", "description": "where: a JSON path, a header or `body`"},
            "request_id": {"type": "string"},
        },
    }


def _feature_schema(spec: DatasetSpec, name: str) -> dict[str, Any]:
    column = spec.columns[name]
    if name in spec.features.numeric:
        schema: dict[str, Any] = {"type": "integer" if column.type == "integer" else "number"}
        if column.min is not None:
            schema["minimum"] = column.min
        if column.max is not None:
            schema["maximum"] = column.max
    else:
        schema = {"type": "string"}
        if column.domain is not None:
            schema["enum"] = list(column.domain)
            if all(map(is_integer_code, column.domain)):  # integer codes: numbers too
                schema = {"anyOf": [schema, {"type": "integer", "enum": [int(v) for v in column.domain]}]}
    return {"anyOf": [schema, {"type": "null"}]} if column.nullable else schema


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "not JSON, or not the expected shape",
        401: "missing bearer token",
        403: "wrong bearer token",
        404: "unknown model, version, alias or entity",
        409: "the lease is not this owner's, or no canary runs",
        413: "body or row count over the limit",
        415: "Content-Type present and not JSON",
        422: "a field has a wrong value (named in `field`)",
        503: "no version rolled out, or the registry or online store does not answer",
    }
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    return {str(s): {"description": words[s], **error} for s in statuses}


def _json_body(ref: str) -> dict[str, Any]:
    return {"required": True, "content": {"application/json": {"schema": {"$ref": ref}}}}


def _ok(ref: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}


def openapi_document(base: dict[str, Any], spec: DatasetSpec) -> dict[str, Any]:
    """FastAPI's document for its own routes (`base`), plus the inference routes and the admin
    API's bodies and security."""
    model = spec.registered_model_name
    names = spec.features.all
    required = [n for n in names if not spec.columns[n].nullable]
    schemas = base.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = _error_schema()
    schemas["V1Instance"] = {
        "oneOf": [
            {
                "type": "object",
                "description": "feature values by name",
                "properties": {n: _feature_schema(spec, n) for n in names},
                "required": required,
                "additionalProperties": False,
            },
            {
                "type": "array",
                "description": "feature values in this order: " + ", ".join(names),
                "prefixItems": [_feature_schema(spec, n) for n in names],
                "items": False,
                "minItems": len(names),
            },
            {
                "type": "object",
                "description": "an entity id: its features are read from the online store",
                "properties": {ENTITY_FIELD: {"type": "string", "minLength": 1}},
                "required": [ENTITY_FIELD],
                "additionalProperties": False,
            },
        ]
    }
    schemas["V1Request"] = {
        "type": "object",
        "required": ["instances"],
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "items": {"$ref": "#/components/schemas/V1Instance"},
            }
        },
    }
    schemas["V1Response"] = {
        "type": "object",
        "properties": {
            "predictions": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"probability": {"type": "number"}, "prediction": {"type": "integer"}},
                },
            },
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "request_id": {"type": "string"},
        },
    }
    schemas["V2Tensor"] = {
        "type": "object",
        "required": ["name", "shape", "datatype", "data"],
        "properties": {
            "name": {"type": "string", "enum": names},
            "shape": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
            "datatype": {"type": "string", "enum": [*sorted(V2_NUMERIC_TYPES), "BYTES"]},
            "data": {"type": "array", "items": {"type": ["number", "string", "null"]}},
            "parameters": {"type": "object"},
        },
    }
    schemas["V2Request"] = {
        "type": "object",
        "required": ["inputs"],
        "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object"},
            "inputs": {"type": "array", "minItems": 1, "items": {"$ref": "#/components/schemas/V2Tensor"}},
        },
    }
    schemas["V2Response"] = {
        "type": "object",
        "properties": {
            "model_name": {"type": "string"},
            "model_version": {"type": "string"},
            "id": {"type": "string"},
            "outputs": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": "string"},
                        "shape": {"type": "array", "items": {"type": "integer"}},
                        "datatype": {"type": "string"},
                        "data": {"type": "array", "items": {"type": "number"}},
                    },
                },
            },
        },
    }
    schemas["TrafficRequest"] = TrafficRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    schemas["LeaseRequest"] = LeaseRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    for found in (schemas["TrafficRequest"], schemas["LeaseRequest"]):
        schemas.update(found.pop("$defs", {}))
    traffic = schemas["TrafficRequest"]
    for key in ("version", "alias"):  # null means "not given": the document says give exactly one
        prop = traffic["properties"][key]
        prop.update(next(option for option in prop.pop("anyOf") if option.get("type") != "null"))
        prop.pop("default", None)
    traffic["oneOf"] = [
        {"required": ["version"], "not": {"required": ["alias"]}},
        {"required": ["alias"], "not": {"required": ["version"]}},
    ]
    schemas["TrafficReport"] = {
        "type": "object",
        "properties": {
            "spec": {"type": ["object", "null"], "description": "the traffic state"},
            "status": {
                "type": "object",
                "properties": {
                    "traffic": {"type": "array", "items": {"type": "object"}},
                    "workers": {"type": "object", "additionalProperties": {"type": "integer"}},
                    "applied": {"type": "boolean"},
                    "orphaned_canary_rollback": {"type": ["object", "null"]},
                },
            },
        },
    }
    base.setdefault("components", {})["securitySchemes"] = {
        BEARER: {"type": "http", "scheme": "bearer", "description": "the admin token (MLOPS_ADMIN_TOKEN)"}
    }

    model_parameter = {
        "name": "model",
        "in": "path",
        "required": True,
        "schema": {"type": "string", "enum": [model]},
    }
    request_id = {
        "name": "x-request-id",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "pattern": f"^({REQUEST_ID_PATTERN})?$"},
        "description": (
            f"kept as sent when it is {REQUEST_ID_RULE} (else 400); missing or empty: a new one; "
            "echoed in the response, the access line and the inference log"
        ),
    }
    inference_errors = _errors(400, 404, 413, 415, 422, 503)
    paths = base.setdefault("paths", {})
    paths["/v1/models/{model}:predict"] = {
        "post": {
            "summary": "V1 predict",
            "operationId": "v1_predict",
            "parameters": [model_parameter, request_id],
            "requestBody": _json_body("#/components/schemas/V1Request"),
            "responses": {
                "200": _ok("#/components/schemas/V1Response", "one prediction per instance"),
                **inference_errors,
            },
        }
    }
    v2 = {
        "summary": "V2 (open inference protocol) infer",
        "parameters": [model_parameter, request_id],
        "requestBody": _json_body("#/components/schemas/V2Request"),
        "responses": {
            "200": _ok("#/components/schemas/V2Response", "probability and prediction tensors"),
            **inference_errors,
        },
    }
    paths["/v2/models/{model}/infer"] = {"post": {**v2, "operationId": "v2_infer"}}
    version_parameter = {"name": "version", "in": "path", "required": True, "schema": {"type": "string"}}
    paths["/v2/models/{model}/versions/{version}/infer"] = {
        "post": {
            **v2,
            "operationId": "v2_infer_version",
            "parameters": [model_parameter, version_parameter, request_id],
        }
    }

    security = [{BEARER: []}]
    admin = paths.setdefault("/admin/traffic", {})
    admin.setdefault("get", {}).update(
        {
            "security": security,
            "responses": {
                "200": _ok(
                    "#/components/schemas/TrafficReport", "the traffic state and which workers applied it"
                ),
                **_errors(401, 403),
            },
        }
    )
    admin.setdefault("put", {}).update(
        {
            "security": security,
            "requestBody": _json_body("#/components/schemas/TrafficRequest"),
            "responses": {
                "200": _ok("#/components/schemas/TrafficReport", "the new state"),
                **_errors(400, 401, 403, 404, 415, 422, 503),
            },
        }
    )
    lease = paths.setdefault("/admin/traffic/lease", {})
    lease.setdefault("post", {}).update(
        {
            "security": security,
            "requestBody": _json_body("#/components/schemas/LeaseRequest"),
            "responses": {
                "200": _ok("#/components/schemas/TrafficReport", "the lease is renewed"),
                **_errors(400, 401, 403, 409, 415, 422),
            },
        }
    )
    return base
