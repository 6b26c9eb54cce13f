"""The command line: --check, --version, --help, and refusing to start with a bad file."""
import os
import re
import subprocess

from conftest import SANITIZER_PATTERNS, base_config, free_port, pgrelay_bin, sanitizer_env, to_yaml


def run(*args):
    r = subprocess.run([pgrelay_bin(), *args], capture_output=True, text=True, timeout=30, env=sanitizer_env())
    out = r.stdout + r.stderr
    bad = [ln for ln in out.splitlines() if any(p in ln for p in SANITIZER_PATTERNS)]
    assert not bad, "sanitizer report:\n" + out
    return r


def write(folder, name, text):
    path = os.path.join(folder, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def test_check_accepts_valid_config(pg, tmp_path):
    path = write(tmp_path, "ok.yaml", to_yaml(base_config(pg, free_port())) + "\n")
    r = run("--check", "-c", path)
    assert r.returncode == 0, r.stderr
    assert "valid" in r.stdout


def test_check_accepts_proxy_yaml_example():
    r = run("--check", "-c", os.path.join(os.path.dirname(__file__), "..", "..", "proxy.yaml.example"))
    assert r.returncode == 0, r.stderr


def test_check_reports_file_line_column(tmp_path):
    text = (
        "listen:\n"
        "  port: 6432\n"
        "  bogus_key: 1\n"            # line 3: unknown key
        "databases:\n"
        "  app: { service: main }\n"
        "services:\n"
        "  main:\n"
        "    primary: { host: 127.0.0.1 }\n"
        "    pool: { max: \"4\" }\n"  # line 9: quoted number
    )
    path = write(tmp_path, "bad.yaml", text)
    r = run("--check", "-c", path)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines, "no error message"
    pat = re.compile(re.escape(path) + r":(\d+):(\d+): ")
    located = [pat.match(ln) for ln in lines]
    assert all(located), f"every error must start with file:line:col:\n{r.stderr}"
    err_lines = {int(m.group(1)) for m in located}
    assert 3 in err_lines, f"unknown key on line 3 not reported:\n{r.stderr}"
    assert 9 in err_lines, f"quoted number on line 9 not reported:\n{r.stderr}"
    assert "bogus_key" in r.stderr


def test_check_reports_yaml_syntax_error(tmp_path):
    path = write(tmp_path, "syntax.yaml", "listen: { port: 6432\nservices: [\n")
    r = run("--check", "-c", path)
    assert r.returncode == 1
    assert re.match(re.escape(path) + r":\d+:\d+: ", r.stderr), r.stderr


def test_check_missing_file_fails(tmp_path):
    r = run("--check", "-c", str(tmp_path / "nope.yaml"))
    assert r.returncode == 1
    assert "nope.yaml" in r.stderr


def test_run_with_invalid_config_does_not_start(tmp_path):
    path = write(tmp_path, "bad.yaml", "listen: { port: 0 }\n")
    r = run("-c", path)
    assert r.returncode == 1
    assert "not started" in r.stderr


def test_version():
    r = run("--version")
    assert r.returncode == 0
    assert re.fullmatch(r"pgrelay \d+\.\d+\.\d+\S*\n", r.stdout), r.stdout


def test_help():
    r = run("--help")
    assert r.returncode == 0
    assert "Usage" in r.stdout and "--check" in r.stdout


def test_no_config_is_usage_error():
    r = run()
    assert r.returncode not in (0, None)
    assert "-c FILE" in r.stderr
