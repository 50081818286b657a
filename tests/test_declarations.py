"""Every service is declared the one way, and the declarations agree with the topology table."""

import dataclasses
import importlib

import pytest
import sqlalchemy as sa
from fastapi import APIRouter

from leadpipe_common import topology
from leadpipe_common.db import inbox_table
from leadpipe_common.events import LeadCaptured, LeadDispositioned, LeadScored
from leadpipe_common.service import Service
from leadpipe_common.testing.fakes import SavedRows


async def handle(uow, batch, ctx):  # noqa: ANN001, ANN201
    return {}


@pytest.mark.parametrize("name", [s.name for s in topology.SERVICES])
def test_each_service_declares_what_the_topology_says_it_consumes(name):
    declared = importlib.import_module(f"{name}.service").SERVICE
    assert isinstance(declared, Service) and declared.name == name
    declared.check()
    assert {event for topic in topology.inputs_of(name) for event in topology.channel(topic).readable} >= set(
        declared.consumes)


@pytest.mark.parametrize("name", ["delivery", "reporting", "enrichment", "routing"])
def test_a_handler_declared_for_several_types_is_one_handler_to_the_runner(name):
    """The runner calls each handler once for a run of its events: it must see one handler, not one per type."""
    declared = importlib.import_module(f"{name}.service").SERVICE
    handlers = declared.handlers(ctx=None)
    declared_once = {declared.consumes[e] for e in declared.consumes}
    assert len(set(map(id, handlers.values()))) == len(declared_once) < len(handlers)


def test_a_service_consuming_what_no_topic_it_reads_carries_is_refused():
    with pytest.raises(ValueError, match=r"consumes \['lead.captured'\]"):
        Service(name="scoring", summary="", consumes={LeadCaptured: handle}, store=SavedRows).check()


def test_a_service_that_reads_a_topic_and_consumes_nothing_of_it_is_refused():
    with pytest.raises(ValueError, match="leads.feedback"):
        Service(name="routing", summary="", consumes={LeadScored: handle}, store=SavedRows).check()


def test_a_service_reading_a_topic_written_outside_leadpipe_with_an_inbox_keeping_no_digests_is_refused():
    """Its inbox would take another record under a used id for a redelivery."""
    plain = inbox_table(sa.MetaData(schema="routing"))
    with pytest.raises(ValueError, match=r"reads \['leads.feedback'\], written outside leadpipe"):
        Service(name="routing", summary="", consumes={LeadScored: handle, LeadDispositioned: handle},
                store=SavedRows, inbox=plain).check()


def test_a_service_route_on_a_path_every_service_serves_is_refused():
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {}

    with pytest.raises(ValueError, match=r"\['/healthz'\]"):
        Service(name="routing", summary="", consumes={}, store=SavedRows, routes=[router]).check()


def test_a_service_route_taking_a_json_body_that_would_keep_a_key_given_twice_as_its_last_value_is_refused():
    from pydantic import BaseModel

    from leadpipe_common.http import StrictRoute

    class Erasure(BaseModel):
        email: str

    lenient, strict = APIRouter(), APIRouter(route_class=StrictRoute)
    for router in (lenient, strict):
        @router.post("/v1/people/erase")
        async def erase(erasure: Erasure) -> dict[str, str]:
            return {}

    routing = importlib.import_module("routing.service").SERVICE
    with pytest.raises(ValueError, match=r"\['POST /v1/people/erase'\].*route_class=StrictRoute"):
        dataclasses.replace(routing, routes=[*routing.routes, lenient]).check()
    dataclasses.replace(routing, routes=[*routing.routes, strict]).check()


def test_a_json_api_route_that_would_drop_a_query_parameter_it_does_not_take_is_refused_unless_declared_lenient():
    """A misspelt query parameter was dropped (a hand-over of one lead moved them all): every /v1/ route is a
    StrictRoute's but the paths a service names as lenient (capture's public posts and form tokens)."""
    lenient = APIRouter()

    @lenient.get("/v1/queues/{team}")
    async def queue(team: str, limit: int = 100) -> dict[str, str]:
        return {}

    routing = importlib.import_module("routing.service").SERVICE
    with pytest.raises(ValueError, match=r"\['GET /v1/queues/\{team\}'\].*lenient_paths"):
        dataclasses.replace(routing, routes=[*routing.routes, lenient]).check()
    dataclasses.replace(routing, routes=[*routing.routes, lenient], lenient_paths=frozenset({"/v1/queues/{team}"})
                        ).check()
    with pytest.raises(ValueError, match=r"names \['/v1/leeds'\] in lenient_paths"):  # a path no route serves
        dataclasses.replace(routing, lenient_paths=frozenset({"/v1/leeds"})).check()
