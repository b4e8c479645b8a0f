"""The `sluice` command line: --help/--version, `validate` (every error as file:line:column, exit codes),
`serve` refusing a bad policy, and `generate` on the default model and on hostile GGUF files."""
import os
import subprocess

from conftest import sluice_bin

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
MODEL = os.path.join(ROOT, "models", "SmolLM2-135M-Instruct.Q4_1.gguf")


def run(*args, timeout=120):
    return subprocess.run([sluice_bin(), *args], capture_output=True, text=True, timeout=timeout)


def test_help_and_version():
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("serve", "validate", "generate", "train-router", "eval-router"):
        assert cmd in r.stdout
    v = run("--version")
    assert v.returncode == 0 and v.stdout.startswith("sluice ")
    bad = run("frobnicate")
    assert bad.returncode == 2 and "unknown command" in bad.stderr


def test_validate_accepts_the_default_policy():
    r = run("validate", os.path.join(ROOT, "policies", "default.yaml"))
    assert r.returncode == 0, r.stderr
    assert "ok" in r.stdout


def test_validate_reports_every_error_with_its_position(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("server:\n  prot: 8080\nmodels:\n  a: {kind: openai, base_url: 'ftp://x'}\n  b: {kind: local}\n")
    r = run("validate", str(p))
    assert r.returncode == 1
    lines = [l for l in r.stderr.splitlines() if ": error: " in l]
    assert len(lines) >= 3, r.stderr
    assert lines[0].startswith(f"{p}:2:3: error: ") and "prot" in lines[0] and "port" in lines[0]
    broken = tmp_path / "broken.yaml"
    broken.write_text("server: {port: 80\nmodels: [\n")
    r = run("validate", str(broken))
    assert r.returncode == 1 and f"{broken}:" in r.stderr


def test_serve_refuses_a_bad_policy(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("models: {}\n")
    r = run("serve", "--config", str(p), timeout=20)
    assert r.returncode == 1 and ": error: " in r.stderr


def test_generate_streams_text_and_reports_speed():
    r = run("generate", "--model", MODEL, "--chat", "--prompt", "What is 2+2?", "--max-tokens", "8",
            "--temperature", "0")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()
    assert "tok/s" in r.stderr


def test_generate_device_choice():
    # auto: the GPU where the CUDA backend can run, else the CPU with a line saying why.
    r = run("generate", "--model", MODEL, "--prompt", "Hi", "--max-tokens", "2", "--device", "auto")
    assert r.returncode == 0, r.stderr
    assert "device auto: " in r.stderr
    # cuda: refused with the reason where there is no usable GPU (or no CUDA in the build).
    r = run("generate", "--model", MODEL, "--prompt", "Hi", "--max-tokens", "2", "--device", "cuda")
    if "device auto: running on the CPU" in run("generate", "--model", MODEL, "--prompt", "Hi", "--max-tokens", "1",
                                                 "--device", "auto").stderr:
        assert r.returncode == 1 and "device cuda was asked for, but" in r.stderr, r.stderr
    else:
        assert r.returncode == 0, r.stderr
    r = run("generate", "--model", MODEL, "--prompt", "Hi", "--device", "tpu")
    assert r.returncode == 2 and "bad value 'tpu' for --device" in r.stderr


def test_generate_rejects_missing_truncated_and_hostile_files(tmp_path):
    missing = run("generate", "--model", str(tmp_path / "nope.gguf"), "--prompt", "x")
    assert missing.returncode != 0 and "nope.gguf" in missing.stderr
    with open(MODEL, "rb") as f:
        head = f.read(200_000)
    truncated = tmp_path / "truncated.gguf"
    truncated.write_bytes(head)
    r = run("generate", "--model", str(truncated), "--prompt", "x")
    assert r.returncode != 0 and r.stderr.strip(), r
    hostile = tmp_path / "hostile.gguf"
    hostile.write_bytes(b"GGUF" + (3).to_bytes(4, "little") + (2**62).to_bytes(8, "little") + (2**62).to_bytes(8, "little"))
    r = run("generate", "--model", str(hostile), "--prompt", "x")
    assert r.returncode != 0 and r.stderr.strip(), r
    bad_flag = run("generate", "--model", MODEL, "--prompt", "x", "--temperature", "hot")
    assert bad_flag.returncode != 0
