#!/usr/bin/env bash
# Build the sample plugins (wasm_plugins/*.wasm) and the hostile test plugins
# (wasm_plugins/tests/*.wasm) reproducibly, pin the samples' digests in their manifests,
# and print every sha256.
#
#   wasm_plugins/build.sh           build and write the modules
#   wasm_plugins/build.sh --check   build into a temporary folder and fail unless the result
#                                   matches the committed modules and manifests byte for byte
#
# Needs Debian's clang + lld (clang 14 in bookworm: the committed bytes come from it) and node
# with the npm packages in package-lock.json (npm ci). Fixed flags, no timestamps, no paths:
# the same toolchain gives the same bytes.
set -euo pipefail
cd "$(dirname "$0")"

CHECK=0
[ "${1:-}" = "--check" ] && CHECK=1

C_PLUGINS=(pii_redact)
AS_PLUGINS=(prompt_guard topic_router)
TEST_PLUGINS=(fixed_verdict spin memhog net wasi_fs grow flood wasi_write)

CFLAGS=(--target=wasm32 -Os -nostdlib -ffreestanding -fno-builtin -Wall -Wextra -Werror
        -Wno-unused-function -Wl,--no-entry -Wl,--strip-all -Wl,--gc-sections)
ASFLAGS=(-O3 --noAssert --runtime incremental --use abort=src/as/extism/abortPlugin)

command -v clang >/dev/null || { echo "error: clang not found; apt-get install clang lld" >&2; exit 1; }
command -v wasm-ld >/dev/null || { echo "error: wasm-ld not found; apt-get install lld" >&2; exit 1; }
if [ ! -x node_modules/.bin/asc ]; then
  command -v npm >/dev/null || { echo "error: npm not found; install node and npm" >&2; exit 1; }
  npm ci --no-audit --no-fund --silent
fi

out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mkdir -p "$out/tests"

for name in "${C_PLUGINS[@]}"; do
  clang "${CFLAGS[@]}" -o "$out/$name.wasm" "src/c/$name.c"
done
for name in "${AS_PLUGINS[@]}"; do
  node_modules/.bin/asc "src/as/$name.ts" -o "$out/$name.wasm" "${ASFLAGS[@]}"
done
for name in "${TEST_PLUGINS[@]}"; do
  clang "${CFLAGS[@]}" -o "$out/tests/$name.wasm" "tests/src/$name.c"
done

status=0
for name in "${C_PLUGINS[@]}" "${AS_PLUGINS[@]}"; do
  digest=$(sha256sum "$out/$name.wasm" | cut -d' ' -f1)
  manifest="$name.plugin.toml"
  if [ "$CHECK" = 1 ]; then
    if ! cmp -s "$out/$name.wasm" "$name.wasm"; then
      echo "MISMATCH $name.wasm: a fresh build differs from the committed module" >&2; status=1
    fi
    if ! grep -q "^sha256 = \"$digest\"$" "$manifest"; then
      echo "MISMATCH $manifest: sha256 is not $digest" >&2; status=1
    fi
  else
    cp "$out/$name.wasm" "$name.wasm"
    sed -i "s/^sha256 = \".*\"$/sha256 = \"$digest\"/" "$manifest"
  fi
  echo "$digest  $name.wasm"
done
for name in "${TEST_PLUGINS[@]}"; do
  digest=$(sha256sum "$out/tests/$name.wasm" | cut -d' ' -f1)
  if [ "$CHECK" = 1 ]; then
    if ! cmp -s "$out/tests/$name.wasm" "tests/$name.wasm"; then
      echo "MISMATCH tests/$name.wasm: a fresh build differs from the committed module" >&2; status=1
    fi
  else
    cp "$out/tests/$name.wasm" "tests/$name.wasm"
  fi
  echo "$digest  tests/$name.wasm"
done
[ "$CHECK" = 1 ] && [ "$status" = 0 ] && echo "ok: fresh build matches the committed modules"
exit $status
