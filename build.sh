#!/usr/bin/env bash
# The one entry point: build, test and run ngx_http_async_module.
#
#   ./build.sh [build]        install what is missing, build the module
#   ./build.sh test           build, run unit tests, 3 s of every fuzzer and
#                             every Test::Nginx suite
#   ./build.sh test asan      the same with AddressSanitizer + UBSan, plus a
#                             short fuzzing run
#   ./build.sh test valgrind  the integration suites with nginx under memcheck
#   ./build.sh fuzz [SECONDS] run every libFuzzer target in t/fuzz/
#   ./build.sh lint           include layering, clang-tidy, cppcheck, clang-format
#   ./build.sh run [ADDR]     start the demo in the foreground (127.0.0.1:8080)
#   ./build.sh matrix [VER..] the module against every nginx in ../shared/nginx-src,
#                             every suite against the newest stable one
#   ./build.sh deb            the Debian package libnginx-mod-http-async
#
# Environment: NGINX_SRC (nginx source tree to build against, default the
# distribution's nginx-dev tree), NGINX_CONFIGURE_FLAGS, CC, NGINX_BIN,
# BUILD_DIR (default ./build), TEST_NGINX_SERVER_PORT, NGINX_SRC_DIR (the
# tarballs of `matrix`, default ../shared/nginx-src beside the checkout).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD_DIR=${BUILD_DIR:-$ROOT/build}
NGINX_BIN=${NGINX_BIN:-/usr/sbin/nginx}
DEBIAN_NGINX_SRC=/usr/share/nginx/src
NGINX_SRC=${NGINX_SRC:-$DEBIAN_NGINX_SRC}
ECHO_MODULE=/usr/lib/nginx/modules/ngx_http_echo_module.so

# Debian packages each step needs, by step.
BUILD_PACKAGES=(nginx nginx-dev g++ make libssl-dev libpcre2-dev zlib1g-dev
                libsimdjson-dev
                # store=redis: hiredis's async API (0.14 on Debian 12)
                libhiredis-dev)
TEST_PACKAGES=(libcmocka-dev libnginx-mod-http-echo libtest-base-perl
               libtext-diff-perl liblist-moreutils-perl libipc-run-perl
               libwww-perl curl
               # async_status: the reference parser of the Prometheus text
               python3-prometheus-client
               # the browser test of the demo's job page (t/045-browser.t)
               chromium chromium-driver
               # a few seconds of every libFuzzer target (cmd_fuzz)
               clang libclang-rt-14-dev llvm
               # HTTP/2 and HTTP/3 clients (t/060-http2.t, t/061-http3.t)
               nghttp2-client ngtcp2-client python3-h2 openssl
               # store=redis suites start their own (t/070, t/071)
               redis-server redis-tools)
# The sanitizer build and the fuzzers use clang (libFuzzer; one runtime for
# ASan and UBSan); gcc's runtimes (ASAN_CC=gcc) come with g++.
# llvm: llvm-symbolizer, for file:line in clang's sanitizer reports.
ASAN_PACKAGES=(clang libclang-rt-14-dev llvm)
FUZZ_PACKAGES=(clang libclang-rt-14-dev llvm libsimdjson-dev)
VALGRIND_PACKAGES=(valgrind)
LINT_PACKAGES=(clang clang-tidy clang-format cppcheck)

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'build.sh: %s\n' "$*" >&2; exit 1; }

usage() {
    cat >&2 <<'EOF'
usage: ./build.sh [command]

commands:
  build          install missing packages and build the module (default)
  test [MODE] [FILES]
                 build, then run the cmocka unit tests, every fuzzer for
                 TEST_FUZZ_SECONDS (default 3, when clang++ is present)
                 and the Test::Nginx suites under t/ against the stock
                 nginx binary; with FILES (t/NNN-x.t), only those
                 suites.  MODE:
                   asan      module and unit tests built with
                             AddressSanitizer + UndefinedBehaviorSanitizer,
                             nginx run with the runtime preloaded; any
                             sanitizer report fails; error_log at debug
                             (TEST_NGINX_LOG_LEVEL); plus `fuzz 5`
                   valgrind  the suites with nginx under valgrind memcheck
                             (suppressions: t/valgrind.suppress)
  fuzz [SECONDS] build the libFuzzer targets t/fuzz/fuzz_*.cpp into
                 BUILD_DIR/fuzz and run each for SECONDS (default 30) on a
                 copy of its seed corpus t/fuzz/corpus/NAME
  lint           the include layering of src/ (t/tools/check_includes.pl),
                 clang-tidy (.clang-tidy) and cppcheck on src/, and a
                 clang-format check (.clang-format) of src/ and t/unit/
  run [ADDR]     build and start nginx with examples/demo.conf in the
                 foreground on ADDR (default 127.0.0.1:8080); Ctrl-C stops it;
                 NGINX_BIN and NGINX_SRC select another nginx (a matrix tree)
  matrix [VERSION...]
                 build the module against every nginx-*.tar.gz in
                 NGINX_SRC_DIR (default ../shared/nginx-src; sha256 checked
                 against its README) with gcc -Werror, and clang for the
                 newest; build the newest stable nginx with the echo module,
                 HTTP/2, HTTP/3, SSL and threads and run every suite against
                 it; print a table (trees kept in BUILD_DIR/matrix)
  deb            build the Debian package libnginx-mod-http-async
                 (dh-sequence-nginx) into BUILD_DIR/deb; t/deb/test-deb.sh
                 installs, checks and purges it (root, ASYNC_TEST_DEB=1)
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
    mkdir -p "$BUILD_DIR"

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
    want="$ROOT|$NGINX_SRC|${CC:-cc}|$cc_opt|$ld_opt|$(cd "$ROOT" && find src -type f | LC_ALL=C sort | tr '\n' ' ')"
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
        # the runner's self-tests check the runner, not the module: they
        # run once, in the plain mode (007-valgrind cannot run through the
        # asan wrapper, nor under valgrind itself)
        if [ -n "$inc" ] && [ -z "${ASYNC_SANITIZER:-}" ] \
                && [ -z "${TEST_NGINX_USE_VALGRIND:-}" ] \
                && compgen -G "$ROOT/t/selftest/*.t" >/dev/null; then
            suites+=("$ROOT"/t/selftest/*.t)
        fi
    fi
    log "prove: ${#suites[@]} suites"
    # shellcheck disable=SC2086
    # only $inc may put t/lib on @INC: it must not shadow an installed
    # Test::Nginx (the Test::More suites `use lib 't/lib'` themselves)
    (cd "$ROOT" && prove $inc "${suites[@]}")
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
            if [ $# -eq 0 ]; then
                run_unit_tests
                # every fuzzer gets a few seconds: some bugs (an id decoder
                # reading past its input) only a fuzzer finds
                if command -v clang++ >/dev/null 2>&1; then
                    cmd_fuzz "${TEST_FUZZ_SECONDS:-3}"
                else
                    log "fuzz: clang++ missing, fuzzers skipped"
                fi
            fi
            run_integration_tests "$MODULE_SO" "$@"
            ;;
        asan) cmd_test_asan "$@" ;;
        valgrind) cmd_test_valgrind "$@" ;;
    esac
}

# --- sanitizers ---------------------------------------------------------------

# The module and the unit tests are instrumented; the stock nginx is not, so
# the runtime is preloaded into it.  UBSan keeps going after a report (the
# scan below fails the run); ASan does too for recoverable errors, so one
# bug does not turn every later test into a cascade of failures.
SAN_CFLAGS="-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fsanitize-recover=address"
# nginx dlclose()s modules when it destroys the cycle at exit, before
# LeakSanitizer runs: -z nodelete keeps the module mapped so leak stacks
# still name its functions.
SAN_LDFLAGS="-fsanitize=address,undefined -Wl,-z,nodelete"

# The shared ASan runtime matching the compiler the module is built with.
sanitizer_runtime() {
    local cc=${CC:-cc} lib
    if "$cc" --version 2>/dev/null | head -1 | grep -q clang; then
        lib=$("$cc" -print-file-name="libclang_rt.asan-$(uname -m).so")
    else
        lib=$("$cc" -print-file-name=libasan.so)
    fi
    [ -f "$lib" ] || die "no ASan runtime for $cc (got '$lib')"
    readlink -f "$lib"
}

# Prints every sanitizer report found in the files given and returns 1 if
# there is one.  Memory errors and UBSan "runtime error:" lines count
# wherever they happen; leaks only when a frame of the leak's allocation
# stack is in the module (nginx does not free everything at exit).
scan_sanitizer_reports() {
    perl - "$ROOT/src/" "$@" <<'PERL'
use strict;
use warnings;

my $src = shift;
my (@found, $ignored);    # [file, one-line headline, full report]

for my $file (@ARGV) {
    open my $in, '<', $file or next;
    my $text = do { local $/; <$in> };
    close $in;

    # UBSan: one line per report, its stack (print_stacktrace=1) below.
    while ($text =~ /^(.*runtime error:.*\n(?:\s+#\d+ .*\n)*)/mg) {
        my $r = $1;
        my ($head) = $r =~ /^(.*runtime error:.*)$/m;
        push @found, [$file, $head, $r];
    }
    # ASan memory errors, from the ERROR line to the closing =====.
    while ($text =~ /^(==\d+==ERROR: AddressSanitizer:.*?)(?:^={20,}\s*$|\z)/msg) {
        my $r = $1;
        my ($head) = $r =~ /^SUMMARY: (.*)$/m;
        ($head) = $r =~ /ERROR: (.*)$/m unless $head;
        push @found, [$file, $head, $r];
    }
    # LeakSanitizer: one paragraph per leaked allocation site.
    while ($text =~ /^((?:Direct|Indirect) leak of .*?)(?:\n\s*\n|\z)/msg) {
        my $r = $1;
        my ($frame) = $r =~ m{^\s+#\d+ \S+ (.*(?:\Q$src\E|ngx_http_async_module\.so).*)$}m;
        if ($frame) {
            my ($what) = $r =~ /^(\S+ leak of \d+ byte\(s\) in \d+ object\(s\))/;
            push @found, [$file, "$what from $frame", $r];
        } else {
            $ignored++;
        }
    }
}

print "sanitizer: $ignored leak(s) without a module frame ignored (nginx's own)\n"
    if $ignored;
exit 0 unless @found;

printf "sanitizer: %d report(s):\n", scalar @found;
print "  $_->[0]: $_->[1]\n" for @found;
print "\nthe first one in full:\n$found[0][2]\n";
exit 1;
PERL
}

cmd_test_asan() {
    # clang by default: with gcc, UBSan's runtime is a library apart from
    # ASan's and ignores log_path, so its reports only reach error.log.
    local CC=${ASAN_CC:-clang}
    ensure_packages "${ASAN_PACKAGES[@]}"
    local runtime
    runtime=$(sanitizer_runtime)
    local cflags=$SAN_CFLAGS
    # nginx exports its own ngx_modules[], which interposes the module's
    # (same name, looked up by dlsym): clang must register the module's
    # globals through private aliases, or ASan poisons the redzone of a
    # 3-entry array at the start of nginx's much longer one and reports an
    # overflow on the next reload.  gcc always uses private aliases.
    if "$CC" --version 2>/dev/null | head -1 | grep -q clang; then
        cflags="$cflags -fsanitize-address-use-odr-indicator"
    fi
    build_module asan "$cflags" "$SAN_LDFLAGS"

    if [ $# -eq 0 ]; then
        # Unit tests stop at the first report: they are small programs.
        ASAN_OPTIONS=detect_leaks=1 \
        UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
            run_unit_tests "-O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all" \
            || die "unit tests failed under the sanitizers"
        cmd_fuzz "${ASAN_FUZZ_SECONDS:-5}"
    fi

    export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$BUILD_DIR/servroot-asan}
    # Reports go to files next to the server root's logs/ (which the runner
    # wipes for every block); nginx's workers may run as another user.
    local reports=$TEST_NGINX_SERVROOT/sanitizer
    rm -rf "$reports"
    mkdir -p "$reports"
    chmod 1777 "$reports"
    # Whatever a sanitizer writes to stderr lands in error.log: keep them all.
    export TEST_NGINX_ERROR_LOG=$reports/error.log
    # memory-growth assertions mean nothing under ASan's quarantine
    export ASYNC_SANITIZER=asan
    # one pass with every debug line: nginx's debug log reads each timer's
    # data as a connection (ngx_event_ident), and ASan sees any such read
    # past the object (AsyncNginx and Test::Nginx::Socket both honour it)
    export TEST_NGINX_LOG_LEVEL=${TEST_NGINX_LOG_LEVEL:-debug}

    # Only nginx gets the runtime, not prove and perl: the runner starts
    # TEST_NGINX_BINARY, a wrapper that sets the environment and execs the
    # stock binary (same pid, so the runner's process handling is unchanged).
    # nginx is a fork()ing daemon: the master reads these at exec, workers
    # inherit the parsed options.  fast_unwind_on_malloc=0: nginx is built
    # without frame pointers, and leak stacks must reach the module.
    local wrapper=$BUILD_DIR/nginx-asan/nginx-asan
    cat >"$wrapper" <<WRAPPER
#!/bin/sh
# generated by build.sh test asan: stock nginx with the ASan runtime
export LD_PRELOAD='$runtime'
export ASAN_OPTIONS='detect_leaks=1:fast_unwind_on_malloc=0:malloc_context_size=40:abort_on_error=0:halt_on_error=0:log_path=$reports/asan'
export UBSAN_OPTIONS='print_stacktrace=1:halt_on_error=0:log_path=$reports/ubsan'
exec '$NGINX_BIN' "\$@"
WRAPPER
    chmod +x "$wrapper"
    log "asan: $NGINX_BIN with $runtime preloaded"
    local status=0
    NGINX_BIN=$wrapper run_integration_tests "$MODULE_SO" "$@" || status=$?

    log "asan: scanning $reports"
    local found=0
    scan_sanitizer_reports "$reports"/asan.* "$reports"/ubsan.* \
        "$reports/error.log" >"$reports/summary.txt" || found=1
    if [ $found -ne 0 ]; then
        cat "$reports/summary.txt" >&2
        die "sanitizer reports found, see above and $reports"
    fi
    grep -h '^sanitizer:' "$reports/summary.txt" >&2 || true
    [ $status -eq 0 ] || die "Test::Nginx suites failed under the sanitizers"
    log "asan: no sanitizer reports"
}

# memcheck: invalid reads and writes, uses of uninitialised values, and
# definite leaks; --keep-debuginfo keeps the module's symbols after nginx
# dlclose()s it at exit, so leak stacks still name its functions.
valgrind_options() {
    printf '%s ' --tool=memcheck --leak-check=full --show-possibly-lost=no \
        --errors-for-leak-kinds=definite --keep-debuginfo=yes \
        --num-callers=50 --gen-suppressions=all \
        --suppressions="$ROOT/t/valgrind.suppress"
}

cmd_test_valgrind() {
    ensure_packages "${VALGRIND_PACKAGES[@]}"
    case "$ROOT" in
        *[[:space:]]*) die "valgrind: the runner splits options on spaces; move the checkout to a path without them" ;;
    esac
    build_module default
    export TEST_NGINX_SERVROOT=${TEST_NGINX_SERVROOT:-$BUILD_DIR/servroot-valgrind}
    # Both harnesses read TEST_NGINX_USE_VALGRIND: Test::Nginx::Socket's
    # runner and t/lib/AsyncNginx.pm wrap nginx in valgrind with these
    # options (a non-numeric value is the option string, as upstream) and
    # fail on any report: the runner after every block, AsyncNginx at
    # every stop.  Everything is ~20x slower under valgrind: AsyncNginx
    # waits longer for nginx, and its suites skip or widen their pure
    # timing assertions (AsyncNginx::slow).
    export TEST_NGINX_USE_VALGRIND
    TEST_NGINX_USE_VALGRIND=$(valgrind_options)
    export TEST_NGINX_TIMEOUT=${TEST_NGINX_TIMEOUT:-30}
    export TEST_NGINX_SLEEP=${TEST_NGINX_SLEEP:-1}

    run_integration_tests "$MODULE_SO" "$@"
}

# --- fuzzing ------------------------------------------------------------------

cmd_fuzz() {
    local seconds=${1:-30}
    case "$seconds" in
        ''|*[!0-9]*) die "fuzz: SECONDS must be a number, got '$seconds'" ;;
    esac
    mkdir -p "$BUILD_DIR"
    ensure_packages "${FUZZ_PACKAGES[@]}"
    local out=$BUILD_DIR/fuzz
    mkdir -p "$out"
    local target name bin corpus artifacts failed=()
    for target in "$ROOT"/t/fuzz/fuzz_*.cpp; do
        [ -f "$target" ] || continue
        name=$(basename "$target" .cpp)
        name=${name#fuzz_}
        bin=$out/fuzz_$name
        log "fuzz: building $name"
        clang++ -std=c++17 -g -O1 -fno-omit-frame-pointer \
            -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
            -I"$ROOT/src" "$target" "$ROOT"/src/core/*.cpp -lsimdjson \
            -o "$bin" || die "fuzz: building $target failed"

        # libFuzzer adds what it finds to the corpus directory: work on a
        # copy, never on the checked-in seeds.
        corpus=$out/corpus/$name
        artifacts=$out/artifacts/$name
        rm -rf "$corpus" "$artifacts"
        mkdir -p "$corpus" "$artifacts"
        if [ -d "$ROOT/t/fuzz/corpus/$name" ]; then
            cp -a "$ROOT/t/fuzz/corpus/$name/." "$corpus/"
        else
            log "fuzz: no seed corpus t/fuzz/corpus/$name"
        fi

        log "fuzz: running $name for ${seconds}s"
        if ! (cd "$out" && UBSAN_OPTIONS=print_stacktrace=1 \
                "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
                    -print_final_stats=1 -artifact_prefix="$artifacts/" \
                    "$corpus") >"$out/$name.log" 2>&1; then
            tail -40 "$out/$name.log" >&2
            local input
            for input in "$artifacts"/*; do
                [ -f "$input" ] || continue
                printf 'build.sh: fuzz_%s failed on input %s\n  reproduce: %s %s\n' \
                    "$name" "$input" "$bin" "$input" >&2
            done
            failed+=("$name")
        else
            grep -E '^stat::number_of_executed_units' "$out/$name.log" \
                | sed "s/^/==> fuzz: $name: /" >&2 || true
        fi
    done
    [ ${#failed[@]} -eq 0 ] || die "fuzz: failing targets: ${failed[*]} (logs in $out)"
}

# --- lint ---------------------------------------------------------------------

# compile_commands.json for src/*.cpp from the default build: the exact
# flags and nginx include paths make uses, with the C++ driver clang-tidy
# understands instead of cxx.sh.
write_compile_commands() {
    local tree=$1 dest=$2
    (cd "$tree" && make -f objs/Makefile -n -B modules 2>/dev/null) \
        | perl -e '
            my ($tree, $root) = @ARGV;
            local $/; my $all = <STDIN>; $all =~ s/\\\n//g;
            my @out;
            for my $line (split /\n/, $all) {
                next unless $line =~ m{cxx\.sh\s+\S+\s+\S+\s+(.*?\s(\S+\.cpp))\s*$};
                my ($args, $file) = ($1, $2);
                $args =~ s/\s-o\s+\S+//;
                $args =~ s/\s-(?:Wmissing-prototypes|Wstrict-prototypes|Wold-style-definition|Wnested-externs|Wbad-function-cast|Wdeclaration-after-statement|Werror|std=\S+)\b//g;
                $args =~ s/\s\Q$file\E\s*$//;
                my $cmd = "clang++ -std=c++17 -fno-exceptions -fno-rtti $args $file";
                $cmd =~ s/(["\\])/\\$1/g;
                push @out, qq(  {"directory": "$tree", "file": "$file", "command": "$cmd"});
            }
            print "[\n", join(",\n", @out), "\n]\n";
        ' "$tree" "$ROOT" >"$dest"
    grep -q '"file"' "$dest" || die "lint: no compile commands found in $tree"
}

cmd_lint() {
    mkdir -p "$BUILD_DIR"
    ensure_packages "${BUILD_PACKAGES[@]}" "${LINT_PACKAGES[@]}" libcmocka-dev
    build_module default
    local tree=$BUILD_DIR/nginx-default out=$BUILD_DIR/lint failed=()
    mkdir -p "$out"
    write_compile_commands "$tree" "$out/compile_commands.json"

    log "lint: include layering (t/tools/check_includes.pl, docs/architecture.md)"
    if ! (cd "$ROOT" && perl t/tools/check_includes.pl src) >"$out/includes.log" 2>&1; then
        cat "$out/includes.log" >&2
        failed+=(includes)
    fi

    local srcs
    mapfile -t srcs < <(find "$ROOT/src" -name '*.cpp' | LC_ALL=C sort)
    log "lint: clang-tidy (${#srcs[@]} files, config .clang-tidy)"
    # One log per file so that parallel runs do not interleave.
    rm -rf "$out/tidy"
    mkdir -p "$out/tidy"
    printf '%s\n' "${srcs[@]}" | xargs -P "$(nproc)" -I{} sh -c \
        'log="$1/tidy/$(basename "$2").log"; clang-tidy -p "$1" --quiet "$2" >"$log" 2>&1 || echo "error: clang-tidy failed on $2" >>"$log"' \
        sh "$out" {}
    if grep -qE '(warning|error):' "$out"/tidy/*.log; then
        grep -hvE '^[0-9]+ warnings? (and [0-9]+ errors? )?generated\.?$' \
            "$out"/tidy/*.log >&2
        failed+=(clang-tidy)
    fi

    log "lint: cppcheck"
    if ! cppcheck --quiet --std=c++17 --language=c++ --inline-suppr \
            --enable=warning,performance,portability \
            --suppress=missingIncludeSystem --suppress=missingInclude \
            --library=std --error-exitcode=1 -I"$ROOT/src" \
            --template='{file}:{line}: {severity}: {message} [{id}]' \
            "$ROOT/src" "$ROOT/t/unit" >"$out/cppcheck.log" 2>&1; then
        cat "$out/cppcheck.log" >&2
        failed+=(cppcheck)
    fi

    log "lint: clang-format"
    local fmt_files=()
    mapfile -t fmt_files < <(cd "$ROOT" && { find src -name '*.[ch]pp'; \
        ls t/unit/*.cpp t/unit/*.hpp t/fuzz/*.cpp 2>/dev/null; } | LC_ALL=C sort)
    if ! (cd "$ROOT" && clang-format --dry-run --Werror "${fmt_files[@]}") \
            >"$out/clang-format.log" 2>&1; then
        grep -E '^[^ ].*: (error|warning):' "$out/clang-format.log" \
            | cut -d: -f1 | sort | uniq -c \
            | awk '{printf "  %s: %d lines differ from .clang-format\n", $2, $1}' >&2
        log "lint: clang-format -i FILE shows the fix; full log $out/clang-format.log"
        failed+=(clang-format)
    fi
    [ ${#failed[@]} -eq 0 ] || die "lint failed: ${failed[*]}"
    log "lint: clean"
}

# --- version matrix -----------------------------------------------------------

# The module against every nginx source tarball in NGINX_SRC_DIR (default
# ../shared/nginx-src beside the checkout; its README lists their sha256):
# gcc for each, clang too for the newest, under -Werror; for the newest
# stable line (even minor) nginx itself with the echo module, HTTP/2,
# HTTP/3, SSL and threads, and every suite against that binary.  Trees stay
# under BUILD_DIR/matrix and are reconfigured only when their inputs change.
MATRIX_PACKAGES=(clang libssl-dev libpcre2-dev zlib1g-dev)
# What the stable build needs besides the issue's four flags: the modules
# Debian's nginx has and the suites' target locations use (sub_filter,
# addition, auth_request...); ssi, gzip, limit_req are on by default.
MATRIX_FULL_FLAGS="--with-threads --with-http_ssl_module --with-http_v2_module
    --with-http_v3_module --with-http_sub_module --with-http_addition_module
    --with-http_auth_request_module --with-http_realip_module
    --with-http_gunzip_module --with-http_gzip_static_module
    --with-http_slice_module --with-http_stub_status_module
    --with-http_dav_module --with-http_secure_link_module
    --with-http_random_index_module --with-pcre-jit"

matrix_src_dir() {
    local dir=${NGINX_SRC_DIR:-$ROOT/../shared/nginx-src}
    [ -f "$dir/README.md" ] \
        || die "matrix: no nginx tarballs in $dir (set NGINX_SRC_DIR)"
    (cd "$dir" && pwd)
}

# The sha256 that NGINX_SRC_DIR/README.md gives for a file.
matrix_sha_expected() {
    awk -v f="$2" '$2 == f && $1 ~ /^[0-9a-f]+$/ && length($1) == 64 { print $1 }' \
        "$1/README.md"
}

# Checks a tarball against the README and unpacks it into DEST once per
# checksum.
matrix_unpack() {
    local dir=$1 file=$2 dest=$3 want got
    want=$(matrix_sha_expected "$dir" "$file")
    [ -n "$want" ] || die "matrix: $file has no sha256 in $dir/README.md"
    if [ -f "$dest/.unpacked" ] && [ "$(cat "$dest/.unpacked")" = "$want" ]; then
        return 0
    fi
    got=$(sha256sum "$dir/$file" | cut -d' ' -f1)
    [ "$got" = "$want" ] || die "matrix: $file: sha256 $got, README says $want"
    rm -rf "$dest"
    mkdir -p "$dest"
    tar -xzf "$dir/$file" -C "$dest" --strip-components=1 \
        || die "matrix: unpacking $file failed"
    printf '%s\n' "$want" >"$dest/.unpacked"
}

# Configures TREE from SRC with compiler CC and configure FLAGS, unless
# the stamp says the same inputs already did.
matrix_configure() {
    local src=$1 tree=$2 cc=$3 flags=$4 want
    want="$ROOT|$(cat "$src/.unpacked")|$cc|$flags|$(cd "$ROOT" && find src -type f | LC_ALL=C sort | tr '\n' ' ')"
    if [ -f "$tree/.configured" ] && [ ! "$ROOT/config" -nt "$tree/.configured" ] \
            && [ "$(cat "$tree/.configured")" = "$want" ]; then
        return 0
    fi
    rm -rf "$tree"
    cp -a "$src" "$tree"
    # shellcheck disable=SC2086
    if (cd "$tree" && ./configure --with-compat --with-cc="$cc" \
            --with-cc-opt="-g -O2 -fPIC -Werror" $flags \
            --add-dynamic-module="$ROOT" >"$tree/configure.log" 2>&1); then
        printf '%s\n' "$want" >"$tree/.configured"
    else
        echo failed >"$tree/.configure-failed"
    fi
}

cmd_matrix() {
    mkdir -p "$BUILD_DIR"
    ensure_packages "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}" \
        "${MATRIX_PACKAGES[@]}"
    local dir m=$BUILD_DIR/matrix
    dir=$(matrix_src_dir)
    mkdir -p "$m/src"

    local all=() v
    mapfile -t all < <(cd "$dir" && ls nginx-*.tar.gz 2>/dev/null \
        | sed -e 's/^nginx-//' -e 's/\.tar\.gz$//' | sort -V)
    [ ${#all[@]} -gt 0 ] || die "matrix: no nginx-*.tar.gz in $dir"
    local versions=("${all[@]}")
    if [ $# -gt 0 ]; then
        versions=()
        for v in "$@"; do
            [ -f "$dir/nginx-$v.tar.gz" ] || die "matrix: no nginx-$v.tar.gz in $dir"
            versions+=("$v")
        done
    fi
    # the newest overall gets clang too; the newest stable (even minor)
    # gets the full build and the suites
    local newest=${all[-1]} stable=''
    for v in "${all[@]}"; do
        [ $(( $(echo "$v" | cut -d. -f2) % 2 )) -eq 0 ] && stable=$v
    done
    local echo_tar
    echo_tar=$(cd "$dir" && ls echo-nginx-module-*.tar.gz 2>/dev/null | head -1 || true)

    # rows: "version compiler kind"; kind: module or full
    local rows=() row
    for v in "${versions[@]}"; do
        if [ "$v" = "$stable" ] && [ -n "$echo_tar" ]; then
            rows+=("$v gcc full")
        else
            rows+=("$v gcc module")
        fi
        [ "$v" = "$newest" ] && rows+=("$v clang module")
    done

    log "matrix: unpacking ${#versions[@]} trees (sha256 from $dir/README.md)"
    local pids=()
    for v in "${versions[@]}"; do
        matrix_unpack "$dir" "nginx-$v.tar.gz" "$m/src/nginx-$v" & pids+=($!)
    done
    [ -n "$echo_tar" ] && { matrix_unpack "$dir" "$echo_tar" "$m/src/echo" & pids+=($!); }
    local pid
    for pid in "${pids[@]}"; do wait "$pid" || die "matrix: unpacking failed"; done

    # configure is a long chain of tiny compiles: run them all at once
    log "matrix: configuring ${#rows[@]} trees"
    pids=()
    local ver cc kind tree flags
    for row in "${rows[@]}"; do
        read -r ver cc kind <<<"$row"
        tree=$m/$ver-$cc
        flags=''
        [ "$kind" = full ] && flags="$MATRIX_FULL_FLAGS --add-dynamic-module=$m/src/echo"
        rm -f "$tree/.configure-failed"
        matrix_configure "$m/src/nginx-$ver" "$tree" "$cc" "$flags" & pids+=($!)
    done
    for pid in "${pids[@]}"; do wait "$pid" || true; done

    local -A built tests
    local jobs status=0 target
    jobs=$(nproc 2>/dev/null || echo 2)
    for row in "${rows[@]}"; do
        read -r ver cc kind <<<"$row"
        tree=$m/$ver-$cc
        if [ -f "$tree/.configure-failed" ]; then
            tail -20 "$tree/configure.log" >&2
            built[$row]="configure failed"
            status=1
            continue
        fi
        target=modules
        [ "$kind" = full ] && target=build
        log "matrix: nginx $ver, $cc: make $target"
        if make -j"$jobs" -C "$tree" -f objs/Makefile "$target" \
                >"$tree/make.log" 2>&1; then
            built[$row]=built
        else
            grep -E 'error|warning' "$tree/make.log" | head -20 >&2
            built[$row]="FAILED ($tree/make.log)"
            status=1
        fi
    done

    for row in "${rows[@]}"; do
        read -r ver cc kind <<<"$row"
        tests[$row]='-'
        [ "$kind" = full ] && [ "${built[$row]}" = built ] || continue
        tree=$m/$ver-$cc
        log "matrix: every suite against nginx $ver ($tree/objs/nginx)"
        local out=$m/prove-$ver.log
        if (NGINX_BIN=$tree/objs/nginx \
                ECHO_MODULE=$tree/objs/ngx_http_echo_module.so \
                TEST_NGINX_SERVROOT=$m/servroot \
                run_integration_tests "$tree/objs/ngx_http_async_module.so" \
                    "$ROOT"/t/[0-9]*.t) 2>&1 | tee "$out" >&2 \
                && grep -q '^Result: PASS' "$out"; then
            tests[$row]="PASS $(matrix_prove_counts "$out")"
        else
            tests[$row]="FAIL $(matrix_prove_counts "$out") ($out)"
            status=1
        fi
    done

    printf '\n%-8s  %-9s  %-8s  %s\n' nginx compiler module "nginx + every suite"
    for row in "${rows[@]}"; do
        read -r ver cc kind <<<"$row"
        printf '%-8s  %-9s  %-8s  %s\n' "$ver" "$cc" "${built[$row]}" "${tests[$row]}"
    done
    [ $status -eq 0 ] || die "matrix: failures above"
}

# "N tests in M files" from prove's summary line.
matrix_prove_counts() {
    perl -ne 'print "$2 tests in $1 files" if /^Files=(\d+), Tests=(\d+)/' "$1"
}

# --- Debian package -------------------------------------------------------------

# Built the way Debian builds its libnginx-mod-* packages: debian/ uses
# dh-sequence-nginx, which configures against nginx-dev's tree with
# Debian's flags and makes the package depend on that nginx's exact ABI.
DEB_PACKAGES=(debhelper dpkg-dev nginx-dev libsimdjson-dev libssl-dev g++)

cmd_deb() {
    mkdir -p "$BUILD_DIR"
    ensure_packages "${BUILD_PACKAGES[@]}" "${DEB_PACKAGES[@]}"
    local out=$BUILD_DIR/deb version src
    version=$(dpkg-parsechangelog -l "$ROOT/debian/changelog" -S Version)
    src=$out/ngx-http-async-$version
    rm -rf "$out"
    mkdir -p "$src"
    # a copy of the sources alone: the package never sees BUILD_DIR
    (cd "$ROOT" && tar -cf - config src debian docs examples README.md) \
        | tar -xf - -C "$src"
    log "deb: dpkg-buildpackage in $src"
    (cd "$src" && DEB_BUILD_OPTIONS="parallel=$(nproc 2>/dev/null || echo 2)" \
        dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1 \
        || { tail -40 "$out/build.log" >&2; die "deb: build failed, see $out/build.log"; }
    local deb
    deb=$(ls "$out"/libnginx-mod-http-async_*.deb)
    log "deb: $(dpkg-deb -f "$deb" Package Version Depends | tr '\n' ' ')"
    printf '%s\n' "$deb"
}

# --- demo -------------------------------------------------------------------

cmd_run() {
    local listen=${1:-127.0.0.1:8080}
    ensure_packages "${BUILD_PACKAGES[@]}" libnginx-mod-http-echo
    # Another nginx (NGINX_BIN, NGINX_SRC: e.g. a tree of ./build.sh
    # matrix): the module is built against its tree in a variant of its
    # own, and the echo module comes from beside its binary.
    local variant=default
    if [ "$NGINX_SRC" != "$DEBIAN_NGINX_SRC" ]; then
        variant=run-$(basename "$NGINX_SRC")
    fi
    local bin_dir
    bin_dir=$(dirname "$(command -v "$NGINX_BIN" || echo "$NGINX_BIN")")
    if [ -f "$bin_dir/ngx_http_echo_module.so" ]; then
        ECHO_MODULE=$bin_dir/ngx_http_echo_module.so
    fi
    build_module "$variant"
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

  three 500 ms calls, one after another vs in parallel:
    curl -s http://$listen/portal/sync
    curl -s -D - http://$listen/portal/parallel
  a queue of 2 in service, 3 waiting: send 8 at once
    for i in \$(seq 8); do curl -s -o /dev/null -w '%{http_code} %header{x-async-queue}\\n' http://$listen/queue/slow & done; wait
  a 202 job, then its status (long-poll) and result:
    curl -s -i -X POST http://$listen/jobs/report
    curl -s 'http://$listen/jobs/status/ID?wait=10'
  the job page in a browser: http://$listen/app/job.html
  the status of it all:
    curl -s http://$listen/status
    curl -s 'http://$listen/status?format=prometheus'
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
    fuzz) cmd_fuzz "$@" ;;
    lint) cmd_lint "$@" ;;
    matrix) cmd_matrix "$@" ;;
    deb) cmd_deb "$@" ;;
    help|-h|--help) usage ;;
    *) usage; exit 2 ;;
esac
