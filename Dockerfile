# The image every node container runs: TARS installed from wheels built on the host.
#
# Built by runtime/docker_image.py with no network (network_mode "none"): nothing is
# downloaded here.  The build context holds wheels/ (the project and every dependency,
# from `pip wheel` on the host) and debs/ (bubblewrap and valgrind with their libraries,
# from `apt-get download` on the host; empty where the host has no apt).  Offline, the
# base is tars-base:py311 from ../shared/docker/make-base-image.sh (a venv at /opt/venv).
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ENV PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    PYTHONUNBUFFERED=1 \
    LANG=C.UTF-8

COPY debs/ /tmp/tars-debs/
# dpkg-deb -x into a scratch folder, then copy: extracting straight into / would replace
# the merged-/usr symlinks (/lib -> usr/lib) with real folders.  Works with busybox's
# dpkg-deb (tars-base) and Debian's (python:3.11-slim).  Of util-linux only setpriv is
# taken, into /usr/local/bin (first on PATH): its other programs need libraries the
# base may lack, and copying them would write through busybox's applet links.
RUN set -e; \
    for deb in /tmp/tars-debs/*.deb; do \
      [ -e "$deb" ] || continue; \
      rm -rf /tmp/tars-x; mkdir /tmp/tars-x; dpkg-deb -x "$deb" /tmp/tars-x; \
      case "$(basename "$deb")" in util-linux_*) \
        mkdir -p /usr/local/bin; cp /tmp/tars-x/usr/bin/setpriv /usr/local/bin/setpriv; continue;; \
      esac; \
      for top in bin sbin lib lib64; do \
        if [ -d "/tmp/tars-x/$top" ] && [ -L "/$top" ]; then \
          cp -a "/tmp/tars-x/$top/." "/usr/$top/"; rm -rf "/tmp/tars-x/$top"; \
        fi; \
      done; \
      cp -a /tmp/tars-x/. /; \
    done; \
    rm -rf /tmp/tars-x /tmp/tars-debs /usr/share/doc /usr/share/man

COPY wheels/ /tmp/tars-wheels/
RUN set -e; \
    [ -x /opt/venv/bin/python ] || python3 -m venv /opt/venv; \
    /opt/venv/bin/pip install --no-index --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/tars-wheels tars-swarm; \
    rm -rf /tmp/tars-wheels

CMD ["tars", "--help"]
