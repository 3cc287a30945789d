#!/usr/bin/env bash
# The Debian packages the tests need, installed when missing (needs root; does nothing when all are
# there): Apache + mod_xsendfile + Squid, the production chain the end-to-end tests start; rpm,
# createrepo-c, dnf, dpkg/apt-utils: yum and deb fixtures and real clients; xz/bzip2/zstd: metadata
# compressions; time: peak RSS of the 60,000-package sync; tmux: the terminal `top` runs in;
# nginx-light, python3: real static upstreams next to Apache (test/upstream-matrix-*.test.ts);
# gpgv: signed metadata checks (repo --gpg-key); gpg, gpg-agent: the tests make and use signing keys.
# Part of the README's test command and of .ci/run.
set -euo pipefail
PKGS="apache2-bin libapache2-mod-xsendfile squid openssl curl rpm createrepo-c dnf apt-utils xz-utils bzip2 zstd time tmux nginx-light python3 gpgv gpg gpg-agent"
installed=$(dpkg-query -W -f='${Status} ${Package}\n' $PKGS 2>/dev/null | grep -c "install ok installed" || true)
if [ "$installed" -eq "$(echo $PKGS | wc -w)" ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-test-deps: missing Debian packages; run as root (or with sudo): apt-get install $PKGS" >&2
  exit 1
fi
# The tests start their own private instances: the packages' services (nginx on port 80, squid on
# 3128) must not start. Their postinst scripts start them through invoke-rc.d (no systemd) or
# deb-systemd-invoke, which both ask policy-rc.d first: "exit 101" means "not allowed", during this
# install only (a policy-rc.d the machine already has, e.g. a container's, is left as it is).
POLICY=/usr/sbin/policy-rc.d
if [ ! -e "$POLICY" ]; then
  printf '#!/bin/sh\n# install-test-deps.sh: no service starts while it installs packages\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  trap 'rm -f "$POLICY"' EXIT
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $PKGS >/dev/null
