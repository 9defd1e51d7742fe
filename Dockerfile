# The kubebuildx container action's image: Python, the kubebuildx package,
# and the docker and buildx CLIs. The BuildKit daemons run in the user's
# cluster, never here, so the image needs no daemon and no QEMU.
#
# Base images are pinned by tag. Pin them by digest too (FROM image:tag@sha256:...)
# and let Dependabot (.github/dependabot.yml, ecosystem "docker") keep tag and
# digest current: the machine this file was written on cannot reach a registry
# to resolve digests.
FROM docker:29.7.2-cli AS docker-cli
FROM docker/buildx-bin:0.36.1 AS buildx

FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY --from=docker-cli /usr/local/bin/docker /usr/local/bin/docker
COPY --from=buildx /buildx /usr/libexec/docker/cli-plugins/docker-buildx

# Runtime requirements first and pinned (requirements.txt), so that a code
# change rebuilds only the last layer; then the package alone (--no-deps).
COPY requirements.txt /opt/kubebuildx/requirements.txt
RUN pip install --no-cache-dir -r /opt/kubebuildx/requirements.txt
COPY pyproject.toml README.md /opt/kubebuildx/
COPY src /opt/kubebuildx/src
# - `buildx` on PATH: kubebuildx runs the standalone binary when it finds one
#   (build.buildx_command), and `docker buildx` finds the same file as a plugin.
# - kubebuildx-post: the runner passes action.yml's `args` to the
#   post-entrypoint too (actions/runner ContainerActionHandler.cs), so the post
#   step needs an executable that ignores them and runs `kubebuildx action --post`.
RUN pip install --no-cache-dir --no-deps /opt/kubebuildx \
    && ln -s /usr/libexec/docker/cli-plugins/docker-buildx /usr/local/bin/buildx \
    && printf '#!/bin/sh\n# action.yml post-entrypoint; the runner appends runs.args, which we ignore\nexec kubebuildx action --post\n' \
       >/usr/local/bin/kubebuildx-post \
    && chmod 0755 /usr/local/bin/kubebuildx-post \
    && kubebuildx --version \
    && buildx version \
    && docker --version

# No USER: a container action runs as the image's user, and the runner mounts
# /github/workspace, /github/home and /github/file_commands from the host as
# they are, so only root can be sure to write the outputs, the step summary
# and the build's files there. GitHub's own advice is the same:
# https://docs.github.com/en/actions/sharing-automations/creating-actions/dockerfile-support-for-github-actions#user
ENTRYPOINT ["kubebuildx"]
