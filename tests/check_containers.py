#!/usr/bin/env python3
"""Static checks of compose.yaml and docker/*.Dockerfile against the code (no Docker engine here).

- compose.yaml passes the Compose schema (`docker-compose config -q`, Debian's 1.29) when present;
- every build path exists and every Dockerfile builds the binary it runs;
- every environment variable compose gives the mapper and merger is one the code reads
  (as `flowmerge-mapper/-merger --print-config-reference` list them, the standard AWS_* and OTEL_* ones);
- every command compose runs is accepted by the CLI with the flags it uses, from an image that has it;
- the Dockerfiles pass hadolint at warning level and run as a non-root user.

Usage: check_containers.py FLOWMERGE_BINARY
"""
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Standard variables read by the AWS SDK chain and the OpenTelemetry SDK.
STANDARD = {
    "AWS_ENDPOINT_URL", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
    "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_SERVICE_NAME",
    "OTEL_TRACES_SAMPLER", "OTEL_TRACES_SAMPLER_ARG", "OTEL_RESOURCE_ATTRIBUTES", "OTEL_SDK_DISABLED",
}
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


def code_vars(flowmerge, worker):
    """The variables a worker reads, from the table the code prints (tests-only ones left out)."""
    binary = Path(flowmerge).with_name(f"flowmerge-{worker}")
    out = subprocess.run([str(binary), "--print-config-reference"], capture_output=True, text=True,
                         check=True).stdout
    names = set()
    for row in out.splitlines():
        cells = [c.strip() for c in row.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[0].startswith("`FLOWMERGE_") and not cells[3].startswith("tests only"):
            if cells[1] in (worker, "both"):
                names.add(cells[0].strip("`"))
    if not names:
        fail(f"{binary} --print-config-reference listed no variables")
    return names


def main(flowmerge):
    compose_file = ROOT / "compose.yaml"
    if shutil.which("docker-compose"):
        r = subprocess.run(["docker-compose", "-f", str(compose_file), "config", "-q"],
                           capture_output=True, text=True)
        if r.returncode != 0:
            fail(f"docker-compose config: {r.stderr.strip()}")
        else:
            print("ok   compose.yaml passes docker-compose config")
    else:
        fail("docker-compose not installed (scripts/test.sh installs it)")

    compose = yaml.safe_load(compose_file.read_text())
    services = compose["services"]
    bins = set(re.findall(r'name = "(flowmerge[a-z-]*)"', (ROOT / "crates/cli/Cargo.toml").read_text()))
    allowed = {w: code_vars(flowmerge, w) | STANDARD for w in ("mapper", "merger")}

    # Which binaries each locally built image holds (from the Dockerfile that builds it).
    image_bins = {}
    for svc in services.values():
        build = svc.get("build")
        if build and svc.get("image"):
            dockerfile = ROOT / build.get("context", ".") / build["dockerfile"]
            if dockerfile.exists():
                image_bins[svc["image"]] = set(re.findall(r"--bin (flowmerge[a-z-]*)", dockerfile.read_text()))

    for name, svc in services.items():
        build = svc.get("build")
        if build:
            dockerfile = ROOT / build.get("context", ".") / build["dockerfile"]
            if not dockerfile.exists():
                fail(f"{name}: {dockerfile} does not exist")
                continue
            text = dockerfile.read_text()
            built = set(re.findall(r"--bin (flowmerge[a-z-]*)", text))
            entry = re.search(r'ENTRYPOINT \["/usr/local/bin/([a-z-]+)"\]', text).group(1)
            if entry not in built or not built <= bins:
                fail(f"{dockerfile.name}: runs {entry}, builds {built}, the CLI crate has {bins}")
            user = re.findall(r"^USER (\S+)", text, re.M)
            if not user or user[-1].split(":")[0] in ("0", "root"):
                fail(f"{dockerfile.name}: no non-root USER")
            print(f"ok   {name}: {dockerfile.relative_to(ROOT)} builds {sorted(built)}")
        if name in allowed:
            env = set((svc.get("environment") or {}).keys())
            unknown = env - allowed[name]
            if unknown:
                fail(f"{name}: sets variables the code does not read: {sorted(unknown)}")
            else:
                print(f"ok   {name}: {len(env)} variables, all read by the code")
        entry = svc.get("entrypoint")
        if entry and entry[0].endswith("/flowmerge"):
            held = image_bins.get(svc.get("image"))
            if held is not None and "flowmerge" not in held:
                fail(f"{name}: runs the flowmerge CLI from {svc['image']}, whose Dockerfile builds only {sorted(held)}")
            command = svc["command"]
            # The subcommand path: the words before the first flag.
            sub = []
            for w in command:
                if w.startswith("-"):
                    break
                sub.append(w)
            # Positional arguments (e.g. gen's OUTPUT) are not subcommands.
            while sub:
                r = subprocess.run([flowmerge, *sub, "--help"], capture_output=True, text=True)
                if r.returncode == 0:
                    break
                sub.pop()
            helptext = r.stdout
            flags = [w for w in command if w.startswith("--")]
            missing = [f for f in flags if f not in helptext]
            if r.returncode != 0 or not sub or missing:
                fail(f"{name}: `flowmerge {' '.join(command)}`: unknown subcommand or flags {missing}")
            else:
                print(f"ok   {name}: flowmerge {' '.join(sub)} accepts {flags}")

    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    dockerfiles = sorted(str(p) for p in (ROOT / "docker").glob("*.Dockerfile"))
    r = subprocess.run([hadolint, "--failure-threshold", "warning", *dockerfiles], capture_output=True, text=True)
    if r.returncode != 0:
        fail(f"hadolint: {r.stdout}{r.stderr}")
    else:
        print(f"ok   hadolint: {len(dockerfiles)} Dockerfiles")

    if failures:
        print(f"{len(failures)} container check(s) failed")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
