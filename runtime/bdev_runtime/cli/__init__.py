"""The runtime's command lines: ``lxc-start``, ``lxc-stop``, ``lxc-info``, ``lxc-attach``,
``lxc-execute`` (LXC's options, bdev's error policy) and the ``bdev start/stop/attach/run``
subcommands, published through the ``bdev_commands`` hook."""
