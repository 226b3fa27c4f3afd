#!/usr/bin/env bash
# Build Debian packages of letterbox with dpkg-deb (nothing else needed).
#
#   cross/deb.sh [--no-build] [CARGO_FLAG...] [ARCH...]
#
# ARCH is a Debian architecture; default: all three.
#   amd64   x86_64-unknown-linux-musl binary (static)
#   arm64   aarch64-unknown-linux-musl binary (static)
#   armhf   armv7-unknown-linux-gnueabihf binary (static glibc)
# Each binary is built with cross/build.sh (which checks it is static) unless
# --no-build says to package the one already in TARGET_DIR/cross/. Other
# arguments starting with "-" go to cargo (e.g. --locked).
# The version is Cargo.toml's. The packages land in TARGET_DIR/deb/:
#   letterbox_VERSION_ARCH.deb
#
# What a package does (DEBIAN/postinst, prerm, postrm below):
#   - /usr/bin/letterbox, /lib/systemd/system/letterbox.service,
#     /etc/default/letterbox (conffile: the flags), /usr/lib/sysusers.d/,
#     README and MTA snippets in /usr/share/doc/letterbox/;
#   - creates the `letterbox` system user and /var/lib/letterbox (0750);
#   - with systemd running: enables and starts the service on install,
#     restarts it on upgrade; without systemd (a container, CI) it says how
#     to start the server instead of failing;
#   - never deletes /var/lib/letterbox, not even on purge, and says where it is.
set -euo pipefail

cd "$(dirname "$0")/.."

die() { echo "cross/deb.sh: error: $*" >&2; exit 1; }

all_arches=(amd64 arm64 armhf)
build=1
cargo_flags=()
arches=()
for arg in "$@"; do
    case "$arg" in
        -h|--help) sed -n '2,25p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        --no-build) build=0 ;;
        -*) cargo_flags+=("$arg") ;;
        *) arches+=("$arg") ;;
    esac
done
[ ${#arches[@]} -gt 0 ] || arches=("${all_arches[@]}")

rust_target() {
    case "$1" in
        amd64) echo x86_64-unknown-linux-musl ;;
        arm64) echo aarch64-unknown-linux-musl ;;
        armhf) echo armv7-unknown-linux-gnueabihf ;;
        *) return 1 ;;
    esac
}
for a in "${arches[@]}"; do
    rust_target "$a" >/dev/null || die "unknown architecture '$a' (supported: ${all_arches[*]})"
done
command -v dpkg-deb >/dev/null || die "dpkg-deb not found (apt-get install dpkg)"

# The [package] version: the first `version = "..."` line of Cargo.toml.
version=$(sed -n 's/^version *= *"\([^"]*\)".*/\1/p' Cargo.toml | sed -n 1p)
[ -n "$version" ] || die "no version in Cargo.toml"
description=$(sed -n 's/^description *= *"\([^"]*\)".*/\1/p' Cargo.toml | sed -n 1p)

target_dir=$(cargo metadata --no-deps --format-version 1 |
    sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
[ -n "$target_dir" ] || die "could not find cargo's target directory"

if [ "$build" = 1 ]; then
    targets=()
    for a in "${arches[@]}"; do targets+=("$(rust_target "$a")"); done
    cross/build.sh ${cargo_flags[@]+"${cargo_flags[@]}"} "${targets[@]}"
fi

out_dir=$target_dir/deb
mkdir -p "$out_dir"
summary=()
for arch in "${arches[@]}"; do
    t=$(rust_target "$arch")
    bin=$target_dir/cross/letterbox-$t
    [ -x "$bin" ] || die "$bin is missing: build it with cross/build.sh $t (or drop --no-build)"

    root=$out_dir/root-$arch
    rm -rf "$root"
    install -d -m 0755 "$root/DEBIAN" "$root/usr/bin" "$root/lib/systemd/system" \
        "$root/etc/default" "$root/usr/lib/sysusers.d" \
        "$root/usr/share/doc/letterbox/examples"
    install -m 0755 "$bin" "$root/usr/bin/letterbox"
    install -m 0644 configs/letterbox.service "$root/lib/systemd/system/letterbox.service"
    install -m 0644 configs/letterbox.default "$root/etc/default/letterbox"
    install -m 0644 configs/letterbox.sysusers.conf "$root/usr/lib/sysusers.d/letterbox.conf"
    install -m 0644 README.md "$root/usr/share/doc/letterbox/README.md"
    for f in postfix-main.cf.snippet exim-lmtp.snippet opensmtpd.snippet fetchmailrc.example users.example; do
        install -m 0644 "configs/$f" "$root/usr/share/doc/letterbox/examples/$f"
    done
    cat >"$root/usr/share/doc/letterbox/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: letterbox

Files: *
Copyright: the letterbox authors
License: MIT or Apache-2.0
 On Debian systems, the Apache License 2.0 is in
 /usr/share/common-licenses/Apache-2.0. The MIT license: permission is
 granted, free of charge, to deal in the software without restriction,
 provided the copyright notice and this permission notice are included;
 the software is provided "as is", without warranty of any kind.
EOF

    echo /etc/default/letterbox >"$root/DEBIAN/conffiles"

    installed_kib=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    cat >"$root/DEBIAN/control" <<EOF
Package: letterbox
Version: $version
Architecture: $arch
Maintainer: letterbox developers <letterbox@localhost>
Installed-Size: $installed_kib
Depends: passwd
Suggests: postfix | exim4 | opensmtpd
Section: mail
Priority: optional
Description: $description
 letterbox stores mail for a home server or a small board (Raspberry Pi,
 NAS): an MTA delivers into it over LMTP, and devices read it over IMAP and
 POP3. One static binary, one database file, no other services.
 .
 The service starts at once; add a user with
   sudo -u letterbox letterbox user add alice --data /var/lib/letterbox
 and point the MTA at LMTP on 127.0.0.1:24 (examples in
 /usr/share/doc/letterbox/examples/). Mail is kept in /var/lib/letterbox,
 which removing or purging the package never deletes.
EOF

    # --- maintainer scripts --------------------------------------------------
    # deb-systemd-helper/deb-systemd-invoke (init-system-helpers, Essential in
    # Debian) do what dh_installsystemd's generated snippets do; every systemctl
    # call is guarded by /run/systemd/system so that the package installs in
    # a container or chroot without systemd.
    cat >"$root/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e

if [ "$1" = configure ]; then
    # The service user; kept on removal (files in /var/lib/letterbox are
    # owned by it).
    if ! getent group letterbox >/dev/null; then
        groupadd --system letterbox
    fi
    if ! getent passwd letterbox >/dev/null; then
        useradd --system --gid letterbox --home-dir /var/lib/letterbox \
            --no-create-home --shell /usr/sbin/nologin \
            --comment "letterbox mail store" letterbox
    fi
    # The data directory: made once, never emptied. An existing one (an
    # upgrade, or a reinstall after purge) is left as it is.
    if [ ! -d /var/lib/letterbox ]; then
        install -d -o letterbox -g letterbox -m 0750 /var/lib/letterbox
    fi
fi

if [ "$1" = configure ] || [ "$1" = abort-upgrade ] || [ "$1" = abort-deconfigure ] || [ "$1" = abort-remove ]; then
    # Enable on first install; on upgrade keep the admin's choice.
    deb-systemd-helper unmask letterbox.service >/dev/null || true
    if deb-systemd-helper --quiet was-enabled letterbox.service; then
        deb-systemd-helper enable letterbox.service >/dev/null || true
    elif [ -z "$2" ]; then
        deb-systemd-helper enable letterbox.service >/dev/null || true
    else
        deb-systemd-helper update-state letterbox.service >/dev/null || true
    fi

    if [ -d /run/systemd/system ]; then
        systemctl --system daemon-reload >/dev/null || true
        if [ -n "$2" ]; then action=restart; else action=start; fi
        # A port already taken (another IMAP server) must not leave the
        # package half-installed: say so, and go on.
        if ! deb-systemd-invoke "$action" letterbox.service; then
            echo "letterbox: the service did not $action; see: journalctl -u letterbox" >&2
        fi
    elif [ "$1" = configure ]; then
        echo "letterbox: systemd is not running; start the server with:"
        echo "  letterbox serve --data /var/lib/letterbox --lmtp 127.0.0.1:24   (as root: it drops to the letterbox user)"
    fi
    if [ "$1" = configure ] && [ -z "$2" ]; then
        echo "letterbox: mail is stored in /var/lib/letterbox. Add a user with:"
        echo "  sudo -u letterbox letterbox user add alice --data /var/lib/letterbox"
    fi
fi
exit 0
EOF

    cat >"$root/DEBIAN/prerm" <<'EOF'
#!/bin/sh
set -e
# On upgrade the service keeps running; postinst restarts it with the new
# binary (as dh_installsystemd's --restart-after-upgrade does).
if [ "$1" = remove ] && [ -d /run/systemd/system ]; then
    deb-systemd-invoke stop letterbox.service || true
fi
exit 0
EOF

    cat >"$root/DEBIAN/postrm" <<'EOF'
#!/bin/sh
set -e
if [ -d /run/systemd/system ]; then
    systemctl --system daemon-reload >/dev/null || true
fi
case "$1" in
    remove)
        deb-systemd-helper mask letterbox.service >/dev/null || true
        ;;
    purge)
        deb-systemd-helper purge letterbox.service >/dev/null || true
        deb-systemd-helper unmask letterbox.service >/dev/null || true
        ;;
esac
# Mail is never deleted by the package, not even on purge.
if { [ "$1" = remove ] || [ "$1" = purge ]; } && [ -d /var/lib/letterbox ]; then
    echo "letterbox: your mail is still in /var/lib/letterbox (and the letterbox user still exists);"
    echo "  back it up (letterbox backup) or delete it yourself if you no longer need it."
fi
exit 0
EOF
    chmod 0755 "$root/DEBIAN/postinst" "$root/DEBIAN/prerm" "$root/DEBIAN/postrm"

    # md5sums lists the shipped files but not conffiles (as dh_md5sums).
    (cd "$root" && find . \( -path ./DEBIAN -o -path ./etc \) -prune -o -type f -printf '%P\0' |
        LC_ALL=C sort -z | xargs -0 md5sum) >"$root/DEBIAN/md5sums"

    deb=$out_dir/letterbox_${version}_${arch}.deb
    # --root-owner-group: every file root:root without fakeroot.
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    rm -rf "$root"
    summary+=("$(printf '%-6s %9s bytes  %s' "$arch" "$(stat -c %s "$deb")" "$deb")")
done

echo
echo "==> packages"
printf '%s\n' "${summary[@]}"
