# The local stand-in for the project Dockerfiles' public Python base (python:3.11-slim):
# a Debian bookworm root filesystem made by mmdebstrap from this machine's apt sources
# (python3.11, pip, CA certificates; see hack/shunter/devcluster/images.py). Used only
# by `make images`, which maps the Dockerfiles' FROM lines to it; the Dockerfiles
# themselves still name the public images.
FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
