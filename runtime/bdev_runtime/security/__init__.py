"""Container security: capabilities, no_new_privs, seccomp and LSM labels (issue 6).

The runtime calls two things, at fixed points of a start (and of an attach)::

    plan = security_plan(ref, config)   # in the parent, before anything is mounted:
                                        # refuses a bad config in one sentence
    plan.report()                       # what will be applied, and what this host lacks
    plan.apply_in_child()               # in the container's init, right before exec

Keys, read as LXC 5 reads them: ``lxc.cap.drop``, ``lxc.cap.keep``, ``lxc.no_new_privs``,
``lxc.seccomp.profile`` (LXC's profile format, versions 1 and 2; unset, LXC's
``common.seccomp`` applies; empty, no filter), ``lxc.seccomp.allow_nesting``,
``lxc.apparmor.profile``, ``lxc.selinux.context`` and ``lxc.selinux.context.keyring``.
"""

from .plan import SecurityPlan, security_plan

__all__ = ["SecurityPlan", "security_plan"]
