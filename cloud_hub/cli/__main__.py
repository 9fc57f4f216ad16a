"""``python -m cloud_hub.cli``: the same as ``hubctl``."""

from cloud_hub.cli import main

main()
