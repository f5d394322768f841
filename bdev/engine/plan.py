"""The core's copy decision (LXC's ``storage_copy``, made pluggable).

Given a source rootfs and what the user asked for, :func:`plan_clone` picks the target
backend and how to fill it: a native ``snapshot``, a ``layer`` (a backend that layers over the
source, as overlay over dir), or a full ``copy``.  Everything is checked before anything is
created, so a refusal leaves nothing behind.  :func:`execute` then carries the plan out.
"""

from __future__ import annotations

import functools
import inspect
from dataclasses import dataclass, replace

from ..backend import Backend
from ..errors import BackendUnavailable, InvalidInput, NotSupported
from ..i18n import _
from ..records import CloneOutcome, CreateOptions, Placement, Rootfs
from ..registry import Registry


@dataclass(frozen=True)
class ClonePlan:
    """What :func:`execute` will do: ``method`` is ``snapshot``, ``layer`` or ``copy``.

    :param note: why a requested snapshot became a copy, for the user.
    """

    method: str
    target: Backend
    note: str = ""


def choose_backend(
    registry: Registry,
    spec: str,
    placement: Placement,
    options: CreateOptions,
    passed_over: list[str] | None = None,
) -> Backend:
    """The backend for ``spec``: a name or alias, ``best``, or a comma list tried in order
    (LXC's ``-B lvm,dir``).  A single name that cannot work here is refused with its reasons;
    in a list, the first that works wins and all reasons are given if none does.

    :param passed_over: receives ``"<name>: <reason>"`` for each candidate skipped before the
        chosen one, so the caller can say why it was not used.

    :raises NotFound: a name no plugin offers.
    :raises BackendUnavailable: nothing named can work at ``placement``.
    """
    names = [n.strip() for n in spec.split(",") if n.strip()]
    if not names:
        raise InvalidInput(_("no backend given"))
    candidates: list[Backend] = []
    for name in names:
        if name.lower() == "best":
            candidates.extend(registry.best_candidates())
        else:
            candidates.append(registry.backend(name))  # NotFound for unknown names, before anything else
    reasons: list[str] = []
    for backend in candidates:
        problems = _problems_at(backend, placement, options)
        if not problems:
            if passed_over is not None:
                passed_over.extend(reasons)
            return backend
        reasons.extend(f"{backend.name}: {p}" for p in problems)
    if len(candidates) == 1:
        only = candidates[0]
        bare = _problems_at(only, placement, options)
        raise BackendUnavailable("; ".join(bare), reasons=bare, backend=only.name)
    if not candidates:
        raise BackendUnavailable(_("no installed backend takes part in {spec!r}").format(spec=spec))
    raise BackendUnavailable(_(
        "no backend in {spec!r} can be used here ({reasons})"
    ).format(spec=spec, reasons='; '.join(reasons)), reasons=reasons)


def _problems_at(backend: Backend, placement: Placement, options: CreateOptions) -> list[str]:
    """Why ``backend`` cannot make a rootfs at ``placement``: missing requirements first."""
    problems = backend.unavailable_reasons()
    if problems:
        return problems
    refusal = backend.refusal_at(placement, options)
    return [refusal] if refusal else []


def plan_clone(
    registry: Registry,
    source: Rootfs,
    source_backend: Backend,
    target_spec: str | None,
    placement: Placement,
    options: CreateOptions,
    *,
    snapshot: bool,
    maybe_snapshot: bool,
    keep_backend: bool = False,
) -> ClonePlan:
    """Decide how to clone ``source`` to ``placement``.

    * No target named: keep the source's backend; but for a *requested* snapshot of a backend
      without native snapshots (and not ``keep_backend``), use a backend that declares it layers
      over the source (LXC turns ``lxc-clone -s`` of a dir container into overlay).
    * ``snapshot``: a native snapshot or layer if the target can make one; otherwise a full copy
      when ``maybe_snapshot`` allows it (LXC's MAYBE_SNAPSHOT, used by ``lxc-snapshot``), else
      refused.
    * No snapshot asked: a full copy, except that a backend whose snapshots are independent
      copies (``copy_by_snapshot``, btrfs) snapshots when source and target allow it.
    """
    if target_spec is None:
        target = source_backend
        if snapshot and not keep_backend and snapshot_refusal(source_backend, source, source_backend, placement, options):
            layered = [
                e.backend
                for e in registry.backend_entries()
                if e.backend.layers_over(source_backend) and not _problems_at(e.backend, placement, options)
            ]
            if layered:
                target = layered[0]
        problems = _problems_at(target, placement, options)
        if problems:
            raise BackendUnavailable("; ".join(problems), reasons=problems, backend=target.name)
    else:
        target = choose_backend(registry, target_spec, placement, options)

    refusal = snapshot_refusal(target, source, source_backend, placement, options)
    if snapshot:
        if refusal is None:
            return ClonePlan("snapshot" if target.name == source_backend.name else "layer", target)
        if maybe_snapshot:
            return ClonePlan("copy", target, note=refusal)
        raise NotSupported(_("cannot snapshot: {refusal}").format(refusal=refusal), backend=target.name)
    if refusal is None and target.name == source_backend.name and target.capabilities.copy_by_snapshot:
        return ClonePlan("snapshot", target, note=f"a {target.name} snapshot is an independent copy")
    return ClonePlan("copy", target)


def snapshot_refusal(
    backend: Backend, source: Rootfs, source_backend: Backend, placement: Placement, options: CreateOptions
) -> str | None:
    """``backend.snapshot_refusal(...)``, passing ``options`` only to implementations that
    accept it: a plugin written before the parameter existed keeps working (as pluggy lets a
    hook implementation take fewer arguments than its specification)."""
    if _accepts(type(backend).snapshot_refusal, "options"):
        return backend.snapshot_refusal(source, source_backend, placement, options)
    return backend.snapshot_refusal(source, source_backend, placement)


@functools.cache
def _accepts(method: object, name: str, *, keyword_only: bool = False) -> bool:
    """Whether ``method`` takes a parameter ``name`` (keyword-only if asked) or any keyword."""
    parameters = inspect.signature(method).parameters  # type: ignore[arg-type]
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return True
    parameter = parameters.get(name)
    return parameter is not None and (not keyword_only or parameter.kind is parameter.KEYWORD_ONLY)


def target_rootfs(plan: ClonePlan, placement: Placement, options: CreateOptions) -> Rootfs:
    """The rootfs the plan will create (recorded in the journal before it exists)."""
    return plan.target.parse(plan.target.default_source(placement, options))


def execute(
    plan: ClonePlan,
    source: Rootfs,
    source_backend: Backend,
    placement: Placement,
    options: CreateOptions,
    progress: object | None = None,
) -> CloneOutcome:
    """Carry out ``plan``: a snapshot through the target backend, or a copy of the source's
    files (mounted read-only where the source needs mounting) into a new rootfs.  A copy also
    tells the target which rootfs it copies (``source``, ``source_backend``) when its
    ``copy_from`` takes them, so it can copy natively."""
    if plan.method in ("snapshot", "layer"):
        outcome = plan.target.snapshot(source, source_backend, placement, options)
    else:
        origin = {}
        if _accepts(type(plan.target).copy_from, "source", keyword_only=True):
            origin = {"source": source, "source_backend": source_backend}
        with source_backend.accessed(source, readonly=True) as source_path:
            outcome = plan.target.copy_from(source_path, placement, options, progress, **origin)
    return replace(outcome, note=plan.note) if plan.note else outcome
