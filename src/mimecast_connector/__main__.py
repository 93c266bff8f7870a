"""``python -m mimecast_connector``: the command line."""

from mimecast_connector._cli import main

main()
