"""Tests of the Mimecast API simulator: that it behaves as ``shared/docs/mimecast-api.md`` says."""
