"""The dev inkpass stand-in can be told to fail (to see retries and dead letters in dev), and
healed again."""

from __future__ import annotations

from litestar.testing import AsyncTestClient

from mimic.billing.standin import standin_app


async def test_the_stand_in_answers_the_status_it_is_told_then_heals() -> None:
    async with AsyncTestClient(app=standin_app()) as client:
        call = "/internal/billing/invoice-event"
        assert (await client.post(call, json={"event_type": "invoice.paid"})).status_code == 200
        told = await client.put("/standin/status", json={"status": 503})
        assert told.json() == {"status": 503}
        assert (await client.post(call, json={})).status_code == 503
        assert (await client.post("/hooks/crm", content=b"{}")).status_code == 503
        assert (await client.put("/standin/status", json={"status": 42})).status_code == 400
        await client.put("/standin/status", json={"status": 200})
        assert (await client.post(call, json={})).status_code == 200
