"""mimecast-connector: Mimecast Targeted Threat Protection alerts for security operations.

The public surface is what ``__all__`` lists; every other module is private.
"""

from __future__ import annotations

from mimecast_connector._categories import Category

__all__ = ["Category"]
