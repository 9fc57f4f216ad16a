"""``hubctl``: one module per command group (serve/config, auth, devices, stats, plugins, models,
policy, rollout, audit, report).

The console script is ``cloud_hub.cli:main``; ``python -m cloud_hub.cli`` is the same.
"""

from cloud_hub.cli.audit import audit_cmd
from cloud_hub.cli.auth import auth
from cloud_hub.cli.devices import devices
from cloud_hub.cli.models import models
from cloud_hub.cli.plugins import plugins
from cloud_hub.cli.policy import policy
from cloud_hub.cli.report import report
from cloud_hub.cli.rollout import rollout
from cloud_hub.cli.root import main
from cloud_hub.cli.serve import config, serve
from cloud_hub.cli.stats import stats

for _command in (
    serve,
    config,
    auth,
    devices,
    stats,
    plugins,
    models,
    policy,
    rollout,
    audit_cmd,
    report,
):
    main.add_command(_command)

__all__ = ["main"]
