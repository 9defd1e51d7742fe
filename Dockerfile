# The kubebuildx container action's image: Python, the kubebuildx package and
# the buildx CLI. The BuildKit daemons run in the user's cluster, never here, so
# the image needs no daemon, no QEMU and no docker CLI (buildx runs standalone).
#
# Base images are pinned by tag. The release workflow (.github/workflows/release.yml)
# records the digests it built from; pin them here too (FROM image:tag@sha256:...)
# and let Dependabot (.github/dependabot.yml, ecosystem "docker") keep tag and
# digest current. The machine this file was written on cannot reach a registry
# to resolve digests; its tests build it from stand-ins of the same names.
FROM docker/buildx-bin:0.36.1 AS buildx

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=buildx /buildx /usr/local/bin/buildx

# Runtime requirements first and pinned (requirements.txt), so that a code
# change rebuilds only the last layer; then the package alone (--no-deps).
# What keeps this layer small (benchmarks/README.md has the figures):
# - requirements.txt lists everything kubebuildx imports and nothing else, and
#   is installed --no-deps: the dependencies of code kubebuildx never runs
#   (aiohttp for kubernetes.aio, PyGithub for actions_toolkit.github) stay out;
# - kubernetes.aio, the asyncio client (68 MB, half of the package), goes;
# - kubernetes.client, generated code that is all imported at start-up, ships
#   as bytecode alone (compileall -b): start-up is the same, 33 MB of source
#   less; its tracebacks name file and line without the source text.
# The last line fails the build if the list lacks anything the entry points import.
COPY requirements.txt /opt/kubebuildx/requirements.txt
RUN pip install --no-cache-dir --no-deps -r /opt/kubebuildx/requirements.txt \
    && k8s="$(python -c 'import importlib.util as u; print(u.find_spec("kubernetes").submodule_search_locations[0])')" \
    && rm -rf "$k8s/aio" \
    && python -m compileall -q -b -j 0 "$k8s/client" \
    && find "$k8s/client" \( -name '*.py' -o -name __pycache__ \) -prune -exec rm -rf {} + \
    && python -c "from kubernetes import client, config; from kubernetes.stream import stream; from actions_toolkit import core, command; import yaml, requests"
COPY pyproject.toml README.md /opt/kubebuildx/
COPY src /opt/kubebuildx/src
# - kubebuildx runs the standalone `buildx` it finds on PATH (build.buildx_command).
# - kubebuildx-post: the runner passes action.yml's `args` to the
#   post-entrypoint too (actions/runner ContainerActionHandler.cs), so the post
#   step needs an executable that ignores them and runs `kubebuildx action --post`.
RUN pip install --no-cache-dir --no-deps /opt/kubebuildx \
    && printf '#!/bin/sh\n# action.yml post-entrypoint; the runner appends runs.args, which we ignore\nexec kubebuildx action --post\n' \
       >/usr/local/bin/kubebuildx-post \
    && chmod 0755 /usr/local/bin/kubebuildx-post \
    && kubebuildx --version \
    && buildx version

# No USER: a container action runs as the image's user, and the runner mounts
# /github/workspace, /github/home and /github/file_commands from the host as
# they are, so only root can be sure to write the outputs, the step summary
# and the build's files there. GitHub's own advice is the same:
# https://docs.github.com/en/actions/sharing-automations/creating-actions/dockerfile-support-for-github-actions#user
ENTRYPOINT ["kubebuildx"]
