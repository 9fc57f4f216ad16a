#!/usr/bin/env bash
# CI: fail unless a fresh build matches the committed modules and manifest digests.
exec "$(dirname "$0")/build.sh" --check
