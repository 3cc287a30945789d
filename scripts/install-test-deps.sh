#!/usr/bin/env bash
# The Debian packages the tests need, installed when missing (needs root; does nothing when all are
# there): Apache + mod_xsendfile + Squid, the production chain the end-to-end tests start; rpm,
# createrepo-c, dnf, dpkg/apt-utils: yum and deb fixtures and real clients; xz/bzip2/zstd: metadata
# compressions; time: peak RSS of the 60,000-package sync; tmux: the terminal `top` runs in.
# Part of the README's test command and of .ci/run.
set -euo pipefail
PKGS="apache2-bin libapache2-mod-xsendfile squid openssl curl rpm createrepo-c dnf apt-utils xz-utils bzip2 zstd time tmux"
installed=$(dpkg-query -W -f='${Status} ${Package}\n' $PKGS 2>/dev/null | grep -c "install ok installed" || true)
if [ "$installed" -eq "$(echo $PKGS | wc -w)" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing Debian packages; run as root (or with sudo): apt-get install $PKGS" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
