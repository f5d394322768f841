"""Prebuilt container images: the index that describes them, their SHA-256 manifests, the
local cache, downloading, strict unpacking onto any backend, building and serving them.

The on-server layout (see ``docs/templates.md``) keeps the shape of LXC's image servers::

    meta/1.0/index-system                   dist;release;arch;variant;build_id;path
    <path>/SHA256SUMS                       "<sha256>  <file>" for every other file
    <path>/rootfs.tar.xz | rootfs.tar.zst   the root filesystem
    <path>/config                           LXC config lines the container gets
    <path>/expiry                           when caches should fetch a newer build (epoch s)
"""
