"""Each service's OpenAPI document is checked in, current, and documents its bodies, answers and keys."""

from pathlib import Path

import pytest

from leadpipe_common.local.openapi import DIR, document, render
from leadpipe_common.topology import SERVICES

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_the_checked_in_openapi_document_matches_the_service(service):
    assert (ROOT / DIR / f"{service}.json").read_text(encoding="utf-8") == render(service), (
        f"docs/openapi/{service}.json is stale: run `make openapi` and commit it")


def test_capture_documents_its_bodies_in_every_encoding_and_every_answer():
    doc = document("capture")
    form = doc["paths"]["/v1/forms/{form_id}"]["post"]
    assert set(form["requestBody"]["content"]) == {"application/x-www-form-urlencoded", "multipart/form-data",
                                                    "application/json"}
    assert {"200", "202", "303", "413", "415", "422", "503"} <= set(form["responses"])
    leads = doc["paths"]["/v1/leads"]["post"]
    assert leads["responses"]["202"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/Accepted"}
    assert leads["responses"]["422"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/ProblemBody"}
    assert "email" in doc["components"]["schemas"]["Submission"]["required"]


def test_operations_behind_a_key_say_so_and_answer_401_in_the_error_model():
    doc = document("routing")
    disposition = doc["paths"]["/v1/leads/{lead_id}/disposition"]["post"]
    assert disposition["security"] and {"401", "403", "409", "422"} <= set(disposition["responses"])
    assert {"HTTPBearer", "APIKeyHeader"} <= set(doc["components"]["securitySchemes"])


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_every_operation_behind_a_key_documents_the_503_a_key_that_cannot_be_looked_up_gets(service):
    """A client reading the document must know that an outage is a 503 to retry, not the 401 that drops a key."""
    doc = document(service)
    keyed = {f"{method} {path}": set(op["responses"]) for path, ops in doc["paths"].items()
             for method, op in ops.items() if "401" in op.get("responses", {})}
    assert keyed and all({"429", "503"} <= codes for codes in keyed.values()), keyed


#: The answers sales tools and integrators read from routing: each typed, so that clients can generate theirs.
ROUTING_ANSWERS = [("/v1/leads/{lead_id}/disposition", "post"), ("/v1/leads/{lead_id}/handoff", "get"),
                   ("/v1/leads/{lead_id}/merge", "post"), ("/v1/reps", "get"),
                   ("/v1/reps/{rep_id}/availability", "get"), ("/v1/reps/{rep_id}/availability", "put")]


@pytest.mark.parametrize(("path", "method"), ROUTING_ANSWERS)
def test_routing_answers_sales_tools_with_a_model_that_describes_every_field(path, method):
    # A rep's working hours are the reps file's, described as a whole.
    assert_every_field_described(document("routing"), path, method, whole={"WorkingHours"})


#: The reports integrators and BI tools read from reporting (the dashboard's pages are HTML).
REPORTING_ANSWERS = ["/v1/reports/funnel", "/v1/reports/funnel/by/{dimension}", "/v1/reports/attribution/{dimension}",
                     "/v1/reports/velocity", "/v1/reports/sla", "/v1/reports/rejections", "/v1/reports/spam",
                     "/v1/leads/{lead_id}/timeline"]


@pytest.mark.parametrize("path", REPORTING_ANSWERS)
def test_reporting_answers_with_a_model_that_describes_every_field_and_offers_csv_too(path):
    doc = document("reporting")
    assert_every_field_described(doc, path, "get")
    assert set(doc["paths"][path]["get"]["responses"]["200"]["content"]) == {"application/json", "text/csv"}


def test_reporting_answers_every_route_of_its_api_with_a_model():
    """A report added to the API without a model would say nothing of its fields again."""
    doc = document("reporting")
    api = {path for path in doc["paths"] if path.startswith("/v1/")}
    assert api == set(REPORTING_ANSWERS)


def assert_every_field_described(doc, path, method, whole=frozenset()):
    """The 200 answer of ``path`` is a model whose every field, and every field of its parts, has a description;
    ``whole``: parts described as a whole where they are used."""
    schemas = doc["components"]["schemas"]
    answer = doc["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    seen, todo = set(), [answer["$ref"].rsplit("/", 1)[1]]
    while todo:
        name = todo.pop()
        seen.add(name)
        for field, schema in schemas[name]["properties"].items():
            assert schema.get("description"), f"{name}.{field} is not described"
            todo += [ref.rsplit("/", 1)[1] for ref in _refs(schema) if ref.rsplit("/", 1)[1] not in seen | whole]


def _refs(schema):
    if isinstance(schema, dict):
        return [schema["$ref"]] if "$ref" in schema else [r for v in schema.values() for r in _refs(v)]
    return [r for v in schema for r in _refs(v)] if isinstance(schema, list) else []
