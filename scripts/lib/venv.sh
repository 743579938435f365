# Sourced by scripts/start and scripts/test: make .venv match a lock file, installing only
# when the lock or pyproject.toml changed since the last install.
ensure_venv() {
    local lock=$1
    local stamp=".venv/.installed-$(basename "$lock")"
    local want
    want=$(cat "$lock" pyproject.toml | sha256sum | cut -d' ' -f1)
    if [[ -x .venv/bin/python && -f $stamp && $(<"$stamp") == "$want" ]]; then
        return 0
    fi
    python3 -m venv .venv
    .venv/bin/python -m pip install --quiet --require-hashes --no-deps -r "$lock"
    .venv/bin/python -m pip install --quiet --no-deps -e .
    echo "$want" >"$stamp"
}
