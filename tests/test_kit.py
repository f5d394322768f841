"""The conformance kit itself (:mod:`bdev.testing.kit`), run the way plugin authors run it: a
pytest session (``pytester``) over a small author test module, or with ``--bdev-backend``."""

from __future__ import annotations

import textwrap

import pytest

pytestmark = [pytest.mark.unprivileged]

AUTHOR_MODULE = """
    from bdev.testing.kit import BackendContract


    class TestDirBackend(BackendContract):
        backend_name = "dir"
        storage_kinds = ("tmpdir",)
"""

LIAR_MODULE = """
    import sys

    from bdev import Capabilities, hookimpl
    from bdev_dir.backend import DirBackend
    from bdev.testing.kit import BackendContract


    class LiarBackend(DirBackend):
        \"\"\"A directory backend that claims native snapshots and has none.\"\"\"

        name = "liar"
        aliases = ()
        description = "claims native snapshots, cannot make them"
        capabilities = Capabilities(native_snapshot=True, unprivileged=True)
        detect_priority = None
        best_priority = None


    @hookimpl
    def bdev_backends():
        return [LiarBackend]


    class TestLiar(BackendContract):
        backend_name = "liar"
        storage_kinds = ("tmpdir",)
        extra_plugins = [("liar-plugin", sys.modules[__name__])]
"""


def test_author_module_subclassing_the_contract_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mydir=textwrap.dedent(AUTHOR_MODULE))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "not crash or create:after-template")
    result.assert_outcomes(passed=8, skipped=7)  # dir skips the running case: it needs no mount
    result.stdout.no_fnmatch_line("*claims*")


def test_skipped_capability_names_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mydir=textwrap.dedent(AUTHOR_MODULE))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-rs", "-k", "read_only or layers_over or copy_by_snapshot")
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(
        [
            "*backend dir does not declare read_only*",
            "*backend dir does not declare layers_over*",
            "*backend dir does not declare copy_by_snapshot*",
        ],
        consecutive=False,
    )


def test_bdev_backend_option_runs_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_placeholder():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "--bdev-backend=dir", "-k", "placeholder or (tmpdir and create_then_destroy)")
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*TestSelectedBackends::test_create_then_destroy?dir-tmpdir? PASSED*"])


def test_bdev_backends_ini_option_runs_the_contract(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nbdev_backends = dir\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v", "-k", "tmpdir and clone_refuses_existing_target")
    result.assert_outcomes(passed=1)


def test_narrowed_contract_deselects_the_rest_and_says_so(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_placeholder():\n    pass\n")
    args = ("-p", "no:cacheprovider", "--bdev-backend=dir", "--kit-storage=tmpdir", "--kit-crash-steps=destroy:after-rootfs")
    everything = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--bdev-backend=dir", "--collect-only", "-q")
    narrowed = pytester.runpytest_subprocess(*args, "--collect-only", "-q")
    names = [line for line in narrowed.stdout.lines if "::" in line]
    total = len([line for line in everything.stdout.lines if "::" in line])
    assert names and len(names) < total
    assert all("xfs" not in name and "btrfs]" not in name and "-btrfs" not in name for name in names)
    crash = [name for name in names if "crash_at_marked_step" in name]
    assert crash and all("destroy:after-rootfs" in name for name in crash)
    narrowed.stdout.fnmatch_lines([f"*{total - len(names)} deselected*"])
    header = pytester.runpytest_subprocess(*args, "-k", "placeholder")
    header.stdout.fnmatch_lines(["bdev kit: contract narrowed to kit_storage_kind in (tmpdir)*"])


def test_unknown_storage_kind_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--bdev-backend=dir", "--kit-storage=ntfs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--kit-storage: unknown ntfs (known: tmpdir, btrfs, xfs)*"])


def test_no_backend_selected_adds_nothing(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nothing="def test_placeholder():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-v")
    result.assert_outcomes(passed=1)
    result.stdout.no_fnmatch_line("*TestSelectedBackends*")


def test_unregistered_backend_fails_naming_it(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--bdev-backend=nosuchfs", "-k", "tmpdir and create_then_destroy")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*backend nosuchfs is not registered*"])


def test_a_lying_backend_fails_naming_its_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_liar=textwrap.dedent(LIAR_MODULE))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "snapshot_clone or create_then_destroy")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(
        ["*plugin liar-plugin (backend liar) claims native_snapshot but a snapshot clone failed: NotSupported*"]
    )


def test_a_backend_without_a_claim_is_not_blamed(pytester: pytest.Pytester) -> None:
    """The same fake, honest about having no native snapshot, gets the NotSupported check."""
    honest = LIAR_MODULE.replace("Capabilities(native_snapshot=True, unprivileged=True)", "Capabilities(unprivileged=True)")
    pytester.makepyfile(test_honest=textwrap.dedent(honest))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "snapshot_clone")
    result.assert_outcomes(passed=1)


def test_crash_steps_run_for_an_extra_plugin(pytester: pytest.Pytester) -> None:
    """Crash tests load an extra plugin module in the child that is killed."""
    honest = LIAR_MODULE.replace("Capabilities(native_snapshot=True, unprivileged=True)", "Capabilities(unprivileged=True)")
    pytester.makepyfile(test_honest=textwrap.dedent(honest))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-k", "crash and (clone:after-rootfs or destroy)")
    result.assert_outcomes(passed=2)
