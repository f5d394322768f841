"""Section 7: the concepts behind the commands (backends, snapshots, dependencies, atomic
restore), one page each; every paragraph is a message of the core's catalog."""

from __future__ import annotations

from dataclasses import dataclass

from ..i18n import LazyString, N_, _, text
from . import roff


@dataclass(frozen=True)
class Concept:
    """A section-7 page: its name, one-line summary and ``(heading, paragraphs)`` sections."""

    name: str
    summary: LazyString
    sections: tuple[tuple[LazyString, tuple[LazyString, ...]], ...]
    see_also: tuple[str, ...]


CONCEPTS = (
    Concept("bdev-backends", N_("storage backends of container root filesystems"), (
        (N_("DESCRIPTION"), (
            N_("A backend stores container root filesystems: a directory, a btrfs subvolume, an "
               "image on a loop device, overlayfs layers, a ZFS dataset, an LVM logical volume. "
               "Each backend is a plugin, found through the bdev.plugins entry point; the core "
               "never imports one by name."),
            N_("A backend declares what it can do (native snapshots, block-backed storage, use "
               "without root ...) and what it needs (tools, Python modules, kernel "
               "filesystems). bdev backends shows every backend, whether it works on this "
               "machine and, when it does not, why."),
            N_("-B best tries the backends that rank themselves for it and says which one it "
               "chose and why it passed over the others; -B btrfs,dir tries a list in order. "
               "Settings that have no option of their own are given as -O KEY=VALUE."),
        )),
        (N_("CLONES"), (
            N_("A clone is a native snapshot when the backend can make one, a layer when "
               "another backend can stack over the source (a dir container cloned as "
               "overlay), and a full copy otherwise. A copy keeps owners, modes, times, hard "
               "links, symbolic links, extended attributes, ACLs, device nodes and sparse "
               "files, and reflinks files where the filesystem allows it."),
            N_("Any backend can be copied into any other: bdev clone -B and bdev convert "
               "choose the target's backend."),
        )),
    ), ("bdev-backends(1)", "bdev-config(5)", "bdev-snapshots(7)")),
    Concept("bdev-snapshots", N_("snapshots of containers and how they are kept"), (
        (N_("DESCRIPTION"), (
            N_("A snapshot is kept as LXC keeps it: <lxcpath>/<name>/snaps/snapN with its own "
               "config, rootfs, a timestamp file ts and an optional comment file. LXC 1.0's "
               "<lxcpath>snaps/<name>/ is used when it exists. Snapshots are numbered snap0, "
               "snap1 ... in the order they are taken."),
            N_("A snapshot is native where the backend can make one (btrfs, zfs, lvm, "
               "overlay) and a copy otherwise, as lxc-snapshot allows."),
            N_("bdev snapshot restore NAME SNAP replaces the container's root filesystem and "
               "config with the snapshot's, atomically (see bdev-restore(7)); given a new "
               "name, it makes a new container from the snapshot instead."),
        )),
    ), ("bdev-snapshot(1)", "lxc-snapshot(1)", "bdev-restore(7)", "bdev-dependencies(7)")),
    Concept("bdev-dependencies", N_("what depends on a container, and destroying it safely"), (
        (N_("DESCRIPTION"), (
            N_("A layered clone (overlay over a dir container, an LVM snapshot, a ZFS clone) "
               "needs its origin. bdev records this in LXC's files: the origin's "
               "lxc_snapshots counts its dependents, and each clone's lxc_rdepends names its "
               "origin."),
            N_("Destroying a container that has snapshots or dependents is refused, naming "
               "them, and nothing is changed; bdev destroy -s destroys the snapshots too. A "
               "ZFS origin with live clones is hidden and removed with its last clone."),
        )),
    ), ("bdev-destroy(1)", "bdev-snapshots(7)")),
    Concept("bdev-restore", N_("atomic restores and recovery from interruptions"), (
        (N_("DESCRIPTION"), (
            N_("A restore in place builds the snapshot's root filesystem beside the live one, "
               "swaps the two atomically, installs the snapshot's config, and only then "
               "deletes the old tree. If it is interrupted, the container is either the old "
               "one or the restored one, never a mix and never nothing."),
            N_("Every changing operation takes the container's lock (the same file and lock "
               "type as LXC, so LXC and bdev wait for each other) and records its intent in "
               "a journal before it acts."),
        )),
        (N_("RECOVERY"), (
            N_("A create, clone or snapshot that dies midway leaves LXC's partial marker; the "
               "next command on that container removes what it made. An interrupted restore is "
               "completed or rolled back, whichever matches the state on disk, and an "
               "interrupted destroy is finished."),
        )),
    ), ("bdev-snapshot-restore(1)", "bdev-snapshots(7)")),
)


def render(concept: Concept, version: str) -> str:
    """The page's man(7) source in the current language."""
    out = roff.Page(concept.name, 7, f"bdev {version}", "bdev")
    out.section(_("NAME"))
    out.raw(f"{concept.name} \\- {roff.escape(text(concept.summary))}")
    for heading, paragraphs in concept.sections:
        out.section(text(heading))
        for para in paragraphs:
            out.text(text(para))
    out.section(_("SEE ALSO"))
    out.raw(",\n".join(roff.bold(ref) for ref in concept.see_also))
    return out.render()
