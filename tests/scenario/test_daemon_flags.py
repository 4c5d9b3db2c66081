"""The smartrelayd command line: --version, --help, --check-config."""
import os
import subprocess

from harness import SMARTRELAY, SMARTRELAYD, SRCDIR


def run(*args, env=None):
    return subprocess.run(list(args), capture_output=True, text=True,
                          timeout=30, env=env)


def test_version_and_help():
    r = run(SMARTRELAYD, "--version")
    assert r.returncode == 0
    assert r.stdout.startswith("smartrelayd ")
    r = run(SMARTRELAYD, "-V")
    assert r.returncode == 0
    r = run(SMARTRELAYD, "--help")
    assert r.returncode == 0
    assert "--check-config" in r.stdout
    r = run(SMARTRELAYD, "--bogus")
    assert r.returncode == 64
    assert "usage" in r.stderr
    r = run(SMARTRELAY, "--version")
    assert r.returncode == 0
    assert r.stdout.startswith("smartrelay ")


def write(path, text, mode=0o600):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, mode)
    return str(path)


def example_config(tmp_path, password_mode=0o600):
    """The shipped example with the spool and password file in tmp_path."""
    pw = write(tmp_path / "app-password", "abcd efgh ijkl mnop\n",
               password_mode)
    with open(os.path.join(SRCDIR, "conf", "smartrelay.conf")) as f:
        text = f.read()
    text = text.replace('"/var/spool/smartrelay"',
                        '"%s"' % (tmp_path / "spool"))
    text = text.replace('"/etc/smartrelay/app-password"', '"%s"' % pw)
    return write(tmp_path / "smartrelay.conf", text)


def test_check_config_example_ok(tmp_path):
    conf = example_config(tmp_path)
    r = run(SMARTRELAYD, "-c", conf, "--check-config")
    assert r.returncode == 0, r.stderr
    assert "configuration ok" in r.stdout
    r = run(SMARTRELAYD, "-t", "-c", conf)
    assert r.returncode == 0, r.stderr


def test_check_config_password_readable_by_others(tmp_path):
    conf = example_config(tmp_path, password_mode=0o644)
    r = run(SMARTRELAYD, "-c", conf, "--check-config")
    assert r.returncode == 78
    assert conf + ":" in r.stderr
    assert "app-password" in r.stderr
    assert "abcd" not in r.stderr      # never the password itself


def test_check_config_reports_each_mistake(tmp_path):
    conf = write(tmp_path / "bad.conf",
                 'spool = "%s";\n'
                 'colour = "blue";\n'
                 'upstream = {\n'
                 '  port = "587";\n'
                 '  connections = 0;\n'
                 '  tls = "maybe";\n'
                 '};\n'
                 'retry = { initial = "5 parsecs"; };\n'
                 % (tmp_path / "spool"))
    r = run(SMARTRELAYD, "-c", conf, "--check-config")
    assert r.returncode == 78
    err = r.stderr
    assert "%s:2:" % conf in err and "colour" in err
    assert "%s:4:" % conf in err and "port" in err
    assert "%s:5:" % conf in err and "connections" in err
    assert "%s:6:" % conf in err and "tls" in err
    assert "%s:8:" % conf in err and "initial" in err


def test_check_config_syntax_error(tmp_path):
    conf = write(tmp_path / "syntax.conf", 'spool = "/tmp/x"\nlisten = ;\n')
    r = run(SMARTRELAYD, "-c", conf, "--check-config")
    assert r.returncode == 78
    assert conf + ":" in r.stderr


def test_daemon_refuses_bad_config(tmp_path):
    conf = write(tmp_path / "bad.conf", 'nonsense = 1;\n')
    r = run(SMARTRELAYD, "-c", conf)
    assert r.returncode == 78
    assert "%s:1:" % conf in r.stderr


def test_missing_config_file(tmp_path):
    r = run(SMARTRELAYD, "-c", str(tmp_path / "nope.conf"), "-t")
    assert r.returncode == 78
    assert "nope.conf" in r.stderr
