"""A live model swap through the desired state: the bundled GGUF pushed to agl_models, fetched,
verified and swapped in under continuous load (real agent, real llama.cpp, real nats-server)."""

from __future__ import annotations

import re
import threading
from collections import Counter
from pathlib import Path

import httpx
from click.testing import CliRunner

from cloud_hub.cli import main as hubctl
from cloud_hub.control.artifacts import signing_key
from shared.model_files import BUNDLED_MODEL_ID, bundled_model_path
from tests.fixtures.agents import edge
from tests.fixtures.names import LOCAL_MODEL
from tests.fixtures.waiting import poll

from .conftest import RestartableNats


def _hubctl(server: RestartableNats, tmp: Path, *args: str) -> str:
    out = CliRunner().invoke(hubctl, [*args, "--nats-url", server.url, "--dir", str(tmp / "auth")])
    assert out.exit_code == 0, out.output
    return out.output


def test_the_main_model_is_swapped_under_load_with_no_failed_request(
    js_nats: RestartableNats, tmp_path: Path
) -> None:
    signer = signing_key(tmp_path / "auth").public
    out = _hubctl(js_nats, tmp_path, "models", "push", str(bundled_model_path()),
                  "--id", BUNDLED_MODEL_ID)  # fmt: skip
    sha = re.findall(r"@([0-9a-f]{64})", out)[-1]
    policy = tmp_path / "model.toml"
    policy.write_text(f'[models.{BUNDLED_MODEL_ID}]\nsha256 = "{sha}"\nmain = true\nn_ctx = 512\n')
    cache = tmp_path / "cache"
    codes: Counter[int] = Counter()
    served_by: Counter[str] = Counter()
    stop = threading.Event()
    with edge(js_nats.url, device_id="dev-m", hub={"heartbeat_s": 0.5},
              desired={"reconcile_s": 0.5, "cache_dir": str(cache), "trusted_signers": [signer]}) as agent:  # fmt: skip
        registry = agent.state.registry
        before = registry.main().runtime

        def load() -> None:
            body = {
                "model": LOCAL_MODEL,
                "messages": [{"role": "user", "content": "Count to five."}],
                "max_tokens": 6,
            }
            with httpx.Client(timeout=120) as client:
                while not stop.is_set():
                    codes[client.post(f"{agent.v1}/chat/completions", json=body).status_code] += 1
                    served_by["old" if registry.main().runtime is before else "new"] += 1

        threads = [threading.Thread(target=load) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            poll(lambda: codes[200] >= 3, 60, "requests before the swap")
            _hubctl(js_nats, tmp_path, "policy", "set", str(policy), "--device", "dev-m")
            poll(lambda: registry.main().spec.path.parent == cache, 120, "the swap")
            poll(lambda: served_by["new"] >= 6, 60, "requests on the new model")
            poll(lambda: not agent.state._retiring, 60, "the old model to retire")
            # Back to the local model when the device layer no longer names one.
            policy.write_text("[router]\nload_slo_s = 60.0\n")
            _hubctl(js_nats, tmp_path, "policy", "set", str(policy), "--device", "dev-m")
            poll(lambda: registry.main().spec.path == bundled_model_path(), 120, "the swap back")
            n = sum(codes.values())
            poll(lambda: sum(codes.values()) >= n + 3, 60, "requests after the swap back")
        finally:
            stop.set()
            for t in threads:
                t.join(120)
    assert set(codes) == {200}, codes
    assert served_by["old"] > 0 and served_by["new"] > 0
