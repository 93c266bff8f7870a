"""A local, faithful Mimecast TTP log API: the room only tests, the demo and benchmarks enter.

The product never imports this package. It serves the three Targeted Threat Protection log
endpoints over HTTP on loopback, for many tenants, with both authentication schemes (API 2.0
OAuth bearer tokens, API 1.0 HMAC signatures), opaque paging, per-tenant rate limits, seeded
realistic records, late records, live mode and injectable faults. It also serves the SIEM
receipt logs of both API versions (the 2.0 batch listing with presigned gzip NDJSON files, the
1.0 ``get-siem-logs`` zip files; ``SimTenant.generate_receipts``). Behaviour follows
``shared/docs/mimecast-api.md`` and ``shared/docs/mta-rejections.md``; the docstrings cite their
sections.

    from mimecast_connector.simulator import Simulator, faults
    from mimecast_connector import Category

    with Simulator(seed=7) as sim:
        acme = sim.add_tenant("acme")
        acme.generate(Category.URL, count=1000)
        sim.inject(faults.HttpStatus(503), tenant="acme", category=Category.URL)
        ...  # point a client at sim.url with acme.client_id / acme.client_secret

Import from here only; the underscored modules are private. ``faults`` is a public module.
"""

from __future__ import annotations

from mimecast_connector.simulator import faults
from mimecast_connector.simulator._scenario import ScenarioError
from mimecast_connector.simulator._server import LoggedRequest
from mimecast_connector.simulator._siemlog import SiemFileInfo
from mimecast_connector.simulator._simulator import Simulator
from mimecast_connector.simulator._tenant import SimTenant

__all__ = ["LoggedRequest", "ScenarioError", "SiemFileInfo", "SimTenant", "Simulator", "faults"]
