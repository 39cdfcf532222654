"""Every seed action through our client against the emulator over HTTP, parsed and checked."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from service.ccc.catalog import load_catalog
from service.ccc.client import CccClient
from service.ccc.settings import RateLimitSettings
from service.emulator.config import (
    client_settings,
)
from service.emulator.server import EmulatorServer
from tests.inspection import inspect
from tests.params import valid_params
from tests.shape import assert_shape

CATALOG = load_catalog()


@pytest.fixture
async def client(emulator: EmulatorServer) -> AsyncIterator[CccClient]:
    settings = client_settings(emulator.url, rate_limits=RateLimitSettings.off())
    emulator.clock.advance(600)  # calls have happened, so contact ids exist
    async with CccClient(settings) as ccc:
        yield ccc


@pytest.mark.parametrize("action", sorted(CATALOG.actions))
async def test_every_seed_action_parses_into_its_typed_response(
    emulator: EmulatorServer, client: CccClient, action: str
) -> None:
    # A fresh emulator per action: side effects of one (AddPhoneNumber) would trip another.
    spec = CATALOG[action]
    response = await client.call(action, valid_params(emulator.sim, action, instance="ccc-a"))
    assert isinstance(response, spec.response_model)
    assert response.success is True
    assert response.request_id
    # What the model was given, dumped by wire name, is exactly the catalogue's shape: nothing
    # missing, nothing unknown (extras are kept and would dump too).
    assert_shape(response.model_dump(by_alias=True, exclude_unset=True), dict(spec.response))
    requests = await inspect(emulator, "requests")
    assert [(r["action"], r["code"]) for r in requests] == [(action, "OK")]
