"""HTTPS upstreams: certificates and host names are verified; a private CA is trusted only through the
model's tls_ca_file. The fake upstream serves TLS with a throwaway CA made here by the openssl CLI."""
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import FAKE, KEY_ENV, SluiceProcess, chat_body, read_line_with_timeout, request


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def tls_upstream(workdir):
    d = os.path.join(workdir, "tls")
    os.makedirs(d, exist_ok=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=sluice test CA", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1", cwd=d)
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "san.cnf", cwd=d)
    proc = subprocess.Popen([sys.executable, FAKE, "--port", "0", "--tls-cert", os.path.join(d, "server.pem"),
                             "--tls-key", os.path.join(d, "server.key")], stdout=subprocess.PIPE)
    line = read_line_with_timeout(proc.stdout, 10.0) or ""
    m = re.search(r"https://127\.0\.0\.1:(\d+)$", line)
    assert m, line
    yield int(m.group(1)), os.path.join(d, "ca.pem")
    proc.send_signal(signal.SIGTERM)
    proc.wait(5)


@pytest.fixture(scope="module")
def tls_sluice(workdir, tls_upstream):
    port, ca = tls_upstream
    path = os.path.join(workdir, "tls-policy.yaml")
    with open(path, "w") as f:
        f.write(f"""server: {{listen: 127.0.0.1, port: 0}}
models:
  trusted: {{kind: openai, base_url: "https://127.0.0.1:{port}/v1", model: ok, api_key_env: {KEY_ENV},
            tls_ca_file: {json.dumps(ca)}, timeout_ms: 5000}}
  untrusted: {{kind: openai, base_url: "https://127.0.0.1:{port}/v1", model: ok, api_key_env: {KEY_ENV},
              timeout_ms: 5000}}
  wrong-host: {{kind: openai, base_url: "https://localhost:{port}/v1", model: ok, api_key_env: {KEY_ENV},
               tls_ca_file: {json.dumps(ca)}, timeout_ms: 5000}}
""")
    s = SluiceProcess(path, workdir=workdir)
    yield s
    s.stop()


def test_https_upstream_with_trusted_ca_answers(tls_sluice):
    status, headers, body = request(tls_sluice, "POST", "/v1/chat/completions", json.dumps(chat_body("trusted")))
    assert status == 200, body
    assert json.loads(body)["choices"][0]["message"]["content"]
    assert headers["x-sluice-tier"] == "trusted"


@pytest.mark.parametrize("model", ["untrusted", "wrong-host"])
def test_unverifiable_upstream_certificate_is_502(tls_sluice, model):
    status, _, body = request(tls_sluice, "POST", "/v1/chat/completions", json.dumps(chat_body(model)))
    assert status == 502, body
    assert json.loads(body)["error"]["code"] == "upstream_error"
