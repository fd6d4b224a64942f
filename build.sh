#!/usr/bin/env bash
# The one entry point: build, test and run ngx_http_async_module.
#
#   ./build.sh [build]        install what is missing, build the module
#   ./build.sh test           build, run unit tests and every Test::Nginx suite
#   ./build.sh run [ADDR]     start the demo in the foreground (127.0.0.1:8080)
#
# Environment: NGINX_SRC (nginx source tree to build against, default the
# distribution's nginx-dev tree), NGINX_CONFIGURE_FLAGS, CC, NGINX_BIN,
# BUILD_DIR (default ./build), TEST_NGINX_SERVER_PORT.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
DEBIAN_NGINX_SRC=/usr/share/nginx/src
NGINX_SRC=${NGINX_SRC:-$DEBIAN_NGINX_SRC}
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so

# Debian packages each step needs, by step.
BUILD_PACKAGES=(nginx nginx-dev g++ make libssl-dev libpcre2-dev zlib1g-dev
                libsimdjson-dev)
TEST_PACKAGES=(libcmocka-dev libnginx-mod-http-echo libtest-base-perl
               libtext-diff-perl liblist-moreutils-perl libipc-run-perl
               libwww-perl curl)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: ./build.sh [command]

commands:
  build          install missing packages and build the module (default)
  test [FILES]   build, then run the cmocka unit tests and the Test::Nginx
                 suites under t/ against the stock nginx binary; with
                 FILES (t/NNN-x.t), only those suites
  run [ADDR]     build and start nginx with examples/demo.conf in the
                 foreground on ADDR (default 127.0.0.1:8080); Ctrl-C stops it
  help           this text
EOF
}

# --- dependencies -----------------------------------------------------------

missing_packages() {
    local pkg
    for pkg in "$@"; do
        if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null \
                | grep -q 'install ok installed'; then
            printf '%s\n' "$pkg"
        fi
    done
}

ensure_packages() {
    if ! command -v dpkg-query >/dev/null 2>&1; then
        log "not a Debian system: install the equivalents of: $*"
        return 0
    fi
    local missing
    missing=$(missing_packages "$@" | tr '\n' ' ')
    [ -z "${missing// /}" ] && return 0

    if [ "$(id -u)" != 0 ]; then
        die "missing packages: $missing
run as root:  apt-get update && apt-get install -y $missing"
    fi
    log "installing: $missing"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    if ! apt-get install -y -q --no-install-recommends $missing \
            >"$BUILD_DIR/apt.log" 2>&1; then
        apt-get update -q >>"$BUILD_DIR/apt.log" 2>&1
        apt-get install -y -q --no-install-recommends $missing \
            >>"$BUILD_DIR/apt.log" 2>&1 \
            || die "apt-get install failed, see $BUILD_DIR/apt.log"
    fi
}

# --- build ------------------------------------------------------------------

# Configure flags that make the module binary-compatible with the nginx it
# loads into: Debian's own flags when building against Debian's tree.
configure_flags() {
    if [ -n "${NGINX_CONFIGURE_FLAGS:-}" ]; then
        printf '%s\n' "$NGINX_CONFIGURE_FLAGS"
    elif [ -f "$NGINX_SRC/conf_flags" ]; then
        # shellcheck disable=SC1091
        (. "$NGINX_SRC/conf_flags" && printf '%s\n' "${NGX_CONF_FLAGS[*]}")
    else
        printf '%s\n' "--with-compat"
    fi
}

build_module() {
    local variant=${1:-default} cc_opt=${2:-} ld_opt=${3:-}
    mkdir -p "$BUILD_DIR"
    ensure_packages "${BUILD_PACKAGES[@]}"
    [ -x "$NGINX_SRC/configure" ] || die "no nginx configure in $NGINX_SRC (set NGINX_SRC)"

    local tree=$BUILD_DIR/nginx-$variant
    local so=$tree/objs/ngx_http_async_module.so
    local stamp=$tree/.configured

    # Reconfigure when the build inputs or the list of source files change;
    # plain edits are make's business.
    local want
    want="$NGINX_SRC|${CC:-cc}|$cc_opt|$ld_opt|$(cd "$ROOT" && ls src src/core)"
    if [ ! -f "$stamp" ] || [ "$ROOT/config" -nt "$stamp" ] \
            || [ "$(cat "$stamp")" != "$want" ]; then
        log "configuring against $NGINX_SRC ($variant)"
        rm -rf "$tree"
        cp -a "$NGINX_SRC" "$tree"
        local flags
        flags=$(configure_flags)
        # shellcheck disable=SC2086
        (cd "$tree" && ./configure $flags --with-compat \
            ${CC:+--with-cc="$CC"} \
            --with-cc-opt="-g -O2 -fPIC $cc_opt" \
            --with-ld-opt="$ld_opt" \
            --add-dynamic-module="$ROOT" >"$tree/configure.log" 2>&1) \
            || { tail -20 "$tree/configure.log" >&2; die "configure failed"; }
        printf '%s\n' "$want" >"$stamp"
    fi
    log "compiling ($variant)"
    make -C "$tree" -f objs/Makefile modules >"$tree/make.log" 2>&1 \
        || { grep -E 'error|Error' "$tree/make.log" | head -30 >&2; die "build failed, see $tree/make.log"; }
    MODULE_SO=$so
}

cmd_build() {
    build_module default
    printf '%s\n' "$MODULE_SO"
}

# --- tests ------------------------------------------------------------------

run_unit_tests() {
    local cxx=${CXX:-g++} extra=${1:-}
    local out=$BUILD_DIR/unit
    mkdir -p "$out"
    local core_srcs=("$ROOT"/src/core/*.cpp)
    local t name failed=0
    for t in "$ROOT"/t/unit/test_*.cpp; do
        [ -f "$t" ] || continue
        name=$(basename "$t" .cpp)
        log "unit: $name"
        # shellcheck disable=SC2086
        $cxx -std=c++17 -fno-exceptions -fno-rtti -Wall -Wextra -Werror -g \
            $extra -I"$ROOT/src" "$t" "${core_srcs[@]}" \
            -lcmocka -lsimdjson -o "$out/$name" || { failed=1; continue; }
        "$out/$name" || failed=1
    done
    return $failed
}

# Our compatible Test::Nginx runner is used only when the real one is absent.
prove_include_args() {
    if perl -MTest::Nginx::Socket -e1 2>/dev/null; then
        log "using the installed Test::Nginx"
    else
        printf '%s\n' "-I$ROOT/t/lib"
    fi
}

run_integration_tests() {
    local so=$1
    shift
    [ -f "$ECHO_MODULE" ] || die "missing $ECHO_MODULE"
    export TEST_NGINX_BINARY=$NGINX_BIN
    export TEST_NGINX_LOAD_MODULES="$so $ECHO_MODULE"
    export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$BUILD_DIR/servroot}
    export ASYNC_MODULE_SO=$so
    local inc suites=("$@")
    inc=$(prove_include_args)
    if [ ${#suites[@]} -eq 0 ]; then
        suites=("$ROOT"/t/[0-9]*.t)
        if [ -n "$inc" ] && compgen -G "$ROOT/t/selftest/*.t" >/dev/null; then
            suites+=("$ROOT"/t/selftest/*.t)
        fi
    fi
    log "prove: ${#suites[@]} suites"
    # shellcheck disable=SC2086
    (cd "$ROOT" && prove $inc -I"$ROOT/t/lib" "${suites[@]}")
}

# ./build.sh test [MODE] [t/NNN-x.t ...]: named suites only skip unit tests.
cmd_test() {
    local mode=plain
    case "${1:-}" in
        plain|asan|valgrind) mode=$1; shift ;;
    esac
    ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    case "$mode" in
        plain)
            build_module default
            [ $# -gt 0 ] || run_unit_tests
            run_integration_tests "$MODULE_SO" "$@"
            ;;
        *) usage; exit 2 ;;
    esac
}

# --- demo -------------------------------------------------------------------

cmd_run() {
    local listen=${1:-127.0.0.1:8080}
    ensure_packages "${BUILD_PACKAGES[@]}" libnginx-mod-http-echo
    build_module default
    local prefix=$BUILD_DIR/demo
    mkdir -p "$prefix/conf" "$prefix/logs" "$prefix/tmp"
    sed -e "s#@LISTEN@#$listen#g" \
        -e "s#@MODULE_SO@#$MODULE_SO#g" \
        -e "s#@ECHO_SO@#$ECHO_MODULE#g" \
        -e "s#@EXAMPLES@#$ROOT/examples#g" \
        "$ROOT/examples/demo.conf" >"$prefix/conf/nginx.conf"
    "$NGINX_BIN" -p "$prefix" -c conf/nginx.conf -t -q
    cat <<EOF

ngx_http_async_module demo on http://$listen/  (Ctrl-C stops it)

  curl -s http://$listen/status
EOF
    exec "$NGINX_BIN" -p "$prefix" -c conf/nginx.conf -g 'daemon off;'
}

# --- main -------------------------------------------------------------------

command=${1:-build}
[ $# -gt 0 ] && shift
case "$command" in
    build) cmd_build "$@" ;;
    test) cmd_test "$@" ;;
    run) cmd_run "$@" ;;
    help|-h|--help) usage ;;
    *) usage; exit 2 ;;
esac
