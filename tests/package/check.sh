#!/bin/sh
# Runs inside the throwaway Debian root that tests/package/run.sh makes
# (chroot, as root), with the package at /tmp/smartrelay.deb: installs it,
# then checks what an administrator and a user would see.  Any failed check
# stops it with the reason.
set -eu
fail() { echo "package check FAILED: $*" >&2; exit 1; }
ok() { echo "ok: $*"; }
export DEBIAN_FRONTEND=noninteractive

apt-get install -y -q --no-install-recommends /tmp/smartrelay.deb \
    >/tmp/install.log 2>&1 || { cat /tmp/install.log; fail "apt-get install"; }
grep -q "systemctl enable --now smartrelay.socket" /tmp/install.log ||
    fail "no post-install message saying what to do"
ok "installed; the post-install message says what to do"

# What the postinst made: the user, the setgid tool, the spool.
getent passwd smartrelay >/dev/null || fail "no user smartrelay"
[ "$(stat -c %a:%U:%G /usr/bin/smartrelay)" = 2755:root:smartrelay ] ||
    fail "tool is $(stat -c %a:%U:%G /usr/bin/smartrelay)"
dpkg-statoverride --list /usr/bin/smartrelay | grep -q smartrelay ||
    fail "no statoverride for the tool"
[ "$(stat -c %a:%U /var/spool/smartrelay)" = 710:smartrelay ] ||
    fail "spool is $(stat -c %a:%U /var/spool/smartrelay)"
[ "$(stat -c %a /var/spool/smartrelay/maildrop)" = 3730 ] ||
    fail "maildrop is $(stat -c %a /var/spool/smartrelay/maildrop)"
for f in /usr/sbin/sendmail /usr/lib/sendmail /usr/bin/mailq \
    /usr/bin/newaliases /usr/sbin/smartrelayd; do
	[ -x "$f" ] || fail "$f missing"
done
for f in /lib/systemd/system/smartrelay.service \
    /lib/systemd/system/smartrelay.socket /usr/lib/sysusers.d/smartrelay.conf \
    /usr/lib/tmpfiles.d/smartrelay.conf /usr/share/man/man8/smartrelayd.8.gz \
    /usr/share/man/man5/smartrelay.conf.5.gz \
    /usr/share/man/man1/smartrelay.1.gz /usr/share/man/man1/sendmail.1.gz; do
	[ -e "$f" ] || fail "$f missing"
done
grep -qx /etc/smartrelay/smartrelay.conf /var/lib/dpkg/info/smartrelay.conffiles ||
    fail "smartrelay.conf is not a conffile"
# Installed, not started or enabled: it would only retry a missing password.
[ "$(systemctl is-enabled smartrelay.socket 2>&1)" = disabled ] ||
    fail "smartrelay.socket is $(systemctl is-enabled smartrelay.socket 2>&1)"
ok "user, setgid tool, spool, links, units, man pages, conffile; units disabled"

# The shipped configuration with a password file: a world-readable one is
# refused (78), a private one passes.
printf '%s\n' 'abcd efgh ijkl mnop' >/etc/smartrelay/app-password
chmod 644 /etc/smartrelay/app-password
rc=0; smartrelayd --check-config >/tmp/check.out 2>&1 || rc=$?
[ "$rc" -eq 78 ] || fail "--check-config with a 0644 password file: $rc"
chmod 600 /etc/smartrelay/app-password
smartrelayd --check-config || fail "--check-config: $?"
ok "smartrelayd --check-config: 78 for a 0644 password file, 0 for 0600"

# A normal user's sendmail -t stores into the maildrop (no daemon running).
useradd -m alice
printf 'To: bob@example.org\nSubject: package test\n\nhello\n' |
    setpriv --reuid=alice --regid=alice --init-groups \
    /usr/sbin/sendmail -t -i || fail "sendmail -t as alice: $?"
n=$(find /var/spool/smartrelay/maildrop -maxdepth 1 -type f | wc -l)
[ "$n" -eq 1 ] || fail "$n files in the maildrop"
[ "$(stat -c %U "$(find /var/spool/smartrelay/maildrop -maxdepth 1 -type f)")" = alice ] ||
    fail "the maildrop file does not belong to alice"
ok "alice's sendmail -t stored one message in the maildrop"
mailq >/tmp/mailq.out || fail "mailq: $?"
grep -q "bob@example.org" /tmp/mailq.out || { cat /tmp/mailq.out; fail "mailq"; }
ok "mailq lists it"
newaliases || fail "newaliases: $?"
ok "newaliases exits 0"

# dpkg -r keeps the configuration and the queued mail; dpkg -P removes them.
dpkg -r smartrelay >/dev/null
[ ! -e /usr/bin/smartrelay ] || fail "dpkg -r left the tool"
[ -e /etc/smartrelay/smartrelay.conf ] || fail "dpkg -r removed the config"
n=$(find /var/spool/smartrelay/maildrop -maxdepth 1 -type f | wc -l)
[ "$n" -eq 1 ] || fail "dpkg -r: $n files left in the maildrop"
ok "dpkg -r kept the configuration and the spool"
dpkg -P smartrelay >/dev/null
[ ! -e /var/spool/smartrelay ] || fail "dpkg -P left the spool"
[ ! -e /etc/smartrelay ] || fail "dpkg -P left /etc/smartrelay: $(ls -A /etc/smartrelay)"
! dpkg-statoverride --list /usr/bin/smartrelay >/dev/null ||
    fail "dpkg -P left the statoverride"
ok "dpkg -P removed the spool, the configuration and the statoverride"

# `meson install`'s own step (systemd/install-system.sh), on a system
# without the user: as root it creates the user, the spool and makes the
# tool setgid smartrelay; as another user it fails, saying what to do.
userdel smartrelay
! getent group smartrelay >/dev/null || groupdel smartrelay
mkdir -p /usr/local/bin /usr/local/lib/sysusers.d /usr/local/lib/tmpfiles.d
cp /bin/true /usr/local/bin/smartrelay
cp /tmp/smartrelay.sysusers /usr/local/lib/sysusers.d/smartrelay.conf
cp /tmp/smartrelay.tmpfiles /usr/local/lib/tmpfiles.d/smartrelay.conf
export MESON_INSTALL_PREFIX=/usr/local MESON_INSTALL_DESTDIR_PREFIX=/usr/local
rc=0
setpriv --reuid=alice --regid=alice --init-groups sh /tmp/install-system.sh \
    /usr/local/bin /usr/local/lib/sysusers.d /usr/local/lib/tmpfiles.d \
    2>/tmp/nonroot.err || rc=$?
[ "$rc" -eq 1 ] && grep -q "not root" /tmp/nonroot.err ||
    fail "install-system.sh as alice: $rc $(cat /tmp/nonroot.err)"
sh /tmp/install-system.sh /usr/local/bin /usr/local/lib/sysusers.d \
    /usr/local/lib/tmpfiles.d || fail "install-system.sh as root: $?"
getent passwd smartrelay >/dev/null || fail "install-system.sh: no user"
[ "$(stat -c %a:%G /usr/local/bin/smartrelay)" = 2755:smartrelay ] ||
    fail "install-system.sh: tool is $(stat -c %a:%G /usr/local/bin/smartrelay)"
[ "$(stat -c %a:%U /var/spool/smartrelay/maildrop)" = 3730:smartrelay ] ||
    fail "install-system.sh: no maildrop"
ok "meson install's step: fails as a user; as root makes the user, the spool, the setgid tool"
echo "package checks passed"
