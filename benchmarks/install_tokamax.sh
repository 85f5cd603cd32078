#!/usr/bin/env bash
# Install tokamax (a benchmark-only peer of benchmarks/kernels.py, never a torsh_fn dependency)
# offline, from the wheels in benchmarks/wheelhouse/, into the current python3.
#
#     bash benchmarks/install_tokamax.sh && PYTHONPATH=$PWD python3 benchmarks/kernels.py
#
# The wheelhouse holds tokamax and the dependencies that a machine with jax, flax, optax, chex
# and torch may lack (built with `pip download --no-deps --only-binary=:all: --python-version
# 3.12 --platform manylinux2014_x86_64 ...` package by package; it is git-ignored and travels
# with the working tree). Environment: PYTHON (default python3), WHEELHOUSE (default the folder
# beside this script).
#
# Order of attempts, each with no flag, then --break-system-packages (PEP 668 system pythons),
# then --user --break-system-packages:
#   1. pip's resolver over the wheelhouse: what is installed and satisfies a requirement is
#      kept, only what is missing (or too old) comes from the wheelhouse;
#   2. pip install --no-deps of tokamax and of every wheel whose distribution is not installed
#      (nothing installed is replaced);
#   3. no pip at all: the wheels unpacked into WHEELHOUSE/site, which kernels.py appends to
#      sys.path when `import tokamax` fails.
# It always exits 0, printing why tokamax is missing, so a batched GPU command goes on.

set -u
PY="${PYTHON:-python3}"
WH="${WHEELHOUSE:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/wheelhouse}"

report() {
    "$PY" - <<'EOF' 2>&1
try:
    import tokamax
    from tokamax._src.ops.attention import api
    print(f"tokamax {tokamax.__version__} from {tokamax.__file__}; attention implementations:",
          ", ".join(sorted(api.IMPLEMENTATIONS)))
except Exception as err:
    print(f"tokamax not importable: {type(err).__name__}: {err}")
EOF
}

importable() {
    "$PY" -c "import tokamax" >/dev/null 2>&1
}

shopt -s nullglob
wheels=("$WH"/*.whl)
if [ ${#wheels[@]} -eq 0 ]; then
    echo "install_tokamax: no wheels in $WH (carry benchmarks/wheelhouse); tokamax not installed"
    report
    exit 0
fi
tokamax_whl=("$WH"/tokamax-*.whl)
want=$(basename "${tokamax_whl[0]}" | cut -d- -f2)
have=$("$PY" -c "import importlib.metadata as m; print(m.version('tokamax'))" 2>/dev/null)
if [ "$have" = "$want" ] && importable; then
    echo "install_tokamax: tokamax $have already installed"
    report
    exit 0
fi

flag_sets=("" "--break-system-packages" "--user --break-system-packages")

try_pip() {  # try_pip LABEL ARGS...: pip install with each flag set until one succeeds
    local flags label="$1"
    shift
    for flags in "${flag_sets[@]}"; do
        # shellcheck disable=SC2086
        if "$PY" -m pip install --no-index --find-links "$WH" --disable-pip-version-check \
            $flags "$@" >"$log" 2>&1; then
            echo "install_tokamax: pip install ${flags:-(no flag)} $label ... ok"
            return 0
        fi
        echo "install_tokamax: pip install ${flags:-(no flag)} $label failed:"
        grep -E "ERROR|error:|externally|Could not|conflict" "$log" | head -5 | sed 's/^/    /'
    done
    return 1
}

log=$(mktemp)
if "$PY" -m pip --version >/dev/null 2>&1; then
    # 1. the resolver, keeping what is installed
    if try_pip "tokamax (resolver)" tokamax && importable; then
        report; rm -f "$log"; exit 0
    fi
    # 2. --no-deps, only the wheels whose distribution is missing (tokamax always)
    missing=$("$PY" - "$WH" <<'EOF'
import glob, importlib.metadata as md, os, re, sys
for whl in sorted(glob.glob(os.path.join(sys.argv[1], "*.whl"))):
    name = os.path.basename(whl).split("-")[0]
    try:
        md.version(re.sub(r"[-_.]+", "-", name))
        if name != "tokamax":
            continue
    except md.PackageNotFoundError:
        pass
    print(whl)
EOF
)
    # shellcheck disable=SC2086
    if try_pip "--no-deps ($(echo $missing | wc -w) wheels)" --no-deps $missing && importable; then
        report; rm -f "$log"; exit 0
    fi
else
    echo "install_tokamax: $PY has no pip"
fi
rm -f "$log"

# 3. unpack the wheels (kernels.py appends WHEELHOUSE/site to sys.path if tokamax is missing)
echo "install_tokamax: unpacking the wheels into $WH/site"
"$PY" - "$WH" <<'EOF' || true
import glob, os, sys, zipfile
wh = sys.argv[1]
site = os.path.join(wh, "site")
os.makedirs(site, exist_ok=True)
for whl in sorted(glob.glob(os.path.join(wh, "*.whl"))):
    zipfile.ZipFile(whl).extractall(site)
print(f"install_tokamax: unpacked; use PYTHONPATH=$PYTHONPATH:{site} outside kernels.py")
EOF
PYTHONPATH="${PYTHONPATH:-}:$WH/site" report
exit 0
