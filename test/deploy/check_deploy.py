#!/usr/bin/env python3
"""Offline checks of deploy/container/Dockerfile and deploy/kubernetes/sluice.yaml (no Docker daemon or cluster
here): every Kubernetes document parses and has what running Sluice needs (probes on /readyz and /healthz, a
non-root user matching the image's, the policy mounted where the args read it, a termination grace longer than
the drain grace, selectors that match), the ConfigMap's policy passes `sluice validate`, and the image's runtime
packages provide every shared library the built binary links (found with ldd and dpkg -S on this machine).
Usage: check_deploy.py SLUICE_BINARY. Exit 0 when all hold; every failed check is printed.
"""
import os
import re
import subprocess
import sys
import tempfile

import yaml

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
# In debian:bookworm-slim already (Priority: required); everything else must be installed by the Dockerfile.
BASE_PACKAGES = {"libc6", "libstdc++6", "libgcc-s1", "zlib1g"}
problems = []


def check(ok, what):
    if not ok:
        problems.append(what)
    return ok


def main():
    sluice = sys.argv[1]
    dockerfile = open(os.path.join(ROOT, "deploy", "container", "Dockerfile")).read()
    docs = [d for d in yaml.safe_load_all(open(os.path.join(ROOT, "deploy", "kubernetes", "sluice.yaml"))) if d]
    by_kind = {d["kind"]: d for d in docs}
    check(set(by_kind) == {"ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "HorizontalPodAutoscaler"},
          f"kinds: {sorted(by_kind)}")

    # The image: multi-stage, non-root, health check on /readyz, the binary as entrypoint.
    check(len(re.findall(r"^FROM ", dockerfile, re.M)) >= 2, "Dockerfile: not multi-stage")
    user = re.search(r"^USER (\d+)(?::(\d+))?", dockerfile, re.M)
    check(user and user.group(1) != "0", "Dockerfile: no numeric non-root USER")
    check(re.search(r"^HEALTHCHECK .*?/readyz", dockerfile, re.M | re.S), "Dockerfile: no HEALTHCHECK on /readyz")
    check('ENTRYPOINT ["/usr/local/bin/sluice"]' in dockerfile, "Dockerfile: entrypoint is not the binary")
    runtime = dockerfile.split("\nFROM ")[-1]
    installed = set(re.findall(r"\b(lib[a-z0-9.+-]+|ca-certificates)\b", runtime.split("rm -rf")[0]))
    libs = [(l.split()[0], l.split()[2]) for l in
            subprocess.run(["ldd", sluice], capture_output=True, text=True).stdout.splitlines() if "=>" in l]
    if any(re.match(r"lib(asan|ubsan|lsan|tsan)\.so", lib) for lib, _ in libs):
        # A sanitizer build (scripts/test.sh --sanitize) links other libraries than the image's Release build.
        print("check_deploy: a sanitizer build: the image's libraries are checked against Release builds only")
        libs = []
    for lib, path in libs:
        owners = set()
        for candidate in {path, os.path.realpath(path)}:
            out = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True).stdout
            for line in out.splitlines():
                owners |= {o.strip().split(":")[0] for o in line.rsplit(": ", 1)[0].split(",")}
        check(owners & (BASE_PACKAGES | installed), f"Dockerfile: {lib} (packages {sorted(owners) or '?'}) not installed")

    # The policy: valid, listening where the pod expects.
    policy_text = by_kind["ConfigMap"]["data"]["policy.yaml"]
    policy = yaml.safe_load(policy_text)
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(policy_text)
    r = subprocess.run([sluice, "validate", f.name], capture_output=True, text=True)
    os.unlink(f.name)
    check(r.returncode == 0, f"policy in the ConfigMap: sluice validate says {r.stdout}{r.stderr}")
    check(policy["server"]["listen"] == "0.0.0.0", "policy: must listen on 0.0.0.0 in a pod")
    for m in policy["models"].values():
        if m.get("kind") == "local":
            check(m["gguf"].startswith("/opt/sluice/models/"), f"policy: gguf {m['gguf']} is not where the image has it")
            check(os.path.basename(m["gguf"]) in dockerfile, f"policy: the image does not ship {m['gguf']}")

    # The Deployment.
    dep = by_kind["Deployment"]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    check(dep["spec"]["selector"]["matchLabels"].items() <= labels.items(), "Deployment: selector does not match")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "Deployment: readiness probe is not /readyz")
    check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "Deployment: liveness probe is not /healthz")
    check(pod["securityContext"].get("runAsNonRoot") is True, "Deployment: runAsNonRoot")
    check(user and str(pod["securityContext"].get("runAsUser")) == user.group(1), "Deployment: runAsUser != image USER")
    check("requests" in c.get("resources", {}), "Deployment: no resource requests")
    port = policy["server"]["port"]
    check(any(p["containerPort"] == port for p in c["ports"]), "Deployment: containerPort != policy port")
    args = c["args"]
    config = args[args.index("--config") + 1]
    mount = next((m for m in c["volumeMounts"] if config.startswith(m["mountPath"] + "/")), None)
    check(mount is not None, f"Deployment: nothing mounted at {config}")
    if mount:
        vol = next(v for v in pod["volumes"] if v["name"] == mount["name"])
        check(vol.get("configMap", {}).get("name") == by_kind["ConfigMap"]["metadata"]["name"] and
              os.path.basename(config) in by_kind["ConfigMap"]["data"], "Deployment: the policy volume is wrong")
    grace_ms = policy["server"].get("shutdown_grace_ms", 10000)
    check(pod.get("terminationGracePeriodSeconds", 30) * 1000 > grace_ms,
          "Deployment: terminationGracePeriodSeconds must exceed the policy's shutdown_grace_ms")

    # Service, PodDisruptionBudget, HorizontalPodAutoscaler point at it.
    svc = by_kind["Service"]["spec"]
    check(svc["selector"].items() <= labels.items(), "Service: selector does not match the pods")
    check(all(p["targetPort"] in ("http", port) for p in svc["ports"]), "Service: targetPort")
    check(by_kind["PodDisruptionBudget"]["spec"]["selector"]["matchLabels"].items() <= labels.items(), "PDB selector")
    check(by_kind["HorizontalPodAutoscaler"]["spec"]["scaleTargetRef"]["name"] == dep["metadata"]["name"], "HPA target")

    for p in problems:
        print("check_deploy:", p)
    print(f"check_deploy: {'ok' if not problems else str(len(problems)) + ' problem(s)'} "
          f"({len(docs)} Kubernetes documents, {len(libs)} shared libraries)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
