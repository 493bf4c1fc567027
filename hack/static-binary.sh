#!/usr/bin/env bash
# Builds the release operator binary statically linked (glibc, crt-static: the image has no libc)
# into its own target directory, stamped with the git commit, and prints its path.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
host=$(rustc -vV | sed -n 's/^host: //p')
commit=${COCOON_GIT_COMMIT:-$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)}
target_dir=${COCOON_STATIC_TARGET_DIR:-target/static}
# --target keeps RUSTFLAGS off build scripts and proc macros (they stay dynamic host programs).
COCOON_GIT_COMMIT=$commit RUSTFLAGS="-C target-feature=+crt-static" CARGO_TARGET_DIR=$target_dir \
  cargo build --quiet --release --locked --target "$host" -p cocoon-operator --bin cocoon-operator >&2
echo "$target_dir/$host/release/cocoon-operator"
