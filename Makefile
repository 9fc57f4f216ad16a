# `make run` and `make test` each set everything up first (idempotent), then do their job.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test check lint format bench plugins plugins-check deploy-check protos

setup:
	./scripts/setup.sh

# The README's main command: embedded NATS + hub + edge agent with the bundled model.
run: setup
	$(BIN)/open-autoglm up

# The README's test command: lint, type-check, then the whole suite (what CI runs).
# Byte-code caches stay on even where the environment sets PYTHONDONTWRITEBYTECODE: otherwise
# every xdist worker and every process a test starts recompiles the project and re-rewrites
# each test module's asserts (about 8 s of CPU per worker).
test: lint plugins-check
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/python -m pytest -q -n 3 --dist loadfile --max-worker-restart 0

# Rebuild the sample and test plugins into the working tree.
plugins: setup
	./wasm_plugins/build.sh

# Rewrite shared/proto's generated gRPC code after a .proto changed (tests/grpc/test_protos.py checks it).
protos: setup
	$(BIN)/python scripts/gen_protos.py

# Fail unless a fresh build of the plugins matches the committed .wasm byte for byte.
plugins-check: setup
	./wasm_plugins/check.sh

# Render and validate deploy/ offline: K3s overlays, compose file, Dockerfiles (part of `make test`).
deploy-check: setup
	$(BIN)/python -m pytest -q tests/deploy

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: test

bench: setup
	$(BIN)/python bench/agent_vs_raw.py
	$(BIN)/python bench/shared_compute.py
	$(BIN)/python bench/escalation_roundtrip.py
	$(BIN)/python bench/joint_inference.py
	$(BIN)/python bench/plugin_chain.py
	$(BIN)/python bench/telemetry_overhead.py
	$(BIN)/python bench/grpc_vs_rest.py
	$(BIN)/python bench/fleet_scale.py
