def test_version_prints_the_package_version(mqd):
    from mqd_cli import __version__

    assert mqd("--version").stdout.strip() == f"mqd {__version__}"


def test_group_not_landed_says_not_available_with_exit_2(mqd):
    r = mqd("throttle", "stats", expect=2)
    assert "not available yet" in r.stderr
